-- The publish request each Publishing entry waits on, exactly as it was queued, and when. When no result
-- came back in time (a request lost by the broker, a result lost, a publisher that died), a sweeper sends the
-- identical request again (same request_id: the publisher de-duplicates and answers again with its stored
-- result), so no entry stays Publishing. One row per entry: publishing it again replaces the row; the result
-- of its current request removes it.
CREATE TABLE publish_requests (
    entry_id    uuid        PRIMARY KEY REFERENCES entries (entry_id) ON DELETE CASCADE,
    request_id  uuid        NOT NULL,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    payload     jsonb,      -- NULL only for a request queued before this table existed: rebuilt when re-driven
    headers     jsonb       NOT NULL DEFAULT '{}',
    queued_at   timestamptz NOT NULL DEFAULT now(),
    redrives    integer     NOT NULL DEFAULT 0,
    redrive_at  timestamptz NOT NULL
);
CREATE INDEX publish_requests_due ON publish_requests (redrive_at);

-- Entries already waiting (possibly forever) when this migration runs: due now.
INSERT INTO publish_requests (entry_id, request_id, topic, key, payload, queued_at, redrive_at)
SELECT entry_id, publishing_request_id, '', account_id || ':' || job_site_id, NULL, updated_at, now()
  FROM entries
 WHERE status = 'publishing' AND publishing_request_id IS NOT NULL;
