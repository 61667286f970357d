# The ring lifecycle over the KV store: register, heartbeats, leave/unregister, auto-forget, operations
# queued behind a pending retry, the Ring view, and the ring client's metrics.
from __future__ import annotations

import numpy as np
import pytest

from pyro_core.kv.lifecycler import Lifecycler, LifecyclerPhase, ring_metrics
from pyro_core.kv.store import CasStatus
from pyro_core.ring.model import InstanceState, RingDesc
from pyro_core.ring.tokens import generate_tokens

from .helpers import KEY, T0, FakeClock, Mesh, drive, inst, make_store, ring, set_ring

TS = int(T0)
ACTIVE = InstanceState.ACTIVE
LEAVING = InstanceState.LEAVING
LEFT = InstanceState.LEFT


def lifecycler(store, instance_id: str = "ingester-0", seed: int = 0, **kwargs) -> Lifecycler:  # type: ignore[no-untyped-def]
    return Lifecycler(
        store, instance_id=instance_id, addr=f"{instance_id}:9095", rng=np.random.default_rng(seed), **kwargs
    )


def test_register_joins_active_at_once_with_128_unique_tokens_avoiding_taken_ones() -> None:
    clock = FakeClock()
    store = make_store(clock)
    # The other instance holds exactly the tokens our generator would draw first.
    taken = generate_tokens(128, (), np.random.default_rng(5))
    set_ring(store, ring(inst("other", TS, tokens=tuple(taken.tolist()))), clock.now)
    lc = lifecycler(store, seed=5)

    result = lc.register(clock.now)

    assert result is not None and result.status is CasStatus.UPDATED
    assert lc.phase is LifecyclerPhase.RUNNING and lc.state is ACTIVE
    mine = store.get(KEY)["ingester-0"]  # type: ignore[index]
    assert mine.state is ACTIVE and mine.timestamp == TS and mine.registered_timestamp == TS
    tokens = mine.tokens.tolist()
    assert len(tokens) == 128 == len(set(tokens)) and tokens == sorted(tokens)
    assert not set(tokens) & set(taken.tolist())
    assert lc.tokens == tokens
    assert lc.next_deadline() == clock.now + 5.0


def test_register_again_keeps_tokens_and_registration_time_of_the_ring() -> None:
    clock = FakeClock()
    store = make_store(clock)
    first = lifecycler(store, seed=1)
    first.register(clock.now)
    tokens = first.tokens
    first.close()

    clock.advance(100)  # a restart
    second = lifecycler(store, seed=2)
    second.register(clock.now)
    mine = store.get(KEY)["ingester-0"]  # type: ignore[index]
    assert mine.tokens.tolist() == tokens and mine.registered_timestamp == TS
    assert mine.timestamp == TS + 100


def test_register_tops_up_tokens_to_num_tokens() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("ingester-0", TS - 10, tokens=(10, 20))), clock.now)
    lc = lifecycler(store, num_tokens=5)
    lc.register(clock.now)
    tokens = lc.tokens
    assert len(tokens) == 5 and {10, 20} <= set(tokens)


def test_heartbeats_advance_the_timestamp_every_period() -> None:
    clock = FakeClock()
    store = make_store(clock)
    lc = lifecycler(store)
    lc.register(clock.now)
    stamps = []
    for _ in range(3):
        deadline = lc.next_deadline()
        assert deadline is not None
        clock.now = deadline
        done = lc.handle_timer(clock.now)
        assert [c.operation for c in done] == ["heartbeat"] and done[0].result.ok
        stamps.append(store.get(KEY)["ingester-0"].timestamp)  # type: ignore[index]
    assert stamps == [TS + 5, TS + 10, TS + 15] and lc.heartbeats == 3
    assert lc.instance is not None and lc.instance.timestamp == TS + 15


def test_heartbeat_timer_skips_missed_ticks() -> None:
    clock = FakeClock()
    lc = lifecycler(make_store(clock))
    lc.register(clock.now)
    lc.handle_timer(clock.now + 17)  # ticks at +5, +10, +15 were missed: one heartbeat
    assert lc.heartbeats == 1 and lc.next_deadline() == clock.now + 20


def test_heartbeat_before_registering_does_nothing() -> None:
    clock = FakeClock()
    store = make_store(clock)
    lc = lifecycler(store)
    result = lc.heartbeat(clock.now)
    assert result is not None and result.status is CasStatus.NOTHING_TO_DO
    assert store.keys() == [] and lc.next_deadline() is None


