# Local health awareness (Lifeguard's "LHA multiplier"), sans-I/O.
# Owns: the local node's health score — 0 is healthy, max_multiplier − 1 the worst — its clamping,
# and the scaling of probe timeouts by it (timeout × (score + 1)).
# Must not know: when deltas are applied (the SWIM state machine decides: −1 per successful probe,
# + missed nacks on a failed probe, +1 per refute), clocks, metrics, or locking.
from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    """The estimated health of the local node: its ability to answer probes in soft real time.

    The score stays in ``0 <= score <= max_multiplier - 1``; deltas that would leave that range are
    clamped, so a score railed at either end absorbs further deltas in the same direction.
    """

    __slots__ = ("_max", "_score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError(f"max_multiplier must be at least 1, got {max_multiplier}")
        # The upper threshold of the timeout scale: the score is always < max_multiplier.
        self._max = max_multiplier
        # The current score; lower is healthier, zero is the floor.
        self._score = 0

    @property
    def max_multiplier(self) -> int:
        return self._max

    def apply_delta(self, delta: int) -> int:
        """Add ``delta`` to the score, clamped to ``0 .. max_multiplier - 1``; return the new score.

        A caller that publishes the score as a gauge only needs to when the returned value differs
        from the score before the call (upstream sets its gauge only then).
        """
        score = self._score + delta
        if score < 0:
            score = 0
        elif score > self._max - 1:
            score = self._max - 1
        self._score = score
        return score

    def get_health_score(self) -> int:
        """The raw health score (0 = healthy)."""
        return self._score

    def scale_timeout(self, timeout: float) -> float:
        """Stretch ``timeout`` (seconds) by the current score: ``timeout × (score + 1)``."""
        return timeout * (self._score + 1)

    def __repr__(self) -> str:
        return f"Awareness(max_multiplier={self._max}, score={self._score})"
