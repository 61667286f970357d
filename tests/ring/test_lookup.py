# Ring lookups (dskit Ring.Get / GetReplicationSetForOperation / DoBatch fan-out): hand-worked
# walks, extension and quorum rules, zone awareness, errors, and both kernels agreeing on random
# rings, keys, operations and clocks.
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core import (
    READ,
    REPORTING,
    WRITE,
    WRITE_NO_EXTEND,
    EmptyRingError,
    InstanceState,
    InvalidRingError,
    RingDesc,
    TooManyUnhealthyInstancesError,
    _impl,
)
from pyro_core.ring.ring import ring_class

from .helpers import inst, random_desc, ring_descs, ring_of

S = InstanceState


@pytest.fixture
def Ring(impl: SimpleNamespace) -> Any:
    return ring_class(impl)


def abc(**states: S) -> RingDesc:
    return ring_of(
        inst("a", [10, 40], state=states.get("a", S.ACTIVE)),
        inst("b", [20, 50], state=states.get("b", S.ACTIVE)),
        inst("c", [30, 60], state=states.get("c", S.ACTIVE)),
    )


@pytest.mark.parametrize(
    ("key", "owner"), [(0, "a"), (5, "a"), (10, "b"), (11, "b"), (59, "c"), (60, "a"), (2**32 - 1, "a")]
)
def test_get_walks_to_first_token_strictly_greater_and_wraps(Ring: Any, key: int, owner: str) -> None:
    assert Ring(abc()).get(key).instance_ids() == [owner]


def test_get_returns_distinct_instances_in_walk_order_with_quorum(Ring: Any) -> None:
    rs = Ring(abc(), replication_factor=3).get(15)
    assert rs.instance_ids() == ["b", "c", "a"]
    assert rs.max_errors == 1 and rs.max_unavailable_zones == 0


def test_rf_larger_than_instances_uses_every_instance(Ring: Any) -> None:
    rs = Ring(abc(), replication_factor=5).get(15)
    assert rs.instance_ids() == ["b", "c", "a"]
    assert rs.max_errors == 0  # n = max(RF, 3) = 5 → min_success 3


def test_leaving_instance_extends_write_set_and_is_filtered(Ring: Any) -> None:
    desc = abc(b=S.LEAVING)
    desc.instances["d"] = inst("d", [70])
    rs = Ring(desc, replication_factor=3).get(15)
    # b (LEAVING) extends the set to 4 candidates: min_success 3, b filtered, max_errors 0
    assert rs.instance_ids() == ["c", "a", "d"] and rs.max_errors == 0


def test_write_no_extend_does_not_replace_leaving_instance(Ring: Any) -> None:
    desc = abc(b=S.LEAVING)
    desc.instances["d"] = inst("d", [70])
    rs = Ring(desc, replication_factor=3).get(15, WRITE_NO_EXTEND)
    assert rs.instance_ids() == ["c", "a"] and rs.max_errors == 0


def test_read_accepts_leaving_and_extends_on_joining(Ring: Any) -> None:
    ring = Ring(abc(b=S.LEAVING), replication_factor=3)
    assert ring.get(15, READ).instance_ids() == ["b", "c", "a"]
    desc = abc(b=S.JOINING)
    desc.instances["d"] = inst("d", [70])
    rs = Ring(desc, replication_factor=3).get(15, READ)
    assert rs.instance_ids() == ["c", "a", "d"] and rs.max_errors == 0


def test_stale_heartbeat_is_filtered_but_not_replaced(Ring: Any) -> None:
    desc = ring_of(inst("a", [10, 40], ts=0), inst("b", [20, 50]), inst("c", [30, 60]), inst("d", [70]))
    ring = Ring(desc, replication_factor=3, heartbeat_timeout=60)
    rs = ring.get(15, now=1000)
    assert rs.instance_ids() == ["b", "c"] and rs.max_errors == 0
    assert ring.get(15).instance_ids() == ["b", "c", "a"]  # no clock given: heartbeats not checked


def test_too_few_live_replicas_is_dskits_error(Ring: Any) -> None:
    desc = ring_of(inst("a", [10], ts=0), inst("b", [20], ts=0), inst("c", [30]))
    with pytest.raises(TooManyUnhealthyInstancesError) as err:
        Ring(desc, replication_factor=3).get(5, now=1000)
    assert str(err.value) == (
        "at least 2 live replicas required, could only find 1 - unhealthy instances: a:9095,b:9095"
    )


