-- A refresh whose answer was lost on the way (a dropped connection, a timeout after the request left) may have
-- burnt the single-use refresh token at Procore: remembered here, so that when Procore then refuses the stored
-- refresh token, Setup can say why (connection.py). Cleared by the next successful refresh.
ALTER TABLE connections ADD COLUMN refresh_answer_lost_at timestamptz;
