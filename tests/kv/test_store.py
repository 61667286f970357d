# The gossiped KV store: CAS rules, tombstones, merging received values and forwarding the computed
# change, broadcast queues and invalidation, bad input, push/pull, and convergence of wired stores.
from __future__ import annotations

import random
import struct

import pytest

from pyro_core.kv.lifecycler import LifecyclerPhase
from pyro_core.kv.store import (
    NO_CHANGE_RETRY_DELAY,
    RING_DESC_CODEC,
    CasError,
    CasStatus,
    KVStore,
    cas_with_retries,
)
from pyro_core.ring.dskit_codec import KeyValuePair, encode_kv_pair
from pyro_core.ring.model import InstanceState, RingDesc

from .helpers import (
    KEY,
    OVERHEAD,
    PACKET,
    T0,
    FakeClock,
    Mesh,
    decode_message,
    drain,
    inst,
    make_store,
    pair_bytes,
    ring,
    set_ring,
)

TS = int(T0)
LEFT = InstanceState.LEFT
ACTIVE = InstanceState.ACTIVE
LEAVING = InstanceState.LEAVING


def add_instance(instance_id: str, ts: int, tokens: tuple[int, ...] = ()):  # type: ignore[no-untyped-def]
    def f(cur: RingDesc | None) -> tuple[RingDesc | None, bool]:
        desc = cur if cur is not None else RingDesc()
        desc.instances[instance_id] = inst(instance_id, ts, tokens=tokens)
        return desc, True

    return f


def remove_instance(instance_id: str):  # type: ignore[no-untyped-def]
    def f(cur: RingDesc | None) -> tuple[RingDesc | None, bool]:
        assert cur is not None
        cur.remove_instance(instance_id)
        return cur, True

    return f


# -- CAS -------------------------------------------------------------------------------------------------


def test_cas_change_is_visible_to_get_notifies_watchers_and_queues_the_delta() -> None:
    clock = FakeClock()
    store = make_store(clock)
    seen: list[RingDesc | None] = []
    store.watch_key(KEY, lambda v: seen.append(v))
    set_ring(store, ring(inst("a", TS, tokens=(1, 2)), inst("b", TS, tokens=(3,))), clock.now)

    result = store.cas(KEY, add_instance("c", TS + 1, (5,)), clock.now + 1)

    assert result.status is CasStatus.UPDATED and result.ok and result.final
    assert result.version == 2 == store.version(KEY)
    assert result.change == ring(inst("c", TS + 1, tokens=(5,)))  # the delta, not the whole ring
    got = store.get(KEY)
    assert got is not None and sorted(got) == ["a", "b", "c"]
    assert [sorted(v) for v in seen if v is not None] == [["a", "b"], ["a", "b", "c"]]
    # The queued local broadcast carries the delta ({c} does not cover the first one's {a, b}).
    assert sorted((v, sorted(c)) for _, v, c in store.queued(local=True)) == [(1, ["a", "b"]), (2, ["c"])]
    msgs = store.get_broadcasts(OVERHEAD, PACKET)
    assert (KEY, ring(inst("c", TS + 1, tokens=(5,)))) in [decode_message(m) for m in msgs]
    stats = store.stats
    assert (stats.cas_attempts, stats.cas_successes, stats.cas_failures) == (2, 2, 0)


def test_cas_of_a_new_key_stores_the_whole_value_without_local_cas() -> None:
    store = make_store(FakeClock())
    value = ring(inst("a", TS, tokens=(1,)))
    given: list[RingDesc | None] = []

    def f(cur: RingDesc | None) -> tuple[RingDesc | None, bool]:
        given.append(cur)
        return value, True

    result = store.cas(KEY, f, T0)
    assert given == [None] and result.change == value and store.version(KEY) == 1
    value.instances.clear()  # the store kept its own copy
    assert store.get(KEY) == ring(inst("a", TS, tokens=(1,)))