def test_zone_aware_get_takes_one_instance_per_zone(Ring: Any) -> None:
    desc = ring_of(
        inst("a", [10], zone="z1"),
        inst("b", [20], zone="z1"),
        inst("c", [30], zone="z2"),
        inst("d", [40], zone="z3"),
        inst("e", [50], zone="z2"),
    )
    assert Ring(desc, replication_factor=3, zone_awareness=True).get(5).instance_ids() == ["a", "c", "d"]
    assert Ring(desc, replication_factor=3).get(5).instance_ids() == ["a", "b", "c"]


def test_zone_aware_extension_stays_in_the_same_zone(Ring: Any) -> None:
    desc = ring_of(
        inst("a", [10], zone="z1", state=S.LEAVING),
        inst("b", [20], zone="z1"),
        inst("c", [30], zone="z2"),
        inst("d", [40], zone="z3"),
        inst("e", [50], zone="z2"),
    )
    rs = Ring(desc, replication_factor=3, zone_awareness=True).get(5)
    assert rs.instance_ids() == ["b", "c", "d"] and rs.max_errors == 0


def test_zone_aware_error_mentions_zones(Ring: Any) -> None:
    desc = ring_of(
        inst("a", [10], zone="z1", ts=0), inst("b", [20], zone="z2", ts=0), inst("c", [30], zone="z3")
    )
    with pytest.raises(TooManyUnhealthyInstancesError, match="across different availability zones"):
        Ring(desc, replication_factor=3, zone_awareness=True).get(5, now=1000)


def test_empty_ring_raises(Ring: Any) -> None:
    with pytest.raises(EmptyRingError, match="empty ring"):
        Ring(RingDesc()).get(1)
    with pytest.raises(EmptyRingError):
        Ring(ring_of(inst("a", []))).get(1)
    with pytest.raises(EmptyRingError):
        Ring(RingDesc()).get_many(np.array([1], dtype=np.uint32))
    with pytest.raises(EmptyRingError):
        Ring(RingDesc()).replication_set_for_operation(READ)


@pytest.mark.parametrize("key", [-1, 2**32, "7", 1.5, None])
def test_keys_outside_uint32_raise(Ring: Any, key: object) -> None:
    with pytest.raises(InvalidRingError):
        Ring(abc()).get(key)


@pytest.mark.parametrize(
    "keys",
    [[1, 2], np.array([1, 2], dtype=np.int64), np.array([1.0]), np.zeros((2, 2), dtype=np.uint32)],
)
def test_get_many_rejects_keys_of_the_wrong_dtype(Ring: Any, keys: object) -> None:
    with pytest.raises(InvalidRingError, match="uint32"):
        Ring(abc()).get_many(keys)


@pytest.mark.parametrize(
    "kwargs", [{"replication_factor": 0}, {"replication_factor": -3}, {"heartbeat_timeout": 0}]
)
def test_bad_ring_configuration_raises(Ring: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRingError):
        Ring(abc(), **kwargs)


def test_get_many_matches_get_and_groups_keys_per_instance(Ring: Any) -> None:
    ring = Ring(random_desc(20, 32, zones=3, seed=4), replication_factor=3, zone_awareness=True)
    keys = np.random.default_rng(1).integers(0, 2**32, 500, dtype=np.uint32)
    batch = ring.get_many(keys)
    assert len(batch.failed) == 0
    for i, k in enumerate(keys.tolist()):
        assert batch.replication_set(i) == ring.get(k)
    groups = batch.groups()
    assert sum(len(v) for v in groups.values()) == 3 * len(keys)
    for instance_id, rows in groups.items():
        for row in rows.tolist():
            assert instance_id in ring.get(int(keys[row])).instance_ids()


def test_get_many_marks_keys_without_quorum_as_failed(Ring: Any) -> None:
    desc = ring_of(inst("a", [10], ts=0), inst("b", [20], ts=0), inst("c", [30]))
    batch = Ring(desc, replication_factor=3).get_many(np.array([5, 25], dtype=np.uint32), now=1000)
    assert batch.failed.tolist() == [0, 1]
    batch = Ring(desc, replication_factor=1).get_many(np.array([5, 25], dtype=np.uint32), now=1000)
    assert batch.failed.tolist() == [0] and batch.replication_set(1).instance_ids() == ["c"]


