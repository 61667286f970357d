# The ring model: dskit's numeric states and operation bitmasks, validation of what users build,
# health rules, and tombstone removal.
from __future__ import annotations

import numpy as np
import pytest

from pyro_core import (
    READ,
    REPORTING,
    WRITE,
    WRITE_NO_EXTEND,
    InstanceDesc,
    InstanceState,
    InvalidRingError,
    RingDesc,
    generate_tokens,
)
from pyro_core.ring.model import extends_on_state, is_state_healthy

from .helpers import inst, ring_of

S = InstanceState


def test_instance_states_have_dskit_numeric_values() -> None:
    assert [(s.name, int(s)) for s in S] == [
        ("ACTIVE", 0),
        ("LEAVING", 1),
        ("PENDING", 2),
        ("JOINING", 3),
        ("LEFT", 4),
    ]


def test_operations_are_dskit_bitmasks() -> None:
    # healthy bits 1<<state, extend bits 0x10000<<state
    assert WRITE == 0x1 | (0x10000 << 1) | (0x10000 << 2) | (0x10000 << 3) | (0x10000 << 4)
    assert WRITE_NO_EXTEND == 0x1
    assert READ == (1 << 0) | (1 << 1) | (1 << 2) | (0x10000 << 2) | (0x10000 << 3) | (0x10000 << 4)
    assert REPORTING == 0xFFFF


@pytest.mark.parametrize(
    ("op", "healthy", "extends"),
    [
        (WRITE, {S.ACTIVE}, {S.LEAVING, S.PENDING, S.JOINING, S.LEFT}),
        (WRITE_NO_EXTEND, {S.ACTIVE}, set()),
        (READ, {S.ACTIVE, S.PENDING, S.LEAVING}, {S.PENDING, S.JOINING, S.LEFT}),
        (REPORTING, set(S), set()),
    ],
)
def test_operation_health_and_extension_per_state(op: int, healthy: set[S], extends: set[S]) -> None:
    for s in S:
        assert is_state_healthy(op, s) == (s in healthy), s
        assert extends_on_state(op, s) == (s in extends), s


def test_instance_tokens_are_sorted_unique_readonly_uint32() -> None:
    i = inst("a", [30, 10, 20, 10])
    assert i.tokens.dtype == np.uint32
    assert i.tokens.tolist() == [10, 20, 30]
    with pytest.raises(ValueError):
        i.tokens[0] = 5


@pytest.mark.parametrize("tokens", [[-1], [2**32], [1.5], ["x"], [[1, 2]], np.array([2**40])])
def test_tokens_outside_uint32_are_rejected(tokens: object) -> None:
    with pytest.raises(InvalidRingError):
        InstanceDesc(id="a", tokens=tokens)


def test_token_bounds_are_accepted() -> None:
    assert InstanceDesc(id="a", tokens=[0, 2**32 - 1]).tokens.tolist() == [0, 2**32 - 1]


@pytest.mark.parametrize("state", [5, -1, "ACTIVE", None])
def test_unknown_states_are_rejected(state: object) -> None:
    with pytest.raises(InvalidRingError, match="state"):
        InstanceDesc(id="a", state=state)  # type: ignore[arg-type]


def test_bad_timestamps_are_rejected() -> None:
    with pytest.raises(InvalidRingError):
        InstanceDesc(id="a", timestamp="now")  # type: ignore[arg-type]
    with pytest.raises(InvalidRingError):
        InstanceDesc(id="a", timestamp=2**63)


def test_duplicate_instance_ids_are_rejected() -> None:
    with pytest.raises(InvalidRingError, match="duplicate"):
        RingDesc.from_instances([inst("a", [1]), inst("a", [2])])


def test_mismatched_map_key_and_id_is_rejected_and_missing_id_is_filled() -> None:
    with pytest.raises(InvalidRingError):
        RingDesc({"a": inst("b", [1])})
    d = RingDesc({"a": InstanceDesc(addr="x", tokens=[1])})
    assert d["a"].id == "a"


def test_heartbeat_health_uses_timeout_inclusively() -> None:
    i = inst("a", [1], ts=1000)
    assert i.is_healthy(WRITE, 60, 1060)
    assert not i.is_healthy(WRITE, 60, 1061)
    assert i.is_healthy(WRITE, 60, None)
    assert not inst("b", [1], state=S.LEAVING).is_healthy(WRITE, 60, 1000)


def test_remove_tombstones_before_limit_or_all() -> None:
    d = ring_of(inst("a", [], state=S.LEFT, ts=100), inst("b", [], state=S.LEFT, ts=200), inst("c", [1]))
    assert d.copy().remove_tombstones(0) == (0, 2)
    e = d.copy()
    assert e.remove_tombstones(150) == (1, 1)
    assert sorted(e) == ["b", "c"]


def test_replace_validates_and_keeps_other_fields() -> None:
    i = inst("a", [1, 2], zone="z")
    j = i.replace(state=S.LEAVING)
    assert j.zone == "z" and j.tokens.tolist() == [1, 2] and j.state == S.LEAVING
    with pytest.raises(InvalidRingError):
        i.replace(tokens=[-5])


def test_generate_tokens_is_seedable_unique_and_avoids_taken() -> None:
    a = generate_tokens(128, [], 7)
    b = generate_tokens(128, [], 7)
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 128 and a.tolist() == sorted(a.tolist())
    c = generate_tokens(1000, a, np.random.default_rng(1))
    assert not set(c.tolist()) & set(a.tolist())
    with pytest.raises(InvalidRingError):
        generate_tokens(-1)


@pytest.mark.parametrize("kwargs", [{"read_only": "no"}, {"versions": {"a": 1}}, {"versions": {1: -1}}])
def test_bad_read_only_and_versions_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidRingError):
        InstanceDesc(id="a", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", ["x", 2**70, True, 1.5])
def test_local_cas_merge_rejects_a_bad_now(now: object) -> None:
    with pytest.raises(InvalidRingError):
        RingDesc().merge(RingDesc(), local_cas=True, now=now)  # type: ignore[arg-type]
