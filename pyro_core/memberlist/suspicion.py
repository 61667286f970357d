# The suspicion timer of one suspected member (Lifeguard's "local health aware suspicion"), sans-I/O.
# Owns: how long to wait before a suspect is declared dead, how independent confirmations from other
# members shorten that wait (from max_timeout down to min_timeout after k of them), and the cluster-size
# scaled timeout formula (suspicion_timeout). Time is an argument (`now`, float seconds).
# Must not know: the clock, the node table, incarnations, messages, or what happens at the deadline
# (the SWIM state machine checks `expired(now)` / `deadline()` and declares the node dead).
#
# Arithmetic follows memberlist on time.Duration (int64 nanoseconds): inputs in seconds are turned into
# whole nanoseconds, the Go truncations are applied there (the scaled timeout floored to whole
# milliseconds; suspicion_timeout's node scale truncated to thousandths and the product divided by 1000
# with integer division), and each result is converted back to seconds once, so table values such as
# 4.81 s or 1.698 s come out as the nearest float to the decimal. Checked against Go 1.19 on amd64:
# suspicion_timeout matches for every n in 0 .. 2,000,000; the scaled timeout matches for k = 1 .. 8,
# c = 0 .. k over ~5 million (min, max) pairs except c = 2, k = 8, where Go's math.Log is 1 ulp off
# (log(3)/log(9) = 0.49999999999999989, not 0.5) and Go waits 1 ms longer. The timer is local, so that
# millisecond never shows on the wire.
from __future__ import annotations

import math

__all__ = ["Suspicion", "remaining_suspicion_time", "suspicion_timeout"]

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MILLISECOND = 1_000_000


def _to_ns(seconds: float) -> int:
    return round(seconds * _NS_PER_SECOND)


def _go_seconds(ns: int) -> float:
    # time.Duration.Seconds(): whole seconds plus the fractional part, each converted separately
    # (Go's division truncates toward zero, so a negative duration is the negation of its magnitude).
    whole, frac = divmod(abs(ns), _NS_PER_SECOND)
    seconds = float(whole) + frac / 1e9
    return -seconds if ns < 0 else seconds


def suspicion_timeout(suspicion_mult: int, n: int, interval: float) -> float:
    """The minimum suspicion timeout for a cluster of ``n`` members, in seconds.

    ``suspicion_mult × max(1, log10(max(1, n))) × interval``, with the node scale truncated to
    thousandths (Go keeps three decimals because durations are integers): n = 50 gives a scale of
    1.698, not 1.69897.
    """
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    scale_thousandths = int(node_scale * 1000)  # Go's float → Duration conversion truncates
    timeout_ns = suspicion_mult * scale_thousandths * _to_ns(interval) // 1000
    return timeout_ns / _NS_PER_SECOND


def _scaled_timeout_ns(n_confirmations: int, k: int, min_ns: int, max_ns: int) -> int:
    """The whole suspicion timeout (from the start) after ``n_confirmations``, in nanoseconds."""
    if k < 1:
        # No confirmations are expected: the timer runs for the minimum. (Upstream computes
        # log(1)/log(1) = NaN here, which its clamp also turns into the minimum; it never calls the
        # formula with k < 1 anyway.)
        return min_ns
    frac = math.log(n_confirmations + 1.0) / math.log(k + 1.0)
    max_s = _go_seconds(max_ns)
    raw = max_s - frac * (max_s - _go_seconds(min_ns))
    timeout_ns = math.floor(1000.0 * raw) * _NS_PER_MILLISECOND  # floored to whole milliseconds
    return max(timeout_ns, min_ns)


def remaining_suspicion_time(
    n_confirmations: int, k: int, elapsed: float, min_timeout: float, max_timeout: float
) -> float:
    """Seconds left before the suspect is declared dead, given ``n_confirmations`` so far.

    The whole timeout is ``max(min, max − log(c + 1)/log(k + 1) × (max − min))`` floored to whole
    milliseconds; ``elapsed`` (time since the suspicion started) is subtracted from it. The result is
    negative when the timeout has already passed: fire at once.
    """
    timeout_ns = _scaled_timeout_ns(n_confirmations, k, _to_ns(min_timeout), _to_ns(max_timeout))
    return (timeout_ns - _to_ns(elapsed)) / _NS_PER_SECOND


class Suspicion:
    """The suspicion timer for one member, started at ``now`` with the maximum timeout.

    Each new, distinct confirmer (another member that also suspects the node) pulls the deadline
    towards ``start + min_timeout``; after ``k`` confirmations it sits there. The member that raised the
    suspicion (``from_node``) never counts as a confirmer, since our own suspect message can be gossiped
    back to us. With ``k < 1`` no confirmations are expected and the timer runs for ``min_timeout``.
    """

    __slots__ = ("_confirmers", "_deadline", "_k", "_max_ns", "_min_ns", "_n", "_start")

    def __init__(self, from_node: str, k: int, min_timeout: float, max_timeout: float, now: float) -> None:
        # The number of confirmations wanted to drive the timer down to its minimum.
        self._k = k
        # The minimum and maximum whole timeouts, in nanoseconds.
        self._min_ns = _to_ns(min_timeout)
        self._max_ns = _to_ns(max_timeout)
        # When the suspicion started; the deadline is always start + the current scaled timeout.
        self._start = now
        # Independent confirmations counted so far (the raiser is not one of them).
        self._n = 0
        # Members whose word has been taken, the raiser included, so none counts twice.
        self._confirmers: set[str] = {from_node}
        timeout_ns = self._max_ns if k >= 1 else self._min_ns
        self._deadline = now + timeout_ns / _NS_PER_SECOND

    @property
    def k(self) -> int:
        return self._k

    @property
    def start(self) -> float:
        return self._start

    @property
    def min_timeout(self) -> float:
        return self._min_ns / _NS_PER_SECOND

    @property
    def max_timeout(self) -> float:
        return self._max_ns / _NS_PER_SECOND

    @property
    def num_confirmations(self) -> int:
        """Independent confirmations counted so far (upstream passes this to its timeout callback)."""
        return self._n

    def confirm(self, from_node: str, now: float) -> bool:
        """Record that ``from_node`` also suspects the member; True if that is new information.

        False for a confirmer already counted (or the raiser), and once ``k`` confirmations have been
        counted. A True return is the cue to re-gossip the suspect message. The deadline moves earlier
        (never later), possibly into the past, which means the timer is due at once. If the deadline
        had already passed at ``now`` the timer has fired, and it stays where it was (the count still
        goes up, as upstream does).
        """
        if self._n >= self._k:
            return False
        if from_node in self._confirmers:
            return False
        self._confirmers.add(from_node)
        self._n += 1
        if now < self._deadline:
            timeout_ns = _scaled_timeout_ns(self._n, self._k, self._min_ns, self._max_ns)
            self._deadline = self._start + timeout_ns / _NS_PER_SECOND
        return True

    def deadline(self) -> float:
        """When the member is to be declared dead, in the same time base as ``now``."""
        return self._deadline

    def remaining(self, now: float) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self._deadline - now

    def expired(self, now: float) -> bool:
        """True once ``now`` has reached the deadline."""
        return now >= self._deadline

    def __repr__(self) -> str:
        return (
            f"Suspicion(k={self._k}, confirmations={self._n}, start={self._start!r}, "
            f"deadline={self._deadline!r})"
        )
