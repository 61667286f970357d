# Tests of the suspicion timer (pyro_core/memberlist/suspicion.py), in virtual time.
# Owns: memberlist's remainingSuspicionTime and suspicionTimeout tables, its timer cases replayed with
# `now` as an argument instead of sleeps, and the timer's properties: the deadline never drops below
# start + min, never moves later, each confirmer counts once, the raiser never counts, and k distinct
# confirmations bring it to the minimum.
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyro_core.memberlist.suspicion import Suspicion, remaining_suspicion_time, suspicion_timeout

# (n confirmations, k, elapsed s, min s, max s, remaining s) — memberlist suspicion_test.go.
REMAINING_TABLE = [
    (0, 3, 0.0, 2.0, 30.0, 30.0),
    (1, 3, 2.0, 2.0, 30.0, 14.0),
    (2, 3, 3.0, 2.0, 30.0, 4.81),
    (3, 3, 4.0, 2.0, 30.0, -2.0),
    (4, 3, 5.0, 2.0, 30.0, -3.0),
    (5, 3, 10.0, 2.0, 30.0, -8.0),
]


@pytest.mark.parametrize(("n", "k", "elapsed", "min_t", "max_t", "expected"), REMAINING_TABLE)
def test_remaining_suspicion_time_table_from_memberlist(
    n: int, k: int, elapsed: float, min_t: float, max_t: float, expected: float
) -> None:
    assert remaining_suspicion_time(n, k, elapsed, min_t, max_t) == expected


def test_spec_vector_one_confirmation_after_two_seconds_leaves_fourteen() -> None:
    assert remaining_suspicion_time(1, 3, 2.0, 2.0, 30.0) == 14.0


def test_remaining_time_is_floored_to_whole_milliseconds() -> None:
    # k = 3, min 0.5 s, max 2 s, 2 confirmations: 2 − log(3)/log(4) × 1.5 = 0.81127… s → 811 ms.
    assert remaining_suspicion_time(2, 3, 0.0, 0.5, 2.0) == 0.811


def test_remaining_time_with_no_confirmations_can_be_a_millisecond_under_max() -> None:
    # Upstream floors 1000 × 2.478 = 2477.9999999999995 to 2477 ms; the timer itself starts at max.
    assert remaining_suspicion_time(0, 1, 0.0, 1.239, 2.478) == 2.477
    assert Suspicion("me", 1, 1.239, 2.478, now=0.0).deadline() == 2.478


def test_remaining_time_without_expected_confirmations_is_the_minimum() -> None:
    assert remaining_suspicion_time(0, 0, 0.0, 2.0, 30.0) == 2.0
    assert remaining_suspicion_time(3, 0, 0.5, 2.0, 30.0) == 1.5


# n → suspicionTimeout(3, n, 1 s) / 3 in milliseconds — memberlist util_test.go.
SUSPICION_TIMEOUT_TABLE = {5: 1000, 10: 1000, 50: 1698, 100: 2000, 500: 2698, 1000: 3000}
# More n → node scale in thousandths, computed with Go 1.19's math.Log10 and Duration truncation
# (around the powers of ten, where a 1-ulp difference in log10 would show).
GO_NODE_SCALE = {
    0: 1000,
    1: 1000,
    2: 1000,
    9: 1000,
    11: 1041,
    99: 1995,
    999: 2999,
    9999: 3999,
    10000: 4000,
    99999: 4999,
    100000: 5000,
    999999: 5999,
    1000000: 6000,
    2000000: 6301,
}


@pytest.mark.parametrize(("n", "ms"), sorted(SUSPICION_TIMEOUT_TABLE.items()))
def test_suspicion_timeout_table_from_memberlist(n: int, ms: int) -> None:
    assert suspicion_timeout(3, n, 1.0) == 3 * ms / 1000


@pytest.mark.parametrize(("n", "thousandths"), sorted(GO_NODE_SCALE.items()))
def test_suspicion_timeout_node_scale_matches_go(n: int, thousandths: int) -> None:
    assert suspicion_timeout(1, n, 1.0) == thousandths / 1000