def test_leave_in_the_registration_second_waits_one_second_then_is_written() -> None:
    clock = FakeClock()
    store = make_store(clock)
    lc = lifecycler(store)
    lc.register(clock.now)

    first = lc.leave(clock.now + 0.5)  # same whole second: the merge cannot see the change
    assert first is not None and first.status is CasStatus.NO_CHANGE and first.retry_after == 1.0
    assert lc.busy and lc.next_deadline() == clock.now + 1.5

    done = lc.handle_timer(clock.now + 1.5)
    assert [(c.operation, c.result.status) for c in done] == [("leave", CasStatus.UPDATED)]
    assert lc.phase is LifecyclerPhase.LEAVING and not lc.busy
    mine = store.get(KEY)["ingester-0"]  # type: ignore[index]
    assert mine.state is LEAVING and mine.timestamp == TS + 1


def test_operations_queue_behind_a_pending_retry_and_run_in_order() -> None:
    clock = FakeClock()
    store = make_store(clock)
    lc = lifecycler(store)
    lc.register(clock.now)
    assert lc.leave(clock.now) is not None  # pending: retries in 1 s
    assert lc.unregister(clock.now) is None  # queued behind it
    done = lc.handle_timer(clock.now + 1)
    assert [c.operation for c in done] == ["leave", "unregister"]
    assert lc.phase is LifecyclerPhase.STOPPED and lc.next_deadline() is None


def test_leave_then_unregister_leaves_a_tombstone_hidden_from_get_and_removed_after_the_timeout() -> None:
    clock = FakeClock()
    store = make_store(clock, left_ingesters_timeout=300.0)
    stays, goes = lifecycler(store, "stays", seed=1), lifecycler(store, "goes", seed=2)
    stays.register(clock.now)
    goes.register(clock.now)

    clock.advance(2)
    assert goes.leave(clock.now).status is CasStatus.UPDATED  # type: ignore[union-attr]
    assert store.get(KEY)["goes"].state is LEAVING  # type: ignore[index]
    assert goes.ring_metrics(clock.now)["ring_members"]["LEAVING"] == 1
    # ... the shell flushes here, heartbeats go on ...
    clock.advance(5)
    goes.handle_timer(clock.now)
    assert goes.phase is LifecyclerPhase.LEAVING and goes.heartbeats == 1
    clock.advance(1)
    result = goes.unregister(clock.now)
    assert result is not None and result.status is CasStatus.UPDATED
    assert result.change is not None and list(result.change) == ["goes"]  # the delta: our tombstone
    tomb = result.change["goes"]
    assert (tomb.state, tomb.timestamp, len(tomb.tokens), tomb.registered_timestamp) == (LEFT, TS + 8, 0, TS)

    assert goes.phase is LifecyclerPhase.STOPPED and goes.instance is None and goes.next_deadline() is None
    assert sorted(store.get(KEY)) == ["stays"]  # type: ignore[arg-type]
    assert sorted(stays.ring().instance_ids()) == ["stays"]
    raw = store.raw(KEY)
    assert raw is not None and raw["goes"].state is LEFT and len(raw["goes"].tokens) == 0

    # Kept (and gossiped in full state) until left_ingesters_timeout, then dropped at the next merge:
    # stays heartbeats at T0 + 5k; at T0 + 305 the tombstone (T0 + 8) is 297 s old, at T0 + 310 312 s.
    drive(stays, clock, lambda: clock.now >= T0 + 305)
    assert "goes" in store.raw(KEY)  # type: ignore[operator]
    assert stays.handle_timer(T0 + 310)[0].result.ok
    assert "goes" not in store.raw(KEY)  # type: ignore[operator]
    assert store.stats.tombstones_removed == 1


def test_unregister_when_already_gone_is_nothing_to_do() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("someone-else", TS)), clock.now)
    lc = lifecycler(store)
    result = lc.unregister(clock.now)
    assert result is not None and result.status is CasStatus.NOTHING_TO_DO
    assert lc.phase is LifecyclerPhase.STOPPED


def test_auto_forget_removes_instances_unhealthy_for_more_than_ten_heartbeat_timeouts() -> None:
    clock = FakeClock()
    store = make_store(clock)
    lc = lifecycler(store, heartbeat_timeout=60.0)
    lc.register(clock.now)
    hb = clock.now + 5  # the first heartbeat
    others = (inst("stale", int(hb) - 601, tokens=(1,)), inst("borderline", int(hb) - 600, tokens=(2,)))
    assert store.cas(KEY, lambda cur: (_with(cur, *others), True), clock.now).ok

    done = lc.handle_timer(hb)

    assert [c.operation for c in done] == ["heartbeat"] and lc.forgotten == ["stale"]
    got = store.get(KEY)
    assert got is not None and sorted(got) == ["borderline", "ingester-0"]
    # Forgetting is a deletion by CAS: a tombstone stamped at the heartbeat, gossiped like any other.
    raw = store.raw(KEY)
    assert raw is not None and raw["stale"].state is LEFT and raw["stale"].timestamp == int(hb)