def test_replication_set_for_operation_without_zones(Ring: Any) -> None:
    desc = random_desc(5, 4, seed=1)
    ring = Ring(desc, replication_factor=3)
    assert ring.replication_set_for_operation(READ).max_errors == 1  # required 5 - 1 = 4
    desc.instances["instance-0"] = desc["instance-0"].replace(state=S.PENDING)  # healthy for READ
    desc.instances["instance-1"] = desc["instance-1"].replace(state=S.JOINING)
    ring.update(desc)
    assert ring.replication_set_for_operation(READ).max_errors == 0
    desc.instances["instance-2"] = desc["instance-2"].replace(state=S.JOINING)
    ring.update(desc)
    with pytest.raises(TooManyUnhealthyInstancesError):
        ring.replication_set_for_operation(READ)
    rs = ring.replication_set_for_operation(REPORTING)
    assert len(rs.instances) == 5 and rs.max_errors == 1


def test_replication_set_for_operation_drops_zones_with_unhealthy_instances(Ring: Any) -> None:
    desc = random_desc(6, 4, zones=3, seed=2)
    ring = Ring(desc, replication_factor=3, zone_awareness=True)
    rs = ring.replication_set_for_operation(WRITE)
    assert len(rs.instances) == 6 and rs.max_unavailable_zones == 1 and rs.max_errors == 0
    desc.instances["instance-0"] = desc["instance-0"].replace(state=S.LEAVING)  # zone-0
    ring.update(desc)
    rs = ring.replication_set_for_operation(WRITE)
    assert {i.zone for i in rs.instances} == {"zone-1", "zone-2"} and rs.max_unavailable_zones == 0
    desc.instances["instance-1"] = desc["instance-1"].replace(state=S.LEAVING)  # zone-1
    ring.update(desc)
    with pytest.raises(TooManyUnhealthyInstancesError):
        ring.replication_set_for_operation(WRITE)


def test_state_only_update_swaps_without_rebuilding(Ring: Any) -> None:
    desc = abc()
    ring = Ring(desc, replication_factor=3)
    tokens_before = ring.tokens
    assert ring.update(abc(b=S.LEAVING)) is False
    assert ring.tokens is tokens_before
    assert ring.get(15).instance_ids() == ["c", "a"]
    grown = abc()
    grown.instances["d"] = inst("d", [70])
    assert ring.update(grown) is True and len(ring) == 4


def test_ownership_sums_to_one_per_zone(Ring: Any) -> None:
    ring = Ring(random_desc(9, 64, zones=3, seed=3), zone_awareness=True)
    own = ring.ownership()
    for z in range(3):
        assert sum(v for k, v in own.items() if int(k.split("-")[1]) % 3 == z) == pytest.approx(1.0)
    single = Ring(ring_of(inst("a", [123])))
    assert single.ownership() == {"a": 1.0}


# -- the two implementations agree ---------------------------------------------------------------
def _outcome(fn: Any) -> Any:
    try:
        rs = fn()
    except Exception as exc:  # compare error type and message
        return (type(exc).__name__, str(exc))
    return (rs.instance_ids(), rs.max_errors, rs.max_unavailable_zones)


