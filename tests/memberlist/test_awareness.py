# Tests of the local health score (pyro_core/memberlist/awareness.py).
# Owns: memberlist's awareness table (deltas → score → scaled timeout, max multiplier 8) and the
# properties that the score stays in 0 .. max − 1 and scales timeouts by (score + 1).
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyro_core.memberlist.awareness import Awareness

# (delta, score after it, 1 s scaled by the score) — memberlist awareness_test.go, max multiplier 8.
AWARENESS_TABLE = [
    (0, 0, 1.0),
    (-1, 0, 1.0),
    (-10, 0, 1.0),
    (1, 1, 2.0),
    (-1, 0, 1.0),
    (10, 7, 8.0),
    (-1, 6, 7.0),
    (-1, 5, 6.0),
    (-1, 4, 5.0),
    (-1, 3, 4.0),
    (-1, 2, 3.0),
    (-1, 1, 2.0),
    (-1, 0, 1.0),
    (-1, 0, 1.0),
]


def test_awareness_table_from_memberlist() -> None:
    a = Awareness(8)
    for i, (delta, score, timeout) in enumerate(AWARENESS_TABLE):
        assert a.apply_delta(delta) == score, f"case {i}"
        assert a.get_health_score() == score, f"case {i}"
        assert a.scale_timeout(1.0) == timeout, f"case {i}"


def test_new_awareness_is_healthy() -> None:
    a = Awareness(8)
    assert a.get_health_score() == 0
    assert a.scale_timeout(0.5) == 0.5


def test_max_multiplier_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Awareness(0)


def test_max_multiplier_one_never_scales() -> None:
    a = Awareness(1)
    a.apply_delta(5)
    assert a.get_health_score() == 0
    assert a.scale_timeout(2.0) == 2.0


@given(st.integers(1, 20), st.lists(st.integers(-30, 30), max_size=50))
def test_health_score_stays_between_zero_and_max_minus_one(max_multiplier: int, deltas: list[int]) -> None:
    a = Awareness(max_multiplier)
    for delta in deltas:
        a.apply_delta(delta)
        assert 0 <= a.get_health_score() <= max_multiplier - 1


@given(st.integers(1, 20), st.lists(st.integers(-30, 30), max_size=50))
def test_score_is_the_clamped_running_sum(max_multiplier: int, deltas: list[int]) -> None:
    a = Awareness(max_multiplier)
    expected = 0
    for delta in deltas:
        expected = min(max(expected + delta, 0), max_multiplier - 1)
        a.apply_delta(delta)
        assert a.get_health_score() == expected


@given(
    st.integers(1, 20),
    st.lists(st.integers(-30, 30), max_size=20),
    st.floats(0, 3600, allow_nan=False),
)
def test_scaled_timeout_is_timeout_times_score_plus_one(
    max_multiplier: int, deltas: list[int], timeout: float
) -> None:
    a = Awareness(max_multiplier)
    for delta in deltas:
        a.apply_delta(delta)
    scaled = a.scale_timeout(timeout)
    assert scaled == timeout * (a.get_health_score() + 1)
    assert timeout <= scaled <= timeout * max_multiplier