def test_auto_forget_can_be_disabled() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("stale", TS - 100_000)), clock.now)
    lc = lifecycler(store, forget_period=0)
    lc.register(clock.now)
    lc.handle_timer(clock.now + 5)
    assert "stale" in store.get(KEY)  # type: ignore[operator]


def _with(cur: RingDesc | None, *instances):  # type: ignore[no-untyped-def]
    desc = cur if cur is not None else RingDesc()
    for i in instances:
        desc.instances[i.id] = i
    return desc


def test_heartbeat_re_adds_an_instance_the_ring_lost() -> None:
    clock = FakeClock()
    a, b = make_store(clock), make_store(clock)
    lc = lifecycler(a)
    lc.register(clock.now)
    tokens = lc.tokens
    # Someone else deleted us (e.g. "forget" on the status page) and we hear of it.
    b.merge_remote_state(a.local_state(False), False)
    b.cas(KEY, lambda cur: (_without(cur, "ingester-0"), True), clock.now + 1)
    for m in b.get_broadcasts(2, 1400):
        a.notify_msg(m)
    assert "ingester-0" not in a.get(KEY)  # type: ignore[operator]

    clock.advance(5)
    lc.handle_timer(clock.now)
    mine = a.get(KEY)["ingester-0"]  # type: ignore[index]
    assert mine.tokens.tolist() == tokens and mine.registered_timestamp == TS + 5


def _without(cur: RingDesc | None, instance_id: str) -> RingDesc:
    assert cur is not None
    cur.remove_instance(instance_id)
    return cur


def test_ring_view_follows_the_store_through_gossip() -> None:
    clock = FakeClock()
    mesh = Mesh.of(2, clock)
    lcs = mesh.lifecyclers()
    lcs[0].register(clock.now)
    assert lcs[1].ring().instance_ids() == []
    mesh.gossip_until_quiet()
    assert lcs[1].ring().instance_ids() == ["ingester-0"]
    lcs[1].register(clock.now)
    mesh.gossip_until_quiet()
    view = lcs[0].ring()
    assert view.instance_ids() == ["ingester-0", "ingester-1"] and len(view.tokens) == 256
    assert view.get(12345).instances[0].id in ("ingester-0", "ingester-1")


# -- metrics ---------------------------------------------------------------------------------------------


def test_ring_metrics_on_a_hand_built_ring() -> None:
    now = T0
    desc = ring(
        inst("a1", TS - 10, ACTIVE, tokens=(1, 2, 3)),
        inst("a2", TS - 30, ACTIVE, tokens=(4, 5)),
        inst("l1", TS - 5, LEAVING, tokens=(6,)),
        inst("j1", TS - 60, InstanceState.JOINING),  # exactly at the timeout: still healthy
        inst("s1", TS - 61, ACTIVE, tokens=(7, 8)),  # stale heartbeat
        inst("s2", TS - 500, LEAVING, tokens=(9,)),  # stale heartbeat
    )
    metrics = ring_metrics(desc, now, heartbeat_timeout=60.0)
    assert metrics == {
        "ring_members": {"Unhealthy": 2, "ACTIVE": 2, "LEAVING": 1, "PENDING": 0, "JOINING": 1},
        "ring_tokens_total": 9,
        "ring_oldest_member_timestamp": {
            "Unhealthy": TS - 500,
            "ACTIVE": TS - 30,
            "LEAVING": TS - 5,
            "PENDING": 0,
            "JOINING": TS - 60,
        },
    }


def test_ring_metrics_of_an_empty_ring_report_zero_for_every_state() -> None:
    metrics = ring_metrics(RingDesc(), T0, 60.0)
    zeros = {"Unhealthy": 0, "ACTIVE": 0, "LEAVING": 0, "PENDING": 0, "JOINING": 0}
    assert metrics == {"ring_members": zeros, "ring_tokens_total": 0, "ring_oldest_member_timestamp": zeros}


def test_ring_metrics_label_a_tombstone_by_its_state_like_dskit() -> None:
    metrics = ring_metrics(ring(inst("gone", TS, LEFT)), T0, 60.0)
    assert metrics["ring_members"]["LEFT"] == 1 and metrics["ring_oldest_member_timestamp"]["LEFT"] == TS


def test_lifecycler_rejects_bad_configuration() -> None:
    store = make_store(FakeClock())
    with pytest.raises(ValueError):
        lifecycler(store, instance_id="")
    with pytest.raises(ValueError):
        lifecycler(store, heartbeat_period=0)