def test_cas_without_a_detectable_change_asks_to_retry_after_one_second() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("a", TS)), clock.now)
    # Same timestamp, new state: the merge cannot see it (one-second resolution).
    same_second = store.cas(KEY, lambda cur: (ring(inst("a", TS, state=LEAVING)), True), clock.now + 0.5)
    assert same_second.status is CasStatus.NO_CHANGE
    assert same_second.retry_after == NO_CHANGE_RETRY_DELAY == 1.0
    assert not same_second.ok and not same_second.final
    assert store.version(KEY) == 1 and store.num_queued_local() == 1  # only the first CAS's delta
    assert store.stats.cas_failures == 0  # a retryable failure: the loop counts it if it gives up


def test_cas_with_retries_sleeps_one_second_then_the_change_is_seen() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("a", TS)), clock.now)
    slept: list[float] = []

    def leave(cur: RingDesc | None) -> tuple[RingDesc | None, bool]:
        assert cur is not None
        cur.instances["a"] = cur["a"].replace(state=LEAVING, timestamp=int(clock.now))
        return cur, True

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    result = cas_with_retries(store, KEY, leave, clock=clock, sleep=sleep)
    assert result.status is CasStatus.UPDATED and slept == [1.0]
    got = store.get(KEY)
    assert got is not None and got["a"].state == LEAVING and store.stats.cas_attempts == 3


def test_cas_operation_gives_up_after_max_attempts_and_counts_one_failure() -> None:
    clock = FakeClock()
    store = make_store(clock, max_cas_retries=3)
    set_ring(store, ring(inst("a", TS)), clock.now)
    op = store.cas_operation(KEY, lambda cur: (cur, True))  # never a change
    result = op.attempt(clock.now)
    attempts = 1
    while op.retry_at is not None:
        assert op.retry_at == clock.now + 1.0
        clock.now = op.retry_at
        result = op.attempt(clock.now)
        attempts += 1
    assert attempts == 3 and op.done and result.final and result.status is CasStatus.NO_CHANGE
    assert result.error is not None and "too many retries" in result.error
    assert store.stats.cas_failures == 1
    with pytest.raises(RuntimeError):
        op.attempt(clock.now)


def test_cas_retry_flag_false_makes_no_change_a_final_failure() -> None:
    store = make_store(FakeClock())
    set_ring(store, ring(inst("a", TS)), T0)
    result = store.cas(KEY, lambda cur: (cur, False), T0)
    assert result.status is CasStatus.NO_CHANGE and result.final and store.stats.cas_failures == 1


def test_cas_function_returning_nothing_is_a_success_without_change() -> None:
    store = make_store(FakeClock())
    set_ring(store, ring(inst("a", TS)), T0)
    result = store.cas(KEY, lambda cur: (None, True), T0)
    assert result.status is CasStatus.NOTHING_TO_DO and result.ok and result.final
    assert store.version(KEY) == 1 and store.stats.cas_failures == 0


@pytest.mark.parametrize("retry", [True, False])
def test_cas_error_from_the_function_fails_the_attempt_with_its_retry_flag(retry: bool) -> None:
    store = make_store(FakeClock())

    def f(cur: RingDesc | None) -> tuple[RingDesc | None, bool]:
        raise CasError("nope", retry=retry)

    result = store.cas(KEY, f, T0)
    assert result.status is CasStatus.ERROR and result.error == "nope"
    assert result.retry_after == (0.0 if retry else None)
    assert store.keys() == [] and store.stats.cas_failures == (0 if retry else 1)


def test_cas_notices_a_version_change_made_while_the_function_ran() -> None:
    store = make_store(FakeClock())
    set_ring(store, ring(inst("a", TS)), T0)

    def f(cur: RingDesc | None) -> tuple[RingDesc | None, bool]:
        store.notify_msg(pair_bytes(ring(inst("z", TS + 5))))  # gossip arrives meanwhile
        assert cur is not None
        cur.instances["b"] = inst("b", TS)
        return cur, True

    result = store.cas(KEY, f, T0)
    assert result.status is CasStatus.CONFLICT and result.retry_after == 0.0
    got = store.get(KEY)
    assert got is not None and sorted(got) == ["a", "z"]


