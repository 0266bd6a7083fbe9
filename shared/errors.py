"""Exceptions that carry meaning across services."""


class InvalidMessage(Exception):
    """A message that can never be processed (bad content): it is dead-lettered, not retried."""
