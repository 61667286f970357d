# The ring's exceptions: one family, so callers can catch RingError for anything ring-related.
# Owns: error types and their messages' wording (dskit's where dskit has one).
from __future__ import annotations


class RingError(Exception):
    """Base class of every error raised by pyro_core's ring."""


class InvalidRingError(RingError, ValueError):
    """A ring description, instance or argument is malformed (bad token, state, id, size...)."""


class EmptyRingError(RingError):
    """The ring has no tokens (dskit ErrEmptyRing)."""

    def __init__(self, message: str = "empty ring") -> None:
        super().__init__(message)


class TooManyUnhealthyInstancesError(RingError):
    """Not enough healthy instances for the operation (dskit's 'too many unhealthy instances' and
    'at least N live replicas required, could only find K')."""


class CodecError(RingError, ValueError):
    """Bytes that do not decode (a ring description, a KeyValuePair): truncated, corrupted or of
    another format."""
