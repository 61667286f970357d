# The distributor's write path: plan_push (tokens → shuffle shard → replicas → series per ingester)
# and PushTracker (DoBatch quorum bookkeeping), on hand-built rings.
from __future__ import annotations

import numpy as np
import pytest

from pyro_core import (
    WRITE,
    EmptyRingError,
    InstanceState,
    Ring,
    RingDesc,
    TooManyUnhealthyInstancesError,
    generate_tokens,
    labels_string,
    token_for,
    tokens_for,
)
from pyro_core.server.distributor import PushPlan, PushTracker, Series, plan_push
from pyro_core.server.push import PushSeries

NOW = 10_000


def make_ring(
    n: int,
    rf: int,
    *,
    states: dict[int, InstanceState] | None = None,
    heartbeats: dict[int, int] | None = None,
    n_tokens: int = 64,
) -> Ring:
    desc = RingDesc()
    taken: list[int] = []
    for i in range(n):
        toks = generate_tokens(n_tokens, taken, rng=100 + i)
        taken += toks.tolist()
        desc.add_instance(
            f"ing-{i}",
            f"10.0.0.{i}:9095",
            tokens=toks,
            state=(states or {}).get(i, InstanceState.ACTIVE),
            now=(heartbeats or {}).get(i, NOW),
        )
    return Ring(desc, replication_factor=rf)


def many_series(k: int, tenant_label: str = "svc") -> list[Series]:
    return [
        Series({"__name__": "process_cpu", "service_name": f"{tenant_label}-{i}"}, payload=i)
        for i in range(k)
    ]


def check_plan_consistent(
    plan: PushPlan, ring: Ring, tenant: str, series: list[Series], shard_size: int
) -> None:
    shard = ring.shuffle_shard(tenant, shard_size)
    expected_tokens = tokens_for(tenant, [labels_string(s.labels) for s in series])
    assert plan.tokens.tolist() == expected_tokens.tolist()
    regroup: dict[str, list[int]] = {}
    for i, tok in enumerate(plan.tokens.tolist()):
        rs = shard.get(tok, WRITE, NOW)
        assert plan.replicas[i] == tuple(inst.id for inst in rs.instances)
        assert plan.max_errors[i] == rs.max_errors
        assert plan.required_acks[i] == len(rs.instances) - rs.max_errors
        for inst in rs.instances:
            regroup.setdefault(inst.id, []).append(i)
    assert plan.per_instance == regroup
    assert set(plan.addresses) == set(plan.per_instance)
    for iid, addr in plan.addresses.items():
        assert addr == f"10.0.0.{iid.split('-')[1]}:9095"


# -- plan_push ------------------------------------------------------------------------------------


def test_rf1_each_series_on_one_instance() -> None:
    ring = make_ring(4, 1)
    series = many_series(50)
    plan = plan_push(ring, "tenant-1", series, shard_size=0, now=NOW)
    check_plan_consistent(plan, ring, "tenant-1", series, 0)
    assert all(len(r) == 1 for r in plan.replicas)
    assert plan.required_acks == [1] * 50 and plan.max_errors == [0] * 50
    assert sorted(i for idx in plan.per_instance.values() for i in idx) == list(range(50))
    assert len(plan.per_instance) == 4  # 50 series spread over every instance
    iid = next(iter(plan.per_instance))
    assert [s.payload for s in plan.batch(iid, series)] == plan.per_instance[iid]


def test_rf3_quorum_of_two() -> None:
    ring = make_ring(5, 3)
    series = many_series(40)
    plan = plan_push(ring, "tenant-1", series, shard_size=0, now=NOW)
    check_plan_consistent(plan, ring, "tenant-1", series, 0)
    assert all(len(set(r)) == 3 for r in plan.replicas)
    assert plan.required_acks == [2] * 40 and plan.max_errors == [1] * 40
    assert sum(len(v) for v in plan.per_instance.values()) == 120


@pytest.mark.parametrize("rf", [1, 3])
def test_shuffle_shard_confines_series(rf: int) -> None:
    ring = make_ring(10, rf)
    series = many_series(200)
    shard_ids = {inst.id for inst in ring.shuffle_shard("tenant-a", 4).desc.instances.values()}
    assert len(shard_ids) == 4
    plan = plan_push(ring, "tenant-a", series, shard_size=4, now=NOW)
    check_plan_consistent(plan, ring, "tenant-a", series, 4)
    assert set(plan.per_instance) == shard_ids  # 200 series reach every shard member, nobody else
    assert all(set(r) <= shard_ids for r in plan.replicas)
    other = plan_push(ring, "tenant-b", series, shard_size=4, now=NOW)
    assert set(other.per_instance) == {
        inst.id for inst in ring.shuffle_shard("tenant-b", 4).desc.instances.values()
    }
    # size 0 = the whole ring
    whole = plan_push(ring, "tenant-a", series, shard_size=0, now=NOW)
    assert len(whole.per_instance) == 10