def test_cas_deletion_becomes_a_tombstone_hidden_from_get_and_watchers_but_gossiped() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("a", TS, tokens=(1,)), inst("b", TS, tokens=(2,))), clock.now)
    seen: list[RingDesc | None] = []
    store.watch_key(KEY, lambda v: seen.append(v))
    drain(store)

    result = store.cas(KEY, remove_instance("b"), clock.now + 3)

    assert result.status is CasStatus.UPDATED
    tomb = inst("b", TS + 3, state=LEFT)
    assert result.change == ring(tomb)
    assert store.get(KEY) == ring(inst("a", TS, tokens=(1,)))
    assert seen[-1] == ring(inst("a", TS, tokens=(1,)))
    raw = store.raw(KEY)
    assert raw is not None and raw["b"].state == LEFT and raw["b"].timestamp == TS + 3
    # The tombstone is what gets gossiped.
    assert [decode_message(m)[1] for m in store.get_broadcasts(OVERHEAD, PACKET)] == [ring(tomb)]
    # ... and is part of the full state.
    other = make_store(clock)
    other.merge_remote_state(store.local_state(False), False)
    assert other.raw(KEY) == raw


def test_tombstones_are_kept_until_left_ingesters_timeout_then_dropped_at_the_next_merge() -> None:
    clock = FakeClock()
    store = make_store(clock, left_ingesters_timeout=300.0)
    set_ring(store, ring(inst("a", TS), inst("b", TS)), clock.now)
    store.cas(KEY, remove_instance("b"), clock.now)  # tombstone stamped TS

    clock.now = T0 + 300  # not older than the limit yet
    assert store.cas(KEY, add_instance("a", TS + 300), clock.now).status is CasStatus.UPDATED
    raw = store.raw(KEY)
    assert raw is not None and "b" in raw and store.stats.tombstones[KEY] == 1

    clock.now = T0 + 301
    store.notify_msg(pair_bytes(ring(inst("a", TS + 301))))
    raw = store.raw(KEY)
    assert raw is not None and "b" not in raw
    stats = store.stats
    assert stats.tombstones_removed == 1 and stats.tombstones[KEY] == 0


def test_an_obsolete_tombstone_received_is_not_stored_nor_forwarded() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("a", TS)), clock.now)
    drain(store)
    old = ring(inst("z", TS - 1000, state=LEFT))
    store.notify_msg(pair_bytes(old))
    assert store.version(KEY) == 1 and store.stats.gossip_queue_length == 0
    raw = store.raw(KEY)
    assert raw is not None and "z" not in raw


# -- receiving gossip ------------------------------------------------------------------------------------


def test_received_message_is_merged_and_the_computed_change_is_forwarded_not_the_message() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("a", TS + 10, tokens=(1,))), clock.now)
    drain(store)
    seen: list[tuple[str, RingDesc]] = []
    store.watch_prefix("collectors/", lambda k, v: seen.append((k, v)))

    # "a" is older than ours, "b" is new: only "b" changes anything.
    received = ring(inst("a", TS, tokens=(1,)), inst("b", TS + 5, tokens=(2,)))
    store.notify_msg(pair_bytes(received))

    assert store.version(KEY) == 2
    got = store.get(KEY)
    assert got is not None and got["a"].timestamp == TS + 10 and "b" in got
    assert [k for k, _ in seen] == [KEY]
    assert store.stats.local_queue_length == 0
    forwarded = store.get_broadcasts(OVERHEAD, PACKET)
    assert [decode_message(m) for m in forwarded] == [(KEY, ring(inst("b", TS + 5, tokens=(2,))))]
    assert forwarded != [pair_bytes(received)]
    stats = store.stats
    assert stats.received_broadcasts == 1 and stats.sent_gossip_broadcasts == 1


def test_received_stale_message_changes_nothing_and_forwards_nothing() -> None:
    store = make_store(FakeClock())
    set_ring(store, ring(inst("a", TS + 10)), T0)
    drain(store)
    store.notify_msg(pair_bytes(ring(inst("a", TS))))
    assert store.version(KEY) == 1 and store.get_broadcasts(OVERHEAD, PACKET) == []