@settings(max_examples=300, deadline=None)
@given(
    ring_descs(),
    st.integers(1, 5),
    st.booleans(),
    st.sampled_from([WRITE, WRITE_NO_EXTEND, READ, REPORTING]),
    st.sampled_from([None, 1000, 1100]),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_compiled_and_pure_lookups_agree(
    desc: RingDesc, rf: int, zone_aware: bool, op: int, now: int | None, keys: list[int]
) -> None:
    rings = [
        ring_class(_impl.kernels(n))(desc, replication_factor=rf, zone_awareness=zone_aware)
        for n in ("compiled", "pure")
    ]
    for k in keys:
        assert _outcome(lambda r=rings[0], k=k: r.get(k, op, now)) == _outcome(
            lambda r=rings[1], k=k: r.get(k, op, now)
        )
    assert _outcome(lambda: rings[0].replication_set_for_operation(op, now)) == _outcome(
        lambda: rings[1].replication_set_for_operation(op, now)
    )
    arr = np.array(keys, dtype=np.uint32)
    outs = [_outcome(lambda r=r: r.get_many(arr, op, now).replication_set(0)) for r in rings]
    assert outs[0] == outs[1]
    if all(len(r.tokens) for r in rings):
        b0, b1 = (r.get_many(arr, op, now) for r in rings)
        assert np.array_equal(b0.replicas, b1.replicas)
        assert np.array_equal(b0.max_errors, b1.max_errors)
        assert np.array_equal(b0.counts, b1.counts)


# -- robustness ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("get", {"key": True}),
        ("get", {"key": 5, "op": 2**40}),
        ("get", {"key": 5, "op": -1}),
        ("get", {"key": 5, "now": "x"}),
        ("get_many", {"keys": np.array([5], dtype=np.uint32), "op": 2**40}),
        ("get_many", {"keys": np.array([5], dtype=np.uint32), "now": "soon"}),
    ],
)
def test_bad_lookup_arguments_raise_invalid_ring_error(Ring: Any, call: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRingError):
        getattr(Ring(abc()), call)(**kwargs)


@pytest.mark.parametrize("rf", [2**31 - 1, 2**31, 2**21])
def test_replication_factor_beyond_the_bound_is_rejected(Ring: Any, rf: int) -> None:
    with pytest.raises(InvalidRingError, match="replication_factor"):
        Ring(abc(), replication_factor=rf)


def test_huge_replication_factor_within_the_bound_is_safe(Ring: Any) -> None:
    ring = Ring(abc(b=S.LEAVING), replication_factor=2**20)
    batch = ring.get_many(np.arange(0, 70, 7, dtype=np.uint32))
    assert batch.replicas.shape[1] <= 3 and len(batch.failed) == len(batch.counts)


def test_batch_width_ignores_tombstones_without_tokens(Ring: Any) -> None:
    desc = random_desc(10, 8, seed=1)
    for i in range(50):
        desc.instances[f"gone-{i}"] = inst(f"gone-{i}", [], state=S.LEFT)
    batch = Ring(desc, replication_factor=3).get_many(np.arange(100, dtype=np.uint32))
    assert batch.replicas.shape == (100, 3)


def test_get_all_healthy_lists_instances_healthy_for_the_operation(Ring: Any) -> None:
    desc = ring_of(inst("a", [10]), inst("b", [20], state=S.LEAVING), inst("c", [30], ts=0))
    ring = Ring(desc)
    assert ring.get_all_healthy(WRITE, now=1000).instance_ids() == ["a"]
    assert ring.get_all_healthy(READ).instance_ids() == ["a", "b", "c"]


def test_cached_shard_stays_cached_after_a_heartbeat_update(Ring: Any) -> None:
    desc = random_desc(20, 16, seed=3)
    ring = Ring(desc)
    shard = ring.shuffle_shard("tenant", 4)
    beat = desc.copy()
    first = shard.instance_ids()[0]
    beat.instances[first] = beat[first].replace(timestamp=5000)
    assert ring.update(beat) is False
    again = ring.shuffle_shard("tenant", 4)
    assert again is shard and again.desc[first].timestamp == 5000
    assert ring._shard_cache[("tenant", 4)][1] == ring._gen  # re-stamped: the fast path serves it now


def test_get_many_survives_concurrent_updates_from_another_thread() -> None:
    import threading

    ring = ring_class(_impl.kernels("compiled"))(random_desc(60, 64, seed=8), replication_factor=3)
    keys = np.random.default_rng(2).integers(0, 2**32, 200_000, dtype=np.uint32)
    descs = [random_desc(60, 64, seed=8, now=1000 + i) for i in range(3)] + [random_desc(40, 32, seed=9)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def updater() -> None:
        i = 0
        while not stop.is_set():
            ring.update(descs[i % len(descs)])
            ring.shuffle_shard("t", 10)
            i += 1

    t = threading.Thread(target=updater)
    t.start()
    try:
        for _ in range(20):
            batch = ring.get_many(keys)
            n = len(batch.instances)
            assert ((batch.replicas >= -1) & (batch.replicas < max(n, 60))).all()
    except BaseException as exc:  # pragma: no cover - reported below
        errors.append(exc)
    finally:
        stop.set()
        t.join()
    assert not errors