def test_leaving_instance_extends_and_tightens_quorum() -> None:
    ring = make_ring(5, 3, states={0: InstanceState.LEAVING})
    series = many_series(60)
    plan = plan_push(ring, "t", series, shard_size=0, now=NOW)
    check_plan_consistent(plan, ring, "t", series, 0)
    assert "ing-0" not in plan.per_instance
    # every series has 3 healthy replicas; one that walked past ing-0 had 4 candidates → quorum 3
    assert all(len(r) == 3 for r in plan.replicas)
    assert set(plan.required_acks) == {2, 3}
    for i in range(60):
        assert plan.required_acks[i] + plan.max_errors[i] == 3


def test_stale_heartbeat_instance_is_not_replaced() -> None:
    ring = make_ring(5, 3, heartbeats={2: NOW - 3600})
    series = many_series(60)
    plan = plan_push(ring, "t", series, shard_size=0, now=NOW)
    check_plan_consistent(plan, ring, "t", series, 0)
    assert "ing-2" not in plan.per_instance
    # a series that had ing-2 among its 3 keeps 2 replicas and must get both (max_errors 0)
    assert {(len(r), m) for r, m in zip(plan.replicas, plan.max_errors, strict=True)} == {(3, 1), (2, 0)}


def test_too_few_live_replicas_fails_up_front() -> None:
    ring = make_ring(3, 3, heartbeats={0: NOW - 3600, 1: NOW - 3600})
    with pytest.raises(
        TooManyUnhealthyInstancesError, match=r"at least 2 live replicas required, could only find 1"
    ):
        plan_push(ring, "t", many_series(5), shard_size=0, now=NOW)
    # the same ring was fine while heartbeats were fresh
    assert len(plan_push(ring, "t", many_series(5), shard_size=0, now=NOW - 3600)) == 5


def test_empty_push_and_empty_ring() -> None:
    plan = plan_push(Ring(RingDesc()), "t", [], shard_size=0, now=NOW)
    assert len(plan) == 0 and plan.per_instance == {}
    tracker = PushTracker(plan)
    assert tracker.done and tracker.succeeded and tracker.decided and tracker.error is None
    with pytest.raises(EmptyRingError):
        plan_push(Ring(RingDesc()), "t", many_series(1), shard_size=0, now=NOW)


def test_pyroscope_token_vector_and_placement() -> None:
    labels = {"service_name": "foo", "__name__": "process_cpu"}
    assert labels_string(labels) == '{__name__="process_cpu", service_name="foo"}'
    assert token_for("tenant-1", labels_string(labels)) == 3659401939
    assert token_for("anonymous", labels_string({})) == 657731444
    desc = RingDesc()
    desc.add_instance("exact", "a:1", tokens=[3659401939], now=NOW)  # a token equal to the key is skipped
    desc.add_instance("next", "b:1", tokens=[3659401940], now=NOW)
    desc.add_instance("far", "c:1", tokens=[100], now=NOW)
    ring = Ring(desc, replication_factor=1)
    plan = plan_push(ring, "tenant-1", [Series(labels), Series({})], shard_size=0, now=NOW)
    assert plan.tokens.dtype == np.uint32
    assert plan.tokens.tolist() == [3659401939, token_for("tenant-1", "{}")]
    assert plan.replicas[0] == ("next",)
    assert 0 in plan.per_instance["next"] and plan.addresses["next"] == "b:1"


def test_accepts_push_series_pairs() -> None:
    ring = make_ring(3, 1)
    pairs = PushSeries(labels=(("service_name", "foo"), ("__name__", "process_cpu")))
    plan = plan_push(ring, "tenant-1", [pairs], shard_size=0, now=NOW)
    assert plan.tokens.tolist() == [3659401939]


# -- PushTracker ----------------------------------------------------------------------------------


def single_series_rf3() -> tuple[PushPlan, tuple[str, ...]]:
    ring = make_ring(5, 3)
    plan = plan_push(ring, "t", many_series(1), shard_size=0, now=NOW)
    return plan, plan.replicas[0]


def test_rf3_two_acks_succeed_early() -> None:
    plan, (a, b, c) = single_series_rf3()
    tr = PushTracker(plan)
    assert not tr.decided and tr.pending == {a, b, c}
    tr.ack(a)
    assert not tr.decided
    tr.ack(b)
    assert tr.decided and tr.succeeded and not tr.failed and not tr.done
    assert tr.pending == {c}
    tr.fail(c, "late timeout")  # a failure after the quorum does not undo it
    assert tr.done and tr.succeeded and not tr.failed and tr.error is None and tr.failed_series == []