def test_received_deletion_mark_for_an_unknown_key_is_ignored() -> None:
    store = make_store(FakeClock())
    store.notify_msg(pair_bytes(ring(inst("a", TS)), deleted=True, update_time_millis=int(T0 * 1000)))
    assert store.keys() == [] and store.stats.received_broadcasts_invalid == 0


def test_delete_marks_the_key_gossips_the_mark_and_obsolete_entries_are_removed_later() -> None:
    clock = FakeClock()
    a, b = make_store(clock), make_store(clock)
    set_ring(a, ring(inst("x", TS)), clock.now)
    b.merge_remote_state(a.local_state(False), False)
    drain(a)

    assert a.delete(KEY, clock.now) and not a.delete(KEY, clock.now)
    info = a.key_info(KEY)
    assert info is not None and info.deleted and info.update_time_millis == int(T0 * 1000)
    for m in a.get_broadcasts(OVERHEAD, PACKET):
        b.notify_msg(m)
    info_b = b.key_info(KEY)
    assert info_b is not None and info_b.deleted and b.get(KEY) is not None  # still readable

    assert a.remove_obsolete_entries(clock.now + 30) == []
    assert a.remove_obsolete_entries(clock.now + 31) == [KEY] and a.keys() == []


def test_first_value_received_for_a_key_is_stored_whole_and_forwarded() -> None:
    store = make_store(FakeClock())
    value = ring(inst("a", TS, tokens=(7,)), inst("b", TS - 10, state=LEFT))
    store.notify_msg(pair_bytes(value))
    assert store.raw(KEY) == value and store.get(KEY) == ring(inst("a", TS, tokens=(7,)))
    assert [decode_message(m)[1] for m in store.get_broadcasts(OVERHEAD, PACKET)] == [value]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xff\xff garbage", id="garbled-pair"),
        pytest.param(pair_bytes(ring(inst("a", TS)), key=""), id="empty-key"),
        pytest.param(
            encode_kv_pair(KeyValuePair(key=KEY, value=b"x", codec="unknownCodec")), id="unknown-codec"
        ),
        pytest.param(
            encode_kv_pair(KeyValuePair(key=KEY, value=b"\x05not snappy", codec="ringDesc")),
            id="undecodable-value",
        ),
    ],
)
def test_garbled_message_is_counted_and_changes_nothing(payload: bytes) -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("a", TS, tokens=(1,))), clock.now)
    drain(store)
    before = store.raw(KEY)
    notified: list[object] = []
    store.watch_key(KEY, notified.append)

    store.notify_msg(payload)

    assert store.raw(KEY) == before and store.version(KEY) == 1 and store.keys() == [KEY]
    assert notified == [] and store.get_broadcasts(OVERHEAD, PACKET) == []
    stats = store.stats
    assert stats.received_broadcasts == 1 and stats.received_broadcasts_invalid == 1


def test_garbled_remote_state_keeps_the_pairs_before_the_damage_and_counts_it() -> None:
    clock = FakeClock()
    src = make_store(clock)
    set_ring(src, ring(inst("a", TS)), clock.now)
    good = src.local_state(False)
    unknown = encode_kv_pair(KeyValuePair(key="other", value=b"x", codec="nope"))
    data = good + struct.pack(">I", len(unknown)) + unknown + struct.pack(">I", 50) + b"short"

    dst = make_store(clock)
    dst.merge_remote_state(data, False)

    assert dst.keys() == [KEY] and dst.raw(KEY) == src.raw(KEY)
    assert dst.stats.state_pushes == 1 and dst.stats.state_pushes_invalid == 2


def test_watcher_exceptions_are_counted_and_do_not_escape_the_delegate() -> None:
    store = make_store(FakeClock())

    def boom(value: RingDesc | None) -> None:
        raise RuntimeError("watcher bug")

    store.watch_key(KEY, boom)
    store.notify_msg(pair_bytes(ring(inst("a", TS))))
    assert store.version(KEY) == 1 and store.stats.watch_callback_errors == 1


