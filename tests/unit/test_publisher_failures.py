"""What a failed round means: unavailable (wait, never Failed), a 500 (counted), or permanent (Failed now)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from services.publisher.adapters.procore import MaybeCreated
from services.publisher.failures import Failure, classify, message_for
from services.publisher.lease import LeaseExpired
from shared.procore import NotConnected, ProcoreError, TokensUnavailable
from shared.procore.oauth import OAuthError

REQUEST = httpx.Request("POST", "http://procore/rest/v1.0/projects/1/manpower_logs")


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (httpx.ConnectError("refused", request=REQUEST), Failure.UNAVAILABLE),
        (httpx.ReadTimeout("slow", request=REQUEST), Failure.UNAVAILABLE),
        (MaybeCreated(httpx.ReadTimeout("slow", request=REQUEST)), Failure.UNAVAILABLE),
        (MaybeCreated(httpx.RemoteProtocolError("dropped", request=REQUEST)), Failure.UNAVAILABLE),
        (ProcoreError(502, "Bad Gateway"), Failure.UNAVAILABLE),
        (ProcoreError(503, "Service Unavailable"), Failure.UNAVAILABLE),
        (MaybeCreated(ProcoreError(504, "Gateway Timeout")), Failure.UNAVAILABLE),
        (ProcoreError(429, "slow down"), Failure.UNAVAILABLE),
        (TokensUnavailable("the token endpoint could not be reached"), Failure.UNAVAILABLE),
        (OAuthError(503, "login down"), Failure.UNAVAILABLE),
        (LeaseExpired("not renewed"), Failure.UNAVAILABLE),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), Failure.UNAVAILABLE),
        (ConnectionRefusedError(111, "refused"), Failure.UNAVAILABLE),
        (ProcoreError(500, "Internal Server Error"), Failure.SERVER_ERROR),
        (MaybeCreated(ProcoreError(500, "Internal Server Error")), Failure.SERVER_ERROR),
        (KeyError("id"), Failure.SERVER_ERROR),
        (ProcoreError(422, "quantity must be an integer"), Failure.PERMANENT),
        (ProcoreError(403, "App is not connected to this company"), Failure.PERMANENT),
        (ProcoreError(404, "Project not found"), Failure.PERMANENT),
        (NotConnected(409, "the account's Procore connection needs reauthorization"), Failure.PERMANENT),
        (OAuthError(401, "invalid client", "invalid_client"), Failure.PERMANENT),
    ],
)
def test_classify(error: BaseException, failure: Failure) -> None:
    assert classify(error) is failure


def test_the_failed_reason_is_procores_own_words() -> None:
    assert message_for(ProcoreError(422, "quantity must be an integer")) == "quantity must be an integer"
    assert message_for(MaybeCreated(ProcoreError(500, "Sandbox injected error 500"))) == "Sandbox injected error 500"
    assert "KeyError" in message_for(KeyError("id"))