def test_suspicion_timeout_truncates_like_go_durations() -> None:
    # 4 × 1.698 × 1 ms = 6.792 ms exactly; 3 × 1.041 × 0.2 s = 0.6246 s.
    assert suspicion_timeout(4, 50, 0.001) == 0.006792
    assert suspicion_timeout(3, 11, 0.2) == 0.6246
    # Integer nanoseconds: 1 × 1.698 × 1 ns = 1.698 ns → 1 ns.
    assert suspicion_timeout(1, 50, 1e-9) == 1e-9


# The timer cases of memberlist suspicion_test.go: k = 3, min 500 ms, max 2 s, raised by "me";
# confirmations 25 ms apart; (confirmations counted, [(confirmer, new information?)], fires at).
K, MIN, MAX = 3, 0.5, 2.0
FUDGE = 0.025
TIMER_CASES = [
    (0, [], MAX),
    (1, [("me", False), ("foo", True)], 1.25),
    (1, [("me", False), ("foo", True), ("foo", False), ("foo", False)], 1.25),
    # memberlist's table says 810 ms inside a ±25 ms sleep window; the exact value is 811 ms.
    (2, [("me", False), ("foo", True), ("bar", True)], 0.811),
    (3, [("me", False), ("foo", True), ("bar", True), ("baz", True)], MIN),
    (3, [("me", False), ("foo", True), ("bar", True), ("baz", True), ("zoo", False)], MIN),
]


@pytest.mark.parametrize(("count", "confirmations", "fires_at"), TIMER_CASES)
def test_suspicion_timer_cases_from_memberlist(
    count: int, confirmations: list[tuple[str, bool]], fires_at: float
) -> None:
    s = Suspicion("me", K, MIN, MAX, now=0.0)
    now = 0.0
    for confirmer, new_info in confirmations:
        now += FUDGE
        assert s.confirm(confirmer, now) is new_info, confirmer
    assert s.num_confirmations == count
    assert s.deadline() == pytest.approx(fires_at, abs=1e-12)
    assert not s.expired(fires_at - FUDGE)
    assert s.expired(fires_at + FUDGE)
    # A confirmation after the timer fired must not make it fire again (or later).
    before = s.deadline()
    s.confirm("late", fires_at + FUDGE)
    assert s.deadline() == before
    assert s.expired(fires_at + FUDGE)


def test_zero_k_timer_runs_for_the_minimum_and_takes_no_confirmations() -> None:
    s = Suspicion("me", 0, 0.025, 30.0, now=0.0)
    assert not s.confirm("foo", 0.0)
    assert s.deadline() == 0.025
    assert s.expired(0.025)


def test_confirmation_past_the_new_deadline_fires_immediately() -> None:
    s = Suspicion("me", 1, 0.1, 30.0, now=0.0)
    assert not s.expired(0.2)
    assert s.confirm("foo", 0.2)
    assert s.expired(0.2)
    assert s.remaining(0.2) == pytest.approx(-0.1)


def test_deadline_is_relative_to_the_start_time() -> None:
    s = Suspicion("me", 3, 2.0, 30.0, now=1000.0)
    assert s.deadline() == 1030.0
    assert s.confirm("a", 1002.0)
    assert s.deadline() == 1016.0
    assert s.remaining(1002.0) == remaining_suspicion_time(1, 3, 2.0, 2.0, 30.0)


# -- properties ---------------------------------------------------------------------------------

MILLIS = st.integers(1, 120_000)
NAMES = st.sampled_from(["me", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])


@st.composite
def suspicions(draw: st.DrawFn) -> tuple[Suspicion, int, float, float, list[tuple[str, float]]]:
    """A suspicion started at 0 and a run of (confirmer, time) calls with non-decreasing times."""
    k = draw(st.integers(-1, 10))
    min_ms = draw(MILLIS)
    max_ms = min_ms * draw(st.integers(1, 8))
    steps = draw(st.lists(st.tuples(NAMES, st.integers(0, 5_000)), max_size=30))
    calls = []
    now_ms = 0
    for name, step in steps:
        now_ms += step
        calls.append((name, now_ms / 1000))
    return Suspicion("me", k, min_ms / 1000, max_ms / 1000, now=0.0), k, min_ms / 1000, max_ms / 1000, calls