def test_watchers_stop_when_they_return_false_or_are_cancelled() -> None:
    store = make_store(FakeClock())
    once: list[object] = []
    every: list[str] = []
    store.watch_key(KEY, lambda v: once.append(v) or False)
    cancel = store.watch_prefix("collectors/", lambda k, v: every.append(k))
    store.notify_msg(pair_bytes(ring(inst("a", TS))))
    store.notify_msg(pair_bytes(ring(inst("a", TS + 1))))
    cancel()
    store.notify_msg(pair_bytes(ring(inst("a", TS + 2))))
    store.notify_msg(pair_bytes(ring(inst("a", TS + 3)), key="elsewhere"))
    assert len(once) == 1 and every == [KEY, KEY]


# -- broadcast queues ------------------------------------------------------------------------------------


def test_local_broadcasts_go_first_and_forwarded_gossip_fills_the_rest() -> None:
    clock = FakeClock()
    store = make_store(clock)
    store.notify_msg(pair_bytes(ring(inst("g", TS)), key="gossiped"))
    set_ring(store, ring(inst("l", TS)), clock.now)
    local_msg, gossip_msg = store.queued(local=True), store.queued(local=False)
    assert [k for k, _, _ in local_msg] == [KEY] and [k for k, _, _ in gossip_msg] == ["gossiped"]

    msgs = store.get_broadcasts(OVERHEAD, PACKET)
    assert [decode_message(m)[0] for m in msgs] == [KEY, "gossiped"]

    # With room for one message only, the local one wins.
    store2 = make_store(clock)
    store2.notify_msg(pair_bytes(ring(inst("g", TS)), key="gossiped"))
    set_ring(store2, ring(inst("l", TS)), clock.now)
    one = store2.get_broadcasts(OVERHEAD, len(pair_bytes(ring(inst("l", TS)))) + OVERHEAD + 5)
    assert [decode_message(m)[0] for m in one] == [KEY]


def test_new_broadcast_invalidates_a_queued_one_whose_instances_it_covers() -> None:
    clock = FakeClock()
    store = make_store(clock)
    set_ring(store, ring(inst("a", TS), inst("b", TS)), clock.now)  # queued: v1 {a, b}
    store.cas(KEY, add_instance("a", TS + 1), clock.now + 1)  # v2 {a}: does not cover {a, b}
    assert [(v, sorted(c)) for _, v, c in store.queued(local=True)] == [(1, ["a", "b"]), (2, ["a"])]
    store.cas(KEY, add_instance("a", TS + 2), clock.now + 2)  # v3 {a} covers v2 {a}
    assert sorted((v, sorted(c)) for _, v, c in store.queued(local=True)) == [(1, ["a", "b"]), (3, ["a"])]

    def both(cur: RingDesc | None) -> tuple[RingDesc | None, bool]:
        assert cur is not None
        cur.instances["a"] = inst("a", TS + 3)
        cur.instances["b"] = inst("b", TS + 3)
        return cur, True

    store.cas(KEY, both, clock.now + 3)  # v4 {a, b} covers everything queued
    assert [(v, sorted(c)) for _, v, c in store.queued(local=True)] == [(4, ["a", "b"])]
    # Another key is never invalidated.
    store.cas(KEY + "2", add_instance("a", TS), clock.now, codec_id="ringDesc")
    assert sorted(k for k, _, _ in store.queued(local=True)) == [KEY, KEY + "2"]


def test_queued_bytes_gauge_returns_to_zero_when_broadcasts_retire() -> None:
    store = make_store(FakeClock(), members=1)  # transmit limit 4 × ceil(log10 2) = 4
    set_ring(store, ring(inst("a", TS)), T0)
    assert store.stats.queued_bytes > 0
    for _ in range(4):
        assert len(store.get_broadcasts(OVERHEAD, PACKET)) == 1
    assert store.get_broadcasts(OVERHEAD, PACKET) == [] and store.stats.queued_bytes == 0