def test_rf3_one_failure_tolerated() -> None:
    plan, (a, b, c) = single_series_rf3()
    tr = PushTracker(plan)
    tr.fail(a, "connection refused")
    assert not tr.decided and not tr.failed
    tr.ack(b)
    assert not tr.decided
    tr.ack(c)
    assert tr.succeeded and tr.done


def test_rf3_two_failures_fail_early_with_message() -> None:
    plan, (a, b, c) = single_series_rf3()
    tr = PushTracker(plan)
    tr.ack(a)
    tr.fail(b, "rpc error: ingester b unavailable")
    assert not tr.decided
    tr.fail(c, "rpc error: ingester c unavailable")
    assert tr.decided and tr.failed and not tr.succeeded and tr.done
    assert tr.failed_series == [0]
    assert tr.error == (
        "failed to push 1 of 1 series: only 1 of 3 replicas acknowledged series 0 "
        "(2 required, 2 failed): rpc error: ingester c unavailable"
    )
    assert not tr.client_error


def test_failure_decided_before_everyone_answers() -> None:
    ring = make_ring(6, 3)
    series = many_series(30)
    plan = plan_push(ring, "t", series, shard_size=0, now=NOW)
    a, b, _ = plan.replicas[7]
    tr = PushTracker(plan)
    tr.fail(a, "boom")
    tr.fail(b, "boom")
    assert tr.failed and tr.decided and not tr.done
    assert 7 in tr.failed_series
    assert all(set(plan.replicas[i]) >= {a, b} for i in tr.failed_series)
    assert tr.error is not None and "only 0 of 3 replicas acknowledged" in tr.error


def test_all_ack_succeeds_many_series() -> None:
    ring = make_ring(6, 3, states={1: InstanceState.LEAVING})
    plan = plan_push(ring, "t", many_series(100), shard_size=4, now=NOW)
    tr = PushTracker(plan)
    for iid in list(plan.per_instance):
        assert not tr.succeeded
        tr.ack(iid)
    assert tr.succeeded and tr.done and tr.failed_series == []


def test_rf1_single_failure_fails() -> None:
    ring = make_ring(3, 1)
    plan = plan_push(ring, "t", many_series(20), shard_size=0, now=NOW)
    victim = next(iter(plan.per_instance))
    tr = PushTracker(plan)
    tr.fail(victim, "ingester full", client_error=True)
    assert tr.failed and tr.client_error
    assert tr.failed_series == plan.per_instance[victim]
    assert tr.error is not None and tr.error.startswith(
        f"failed to push {len(plan.per_instance[victim])} of 20 series: only 0 of 1 replicas"
    )
    assert tr.error.endswith(": ingester full")


def test_4xx_and_5xx_counted_apart_then_short_when_done() -> None:
    plan, (a, b, c) = single_series_rf3()
    tr = PushTracker(plan)
    tr.fail(a, "bad request", client_error=True)
    tr.fail(b, "unavailable")
    assert not tr.decided  # neither kind exceeds max_errors = 1 (dskit counts them separately)
    tr.ack(c)
    assert tr.done and tr.failed and not tr.succeeded and tr.failed_series == [0]
    assert tr.error is not None and "only 1 of 3 replicas acknowledged series 0" in tr.error


def test_unknown_or_repeated_answers_rejected() -> None:
    plan, (a, _b, _c) = single_series_rf3()
    tr = PushTracker(plan)
    with pytest.raises(ValueError, match="not part of this push"):
        tr.ack("nobody")
    tr.ack(a)
    with pytest.raises(ValueError, match="already answered"):
        tr.fail(a, "x")


@pytest.mark.parametrize("seed", range(20))
def test_small_pushes_plan_exactly_like_the_batch_path(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pushes of up to 8 series take single-key lookups; they must give the batch path's plan.
    import pyro_core.server.distributor as distributor

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    rf = int(rng.integers(1, 4))
    states = {int(rng.integers(0, n)): InstanceState.LEAVING} if seed % 3 == 0 else None
    stale = {int(rng.integers(0, n)): NOW - 3600} if seed % 4 == 1 else None
    ring = make_ring(n, rf, states=states, heartbeats=stale)
    series = many_series(int(rng.integers(1, 9)), f"s{seed}")
    shard_size = int(rng.integers(0, n + 1))

    def plan(small: int) -> PushPlan | str:
        monkeypatch.setattr(distributor, "_SMALL_PUSH", small)
        try:
            return plan_push(ring, "tenant", series, shard_size=shard_size, now=NOW)
        except TooManyUnhealthyInstancesError as exc:
            return str(exc)

    small, batch = plan(8), plan(0)
    if isinstance(small, str) or isinstance(batch, str):
        assert small == batch
        return
    assert small.per_instance == batch.per_instance
    assert small.addresses == batch.addresses
    assert small.replicas == batch.replicas
    assert small.required_acks == batch.required_acks
    assert small.max_errors == batch.max_errors
    assert small.tokens.tolist() == batch.tokens.tolist()