@given(suspicions())
def test_suspicion_deadline_never_below_min_timeout(
    case: tuple[Suspicion, int, float, float, list[tuple[str, float]]],
) -> None:
    s, _, min_t, _, calls = case
    assert s.deadline() >= min_t
    for name, now in calls:
        s.confirm(name, now)
        assert s.deadline() >= min_t


@given(suspicions())
def test_suspicion_deadline_never_moves_later(
    case: tuple[Suspicion, int, float, float, list[tuple[str, float]]],
) -> None:
    s, _, _, max_t, calls = case
    assert s.deadline() <= max_t
    for name, now in calls:
        before = s.deadline()
        s.confirm(name, now)
        assert s.deadline() <= before


@given(suspicions())
def test_confirmations_from_the_same_node_count_once(
    case: tuple[Suspicion, int, float, float, list[tuple[str, float]]],
) -> None:
    s, k, _, _, calls = case
    seen: set[str] = {"me"}
    for name, now in calls:
        new = s.confirm(name, now)
        if name in seen:
            assert not new
        seen.add(name)
    distinct_confirmers = len({name for name, _ in calls} - {"me"})
    assert s.num_confirmations == min(distinct_confirmers, max(k, 0))


@given(st.integers(1, 10), MILLIS, st.integers(1, 8), st.integers(0, 20))
def test_the_raiser_never_counts_as_a_confirmation(k: int, min_ms: int, mult: int, repeats: int) -> None:
    s = Suspicion("me", k, min_ms / 1000, mult * min_ms / 1000, now=0.0)
    for _ in range(repeats):
        assert not s.confirm("me", 0.0)
    assert s.num_confirmations == 0
    assert s.deadline() == mult * min_ms / 1000


@given(st.integers(1, 10), MILLIS, st.integers(1, 8))
def test_k_distinct_confirmations_bring_the_deadline_to_min_timeout(k: int, min_ms: int, mult: int) -> None:
    s = Suspicion("me", k, min_ms / 1000, mult * min_ms / 1000, now=0.0)
    for i in range(k):
        assert s.confirm(f"peer{i}", 0.0)
    assert s.deadline() == min_ms / 1000
    assert not s.confirm("one-more", 0.0)
    assert s.num_confirmations == k


@given(st.integers(1, 10), MILLIS, st.integers(1, 8), st.integers(1, 10), st.integers(0, 10_000))
def test_deadline_agrees_with_remaining_suspicion_time(
    k: int, min_ms: int, mult: int, confirmations: int, at_ms: int
) -> None:
    # From the first confirmation on (with none, upstream's formula can land 1 ms under the max
    # timeout the timer was started with: floor(1000 × 2.478) = 2477).
    min_t, max_t = min_ms / 1000, mult * min_ms / 1000
    s = Suspicion("me", k, min_t, max_t, now=0.0)
    now = at_ms / 1000
    for i in range(min(confirmations, k)):
        if s.expired(now):
            return  # the timer has fired; later confirmations leave it alone
        s.confirm(f"peer{i}", now)
        expected = now + remaining_suspicion_time(s.num_confirmations, k, now, min_t, max_t)
        assert s.deadline() == pytest.approx(expected, abs=1e-9)


@given(
    st.integers(1, 10),
    st.integers(0, 100_000),
    st.integers(0, 100_000),
    st.sampled_from([0.1, 0.2, 1.0, 5.0]),
)
def test_suspicion_timeout_grows_with_cluster_size(mult: int, n1: int, n2: int, interval: float) -> None:
    lo, hi = sorted((n1, n2))
    assert suspicion_timeout(mult, lo, interval) <= suspicion_timeout(mult, hi, interval)
    assert suspicion_timeout(mult, lo, interval) >= mult * interval - 1e-9


@given(st.integers(0, 10), st.integers(1, 10), MILLIS, st.integers(1, 8))
def test_scaled_timeout_stays_between_min_and_max(n: int, k: int, min_ms: int, mult: int) -> None:
    min_t, max_t = min_ms / 1000, mult * min_ms / 1000
    timeout = remaining_suspicion_time(n, k, 0.0, min_t, max_t)
    assert min_t <= timeout <= max_t
    assert math.isclose(timeout * 1000, round(timeout * 1000), abs_tol=1e-6) or timeout == min_t