# -- push/pull -----------------------------------------------------------------------------------------


def test_local_state_frames_every_key_and_merge_remote_state_rebuilds_it() -> None:
    clock = FakeClock()
    src = make_store(clock)
    set_ring(src, ring(inst("a", TS, tokens=(1, 2)), inst("b", TS)), clock.now)
    src.cas(KEY, remove_instance("b"), clock.now + 1)
    set_ring_other = ring(inst("x", TS, tokens=(9,)))
    src.cas("other/ring", lambda cur: (set_ring_other.copy(), True), clock.now)

    data = src.local_state(False)
    keys = []
    offset = 0
    while offset < len(data):
        (n,) = struct.unpack_from(">I", data, offset)
        keys.append(decode_message(data[offset + 4 : offset + 4 + n])[0])
        offset += 4 + n
    assert keys == [KEY, "other/ring"]

    dst = make_store(clock)
    seen: list[str] = []
    dst.watch_prefix("", lambda k, v: seen.append(k))
    dst.merge_remote_state(data, True)
    assert dst.raw(KEY) == src.raw(KEY) and dst.raw("other/ring") == src.raw("other/ring")
    assert sorted(seen) == [KEY, "other/ring"]
    assert dst.stats.gossip_queue_length == 2 and dst.stats.local_queue_length == 0
    assert src.stats.state_pulls == 1 and src.stats.state_pulls_bytes == len(data)
    dst.merge_remote_state(data, False)  # idempotent
    assert dst.version(KEY) == 1


def test_node_meta_is_empty() -> None:
    assert make_store(FakeClock()).node_meta(512) == b""


def test_store_needs_a_codec_and_rejects_duplicates() -> None:
    with pytest.raises(ValueError):
        KVStore([], retransmit_mult=4, num_members=lambda: 1, clock=lambda: T0)
    with pytest.raises(ValueError):
        KVStore(
            [RING_DESC_CODEC, RING_DESC_CODEC], retransmit_mult=4, num_members=lambda: 1, clock=lambda: T0
        )


# -- convergence -----------------------------------------------------------------------------------------


def test_wired_stores_converge_after_concurrent_registrations_heartbeats_and_a_leave() -> None:
    clock = FakeClock()
    mesh = Mesh.of(3, clock)
    lcs = mesh.lifecyclers(seed=42)

    # Everyone registers before hearing from anyone: three concurrent CAS on three stores.
    for lc in lcs:
        assert lc.register(clock.now) is not None
    mesh.gossip_until_quiet()
    views = [s.get(KEY) for s in mesh.stores]
    assert all(v is not None and sorted(v) == ["ingester-0", "ingester-1", "ingester-2"] for v in views)
    assert views[0] == views[1] == views[2]
    tokens = views[0].tokens()  # type: ignore[union-attr]
    assert len(tokens) == 3 * 128 and len(set(tokens.tolist())) == 3 * 128

    # Heartbeats on every node, then ingester-2 leaves and unregisters.
    clock.advance(5)
    for lc in lcs:
        lc.handle_timer(clock.now)
    mesh.gossip_round()
    clock.advance(1)
    lcs[2].leave(clock.now)
    mesh.gossip_round()
    clock.advance(1)
    lcs[2].unregister(clock.now)
    mesh.gossip_until_quiet()

    raws = mesh.raw_values()
    assert raws[0] == raws[1] == raws[2]
    assert raws[0] is not None and raws[0]["ingester-2"].state == LEFT
    views = [s.get(KEY) for s in mesh.stores]
    assert views[0] == views[1] == views[2]
    assert views[0] is not None and sorted(views[0]) == ["ingester-0", "ingester-1"]
    assert all(v["ingester-0"].timestamp == int(T0) + 5 for v in views if v is not None)
    # Every node's Ring view follows its store.
    assert all(sorted(lc.ring().instance_ids()) == ["ingester-0", "ingester-1"] for lc in lcs)
    assert sum(s.stats.received_broadcasts_invalid for s in mesh.stores) == 0


