"""What a request can fail with besides auth: not found in the account (404), input that makes no sense (422).

Pure exceptions; `errors.py` maps them to HTTP.
"""

from __future__ import annotations


class NotFound(Exception):
    """Nothing with this id in the caller's account (another account's data is 'not found' too)."""


class InvalidInput(Exception):
    """A request that is well-formed but makes no sense; `field` names the offending input: HTTP 422."""

    def __init__(self, field: tuple[str, ...], message: str) -> None:
        self.field = field
        super().__init__(message)