def test_lossy_gossip_converges_after_a_push_pull() -> None:
    clock = FakeClock()
    mesh = Mesh.of(4, clock)
    lcs = mesh.lifecyclers(seed=7)
    for lc in lcs:
        lc.register(clock.now)
    mesh.gossip_until_quiet(loss=0.6)
    clock.advance(5)
    for lc in lcs:
        lc.handle_timer(clock.now)
    mesh.gossip_until_quiet(loss=0.6)
    for i in range(1, 4):  # a push/pull round: everyone with node 0, then back
        mesh.push_pull(0, i)
    for i in range(1, 4):
        mesh.push_pull(0, i)
    raws = mesh.raw_values()
    assert all(r == raws[0] for r in raws)
    assert raws[0] is not None and len(raws[0]) == 4
    assert all(i.timestamp == int(T0) + 5 for i in raws[0].instances.values())


def test_merge_order_does_not_matter_for_the_end_state() -> None:
    clock = FakeClock()
    msgs = [
        pair_bytes(ring(inst("a", TS, tokens=(1, 2)))),
        pair_bytes(ring(inst("b", TS + 1, tokens=(3,)))),
        pair_bytes(ring(inst("a", TS + 2, state=LEAVING, tokens=(1, 2)))),
        pair_bytes(ring(inst("b", TS + 3, state=LEFT))),
    ]
    forward, backward = make_store(clock), make_store(clock)
    for m in msgs:
        forward.notify_msg(m)
    for m in reversed(msgs):
        backward.notify_msg(m)
    assert forward.raw(KEY) == backward.raw(KEY)
    assert forward.get(KEY) == ring(inst("a", TS + 2, state=LEAVING, tokens=(1, 2)))


@pytest.mark.parametrize("seed", range(12))
def test_stores_converge_over_a_lossy_reordering_duplicating_network(seed: int) -> None:
    """Random lifecycles on four nodes; gossip that drops, duplicates and reorders; then push/pull:
    every store ends with the same value, tombstones included, and no token is held twice."""
    rng = random.Random(seed)
    clock = FakeClock()
    mesh = Mesh.of(4, clock)
    lcs = mesh.lifecyclers(seed=seed * 10)
    in_flight: list[tuple[int, bytes]] = []
    for _step in range(60):
        clock.advance(rng.choice([0.3, 1.0, 2.5]))
        i = rng.randrange(4)
        lc = lcs[i]
        action = rng.random()
        if lc.phase is LifecyclerPhase.NEW and action < 0.5:
            lc.register(clock.now)
        elif lc.phase is LifecyclerPhase.RUNNING and action < 0.1:
            lc.leave(clock.now)
        elif lc.phase is LifecyclerPhase.LEAVING and action < 0.3:
            lc.unregister(clock.now)
        for each in lcs:
            each.handle_timer(clock.now)
        for j, store in enumerate(mesh.stores):
            for m in store.get_broadcasts(OVERHEAD, PACKET):
                for k in range(4):
                    if k != j and rng.random() > 0.3:
                        in_flight.append((k, m))
                        if rng.random() < 0.1:
                            in_flight.append((k, m))  # duplicated
        rng.shuffle(in_flight)  # reordered
        deliver, in_flight = in_flight[: len(in_flight) // 2], in_flight[len(in_flight) // 2 :]
        for k, m in deliver:
            mesh.stores[k].notify_msg(m)
    for _ in range(2):
        for a in range(4):
            for b in range(a + 1, 4):
                mesh.push_pull(a, b)
    raws = mesh.raw_values()
    assert all(r == raws[0] for r in raws)
    views = [s.get(KEY) for s in mesh.stores]
    assert all(v == views[0] for v in views)
    if views[0] is not None:
        tokens = views[0].tokens().tolist()
        assert len(tokens) == len(set(tokens))
    assert sum(s.stats.received_broadcasts_invalid + s.stats.watch_callback_errors for s in mesh.stores) == 0
