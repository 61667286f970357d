# Tests of the gossip broadcast queue (pyro_core/memberlist/queue.py).
# Owns: memberlist's queue and retransmitLimit tables (ordering, named replacement, byte budgets,
# transmit limits, pruning), the named/unique/plain invalidation rules, and properties checked against a
# brute-force reference model: byte budget respected, each broadcast sent exactly its transmit limit
# times, finished() called exactly once per broadcast that leaves, newer named broadcasts replace older.
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core.memberlist.queue import (
    Broadcast,
    NamedBroadcast,
    TransmitLimitedQueue,
    UniqueBroadcast,
    retransmit_limit,
)


class NodeBroadcast:
    """Like memberlist's own broadcasts: named after the node it is about."""

    def __init__(self, node: str, msg: bytes = b"") -> None:
        self.node = node
        self.msg = msg
        self.finished_calls = 0

    def name(self) -> str:
        return self.node

    def message(self) -> bytes:
        return self.msg

    def invalidates(self, other: Broadcast) -> bool:
        return isinstance(other, NodeBroadcast) and other.node == self.node

    def finished(self) -> None:
        self.finished_calls += 1

    def __repr__(self) -> str:
        return f"NodeBroadcast({self.node!r}, {self.msg!r})"


class KeyedBroadcast:
    """A plain broadcast (no name): it invalidates queued plain broadcasts with the same key."""

    def __init__(self, key: str, msg: bytes = b"") -> None:
        self.key = key
        self.msg = msg
        self.finished_calls = 0
        self.invalidates_calls = 0

    def message(self) -> bytes:
        return self.msg

    def invalidates(self, other: Broadcast) -> bool:
        self.invalidates_calls += 1
        return getattr(other, "key", None) == self.key

    def finished(self) -> None:
        self.finished_calls += 1


class OneOffBroadcast:
    """A unique broadcast: never replaces anything, never replaced."""

    def __init__(self, msg: bytes = b"") -> None:
        self.msg = msg
        self.key = "shared"  # a KeyedBroadcast("shared") would match it, were it consulted
        self.finished_calls = 0

    def unique_broadcast(self) -> None:
        pass

    def message(self) -> bytes:
        return self.msg

    def invalidates(self, other: Broadcast) -> bool:
        raise AssertionError("a unique broadcast is never asked to invalidate")

    def finished(self) -> None:
        self.finished_calls += 1


def as_node(b: Broadcast) -> NodeBroadcast:
    assert isinstance(b, NodeBroadcast)
    return b


def nodes_oldest_first_by_tier(q: TransmitLimitedQueue) -> list[str]:
    """memberlist's orderedView: the queue from the last candidate to the first."""
    return [as_node(qb.broadcast).node for qb in reversed(q.queued())]


def test_protocols_recognise_the_test_broadcasts() -> None:
    assert isinstance(NodeBroadcast("a"), NamedBroadcast)
    assert isinstance(OneOffBroadcast(), UniqueBroadcast)
    assert isinstance(KeyedBroadcast("a"), Broadcast)
    assert not isinstance(KeyedBroadcast("a"), NamedBroadcast)


# -- retransmitLimit ----------------------------------------------------------------------------

# (mult, n, limit) — memberlist util_test.go, then values around the powers of ten computed with
# Go 1.19's math.Log10 / math.Ceil.
RETRANSMIT_TABLE = [
    (3, 0, 0),
    (3, 1, 3),
    (3, 99, 6),
    (1, 2, 1),
    (1, 9, 1),
    (1, 10, 2),
    (1, 11, 2),
    (1, 100, 3),
    (1, 999, 3),
    (1, 1000, 4),
    (1, 9999, 4),
    (1, 10000, 5),
    (1, 99999, 5),
    (1, 100000, 6),
    (1, 999999, 6),
    (1, 1000000, 7),
    (4, 10, 8),
]


@pytest.mark.parametrize(("mult", "n", "limit"), RETRANSMIT_TABLE)
def test_retransmit_limit_table(mult: int, n: int, limit: int) -> None:
    assert retransmit_limit(mult, n) == limit


# -- memberlist queue_test.go -------------------------------------------------------------------

# (name, lesser (transmits, length, queued second?), greater): which of two broadcasts goes first.
LESS_CASES = [
    ("diff-transmits", (0, 10), (1, 10)),
    ("same-transmits--diff-len", (0, 12), (0, 10)),
]


@pytest.mark.parametrize(("name", "lesser", "greater"), LESS_CASES)
def test_broadcast_order_cases_from_memberlist(
    name: str, lesser: tuple[int, int], greater: tuple[int, int]
) -> None:
    q = TransmitLimitedQueue(1, 10)
    a = NodeBroadcast("a", b"x" * lesser[1])
    b = NodeBroadcast("b", b"x" * greater[1])
    q.queue_broadcast(b, initial_transmits=greater[0])
    q.queue_broadcast(a, initial_transmits=lesser[0])
    assert [qb.broadcast for qb in q.queued()] == [a, b]


def test_same_tier_same_length_newer_goes_first() -> None:
    # memberlist's "same-transmits--same-len--diff-id": the higher id (newer) is the lesser.
    q = TransmitLimitedQueue(1, 10)
    older = NodeBroadcast("older", b"x" * 12)
    newer = NodeBroadcast("newer", b"x" * 12)
    q.queue_broadcast(older)
    q.queue_broadcast(newer)
    view = q.queued()
    assert [qb.broadcast for qb in view] == [newer, older]
    assert view[0].id > view[1].id


def test_queue_order_and_named_replacement_from_memberlist() -> None:
    q = TransmitLimitedQueue(1, lambda: 1)
    first_test = NodeBroadcast("test")
    q.queue_broadcast(first_test)
    q.queue_broadcast(NodeBroadcast("foo"))
    q.queue_broadcast(NodeBroadcast("bar"))
    assert q.num_queued() == 3
    assert nodes_oldest_first_by_tier(q) == ["test", "foo", "bar"]

    # A new broadcast about "test" replaces the queued one and is now the newest.
    q.queue_broadcast(NodeBroadcast("test"))
    assert q.num_queued() == 3
    assert nodes_oldest_first_by_tier(q) == ["foo", "bar", "test"]
    assert first_test.finished_calls == 1


def eighteen_byte_broadcasts(q: TransmitLimitedQueue) -> list[NodeBroadcast]:
    bs = [
        NodeBroadcast("test", b"1. this is a test."),
        NodeBroadcast("foo", b"2. this is a test."),
        NodeBroadcast("bar", b"3. this is a test."),
        NodeBroadcast("baz", b"4. this is a test."),
    ]
    for b in bs:
        q.queue_broadcast(b)
    return bs


def test_get_broadcasts_from_memberlist() -> None:
    q = TransmitLimitedQueue(3, lambda: 10)
    eighteen_byte_broadcasts(q)
    # 2 bytes of overhead: 4 × 20 = 80 bytes, all four fit.
    assert len(q.get_broadcasts(2, 80)) == 4
    # 3 bytes of overhead: 3 × 21 = 63, the fourth would need 84.
    assert len(q.get_broadcasts(3, 80)) == 3


def test_get_broadcasts_transmit_limit_from_memberlist() -> None:
    q = TransmitLimitedQueue(1, lambda: 10)
    assert retransmit_limit(q.retransmit_mult, 10) == 2
    bs = eighteen_byte_broadcasts(q)
    assert [qb.id for qb in q.queued()] == [4, 3, 2, 1]

    assert q.get_broadcasts(3, 80) == [b"4. this is a test.", b"3. this is a test.", b"2. this is a test."]
    assert q.get_broadcasts(3, 80) == [b"1. this is a test.", b"4. this is a test.", b"3. this is a test."]
    # Only two left that have not hit the limit.
    assert q.get_broadcasts(3, 80) == [b"2. this is a test.", b"1. this is a test."]
    assert q.num_queued() == 0
    assert q.get_broadcasts(3, 80) == []
    assert all(b.finished_calls == 1 for b in bs)

    # The id counter starts again once the queue has emptied.
    q.queue_broadcast(NodeBroadcast("again", b"x"))
    assert [qb.id for qb in q.queued()] == [1]


def test_prune_from_memberlist() -> None:
    q = TransmitLimitedQueue(1, lambda: 10)
    test, foo, bar, baz = eighteen_byte_broadcasts(q)
    q.prune(2)
    assert q.num_queued() == 2
    assert (test.finished_calls, foo.finished_calls) == (1, 1)
    assert (bar.finished_calls, baz.finished_calls) == (0, 0)
    assert nodes_oldest_first_by_tier(q) == ["bar", "baz"]


def test_ordering_by_transmits_from_memberlist() -> None:
    q = TransmitLimitedQueue(1, lambda: 10)
    for name, transmits in [("node0", 0), ("node1", 10), ("node2", 3), ("node3", 4), ("node4", 7)]:
        q.queue_broadcast(NodeBroadcast(name, name.encode()), initial_transmits=transmits)
    assert [qb.transmits for qb in reversed(q.queued())] == [10, 7, 4, 3, 0]


# -- invalidation rules -------------------------------------------------------------------------


def test_plain_broadcast_invalidates_queued_plain_ones_it_claims() -> None:
    q = TransmitLimitedQueue(1, 10)
    old_a, old_b = KeyedBroadcast("a"), KeyedBroadcast("b")
    q.queue_broadcast(old_a)
    q.queue_broadcast(old_b)
    new_a = KeyedBroadcast("a")
    q.queue_broadcast(new_a)
    assert [qb.broadcast for qb in q.queued()] == [new_a, old_b]
    assert (old_a.finished_calls, old_b.finished_calls) == (1, 0)
    assert new_a.invalidates_calls == 2


def test_plain_broadcast_never_invalidates_named_or_unique_ones() -> None:
    q = TransmitLimitedQueue(1, 10)

    class SharedKeyNode(NodeBroadcast):
        key = "shared"  # a KeyedBroadcast("shared") would match it, were it consulted

    named = SharedKeyNode("n")
    unique = OneOffBroadcast()
    q.queue_broadcast(named)
    q.queue_broadcast(unique)
    plain = KeyedBroadcast("shared")
    q.queue_broadcast(plain)
    assert q.num_queued() == 3
    assert plain.invalidates_calls == 0
    assert named.finished_calls == unique.finished_calls == 0


def test_named_broadcast_does_not_consult_invalidates_and_spares_plain_ones() -> None:
    q = TransmitLimitedQueue(1, 10)
    plain = KeyedBroadcast("n")
    q.queue_broadcast(plain)

    class Nosy(NodeBroadcast):
        def invalidates(self, other: Broadcast) -> bool:
            raise AssertionError("named broadcasts are matched by name only")

    q.queue_broadcast(Nosy("n"))
    assert q.num_queued() == 2
    assert plain.finished_calls == 0


def test_unique_broadcasts_scan_nothing_and_pile_up() -> None:
    q = TransmitLimitedQueue(1, 10)
    plain = KeyedBroadcast("shared")
    q.queue_broadcast(plain)
    ones = [OneOffBroadcast(b"m") for _ in range(3)]
    for one in ones:
        q.queue_broadcast(one)
    assert q.num_queued() == 4
    assert plain.finished_calls == 0


def test_named_broadcast_with_empty_name_is_queued_like_a_plain_one() -> None:
    q = TransmitLimitedQueue(1, 10)
    plain = KeyedBroadcast("k")
    q.queue_broadcast(plain)

    class Anonymous(NodeBroadcast):
        key = "k"

        def invalidates(self, other: Broadcast) -> bool:
            return getattr(other, "key", None) == "k"

    first = Anonymous("")
    q.queue_broadcast(first)
    assert plain.finished_calls == 1  # its invalidates was consulted
    second = Anonymous("")
    q.queue_broadcast(second)
    # ...but it is still a named broadcast, so nothing invalidates it.
    assert first.finished_calls == 0
    assert q.num_queued() == 2


def test_reset_finishes_everything_and_restarts_ids() -> None:
    q = TransmitLimitedQueue(1, 10)
    bs = eighteen_byte_broadcasts(q)
    q.reset()
    assert q.num_queued() == 0
    assert all(b.finished_calls == 1 for b in bs)
    q.queue_broadcast(NodeBroadcast("x"))
    assert q.queued()[0].id == 1


def test_num_nodes_callable_is_read_at_every_fetch() -> None:
    size = [1]
    q = TransmitLimitedQueue(1, lambda: size[0])
    b = NodeBroadcast("a", b"m")
    q.queue_broadcast(b)
    size[0] = 100  # limit 3
    assert q.get_broadcasts(0, 10) == [b"m"]
    assert q.get_broadcasts(0, 10) == [b"m"]
    size[0] = 1  # limit 1: already sent twice, so the next send is its last
    assert q.get_broadcasts(0, 10) == [b"m"]
    assert q.num_queued() == 0
    assert b.finished_calls == 1


def test_empty_cluster_sends_each_broadcast_once() -> None:
    q = TransmitLimitedQueue(4, 0)
    b = NodeBroadcast("a", b"m")
    q.queue_broadcast(b)
    assert q.get_broadcasts(2, 100) == [b"m"]
    assert q.num_queued() == 0
    assert b.finished_calls == 1


def test_nothing_fits_when_the_overhead_eats_the_limit() -> None:
    q = TransmitLimitedQueue(1, 10)
    q.queue_broadcast(NodeBroadcast("a", b""))
    assert q.get_broadcasts(5, 5) == []
    assert q.get_broadcasts(0, 0) == []
    assert q.get_broadcasts(2, 3) == [b""]


def test_a_later_tier_fills_space_the_first_tier_cannot() -> None:
    q = TransmitLimitedQueue(5, 10)
    q.queue_broadcast(NodeBroadcast("big", b"B" * 50))
    q.queue_broadcast(NodeBroadcast("small", b"s" * 5), initial_transmits=3)
    q.queue_broadcast(NodeBroadcast("mid", b"m" * 30), initial_transmits=1)
    # 60 bytes: tier 0 gives big (50); 10 left: nothing else in tier 0 or 1 fits; tier 3 gives small.
    assert q.get_broadcasts(0, 60) == [b"B" * 50, b"s" * 5]
    assert [(as_node(qb.broadcast).node, qb.transmits) for qb in q.queued()] == [
        ("big", 1),  # same tier as mid now, and longer
        ("mid", 1),
        ("small", 4),
    ]


# -- properties, against a brute-force reference model ------------------------------------------


@dataclass
class ModelEntry:
    b: Broadcast
    transmits: int
    length: int
    id: int


@dataclass
class Model:
    """The queue's rules written the obvious way: a list, scanned in full at every step."""

    mult: int
    nodes: int
    entries: list[ModelEntry] = field(default_factory=list)
    last_id: int = 0
    finished: list[Broadcast] = field(default_factory=list)

    @staticmethod
    def priority(e: ModelEntry) -> tuple[int, int, int]:
        return (e.transmits, -e.length, -e.id)

    def queue(self, b: Broadcast, transmits: int) -> None:
        name = b.name() if isinstance(b, NamedBroadcast) else ""
        if name:
            gone = [e for e in self.entries if isinstance(e.b, NamedBroadcast) and e.b.name() == name]
        elif isinstance(b, UniqueBroadcast):
            gone = []
        else:
            plain = [e for e in self.entries if not isinstance(e.b, (NamedBroadcast, UniqueBroadcast))]
            gone = [e for e in sorted(plain, key=self.priority) if b.invalidates(e.b)]
        for e in gone:
            self.entries.remove(e)
            self.finished.append(e.b)
        self.last_id = self.last_id + 1 if self.entries else 1
        self.entries.append(ModelEntry(b, transmits, len(b.message()), self.last_id))

    def fetch(self, overhead: int, limit: int) -> list[bytes]:
        limit_tx = retransmit_limit(self.mult, self.nodes)
        taken: list[ModelEntry] = []
        used = 0
        while limit - used - overhead > 0:
            free = limit - used - overhead
            fits = [e for e in self.entries if e not in taken and e.length <= free]
            if not fits:
                break
            best = min(fits, key=self.priority)
            taken.append(best)
            used += overhead + best.length
        for e in taken:
            if e.transmits + 1 >= limit_tx:
                self.entries.remove(e)
                self.finished.append(e.b)
            else:
                e.transmits += 1
        return [e.b.message() for e in taken]

    def prune(self, keep: int) -> None:
        while self.entries and len(self.entries) > keep:
            worst = max(self.entries, key=self.priority)
            self.entries.remove(worst)
            self.finished.append(worst.b)


class CountingNamed(NodeBroadcast):
    pass


class CountingPlain(KeyedBroadcast):
    pass


class CountingUnique(OneOffBroadcast):
    def __init__(self, msg: bytes) -> None:
        super().__init__(msg)
        self.key = f"unique-{msg!r}"


_serial = [0]


Counted = CountingNamed | CountingPlain | CountingUnique


def make_broadcast(kind: str, key: str, length: int) -> Counted:
    _serial[0] += 1
    msg = f"{_serial[0]:06d}".encode()[:length].ljust(length, b".") if length else b""
    if kind == "named":
        return CountingNamed(key, msg)
    if kind == "plain":
        return CountingPlain(key, msg)
    return CountingUnique(msg)


@dataclass(frozen=True)
class QueueOp:
    kind: str
    key: str
    length: int
    transmits: int


@dataclass(frozen=True)
class FetchOp:
    overhead: int
    limit: int


@dataclass(frozen=True)
class PruneOp:
    keep: int


@dataclass(frozen=True)
class ResizeOp:
    nodes: int


Op = QueueOp | FetchOp | PruneOp | ResizeOp

OPS: st.SearchStrategy[list[Op]] = st.lists(
    st.one_of(
        st.builds(
            QueueOp,
            st.sampled_from(["named", "plain", "unique"]),
            st.sampled_from(["a", "b", "c", "d"]),
            st.integers(0, 40),
            st.integers(0, 3),
        ),
        st.builds(FetchOp, st.integers(0, 4), st.integers(0, 120)),
        st.builds(PruneOp, st.integers(0, 6)),
        st.builds(ResizeOp, st.integers(0, 200)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(st.integers(1, 4), st.integers(0, 200), OPS)
def test_queue_matches_the_reference_model(mult: int, nodes: int, ops: list[Op]) -> None:
    size = [nodes]
    q = TransmitLimitedQueue(mult, lambda: size[0])
    model = Model(mult, nodes)
    made: list[Counted] = []
    for op in ops:
        if isinstance(op, QueueOp):
            b = make_broadcast(op.kind, op.key, op.length)
            made.append(b)
            q.queue_broadcast(b, initial_transmits=op.transmits)
            model.queue(b, op.transmits)
        elif isinstance(op, FetchOp):
            assert q.get_broadcasts(op.overhead, op.limit) == model.fetch(op.overhead, op.limit)
        elif isinstance(op, PruneOp):
            q.prune(op.keep)
            model.prune(op.keep)
        else:
            size[0] = model.nodes = op.nodes
        assert [(qb.broadcast, qb.transmits, qb.id) for qb in q.queued()] == [
            (e.b, e.transmits, e.id) for e in sorted(model.entries, key=Model.priority)
        ]
    # finished() exactly once for every broadcast that left, never for one still queued.
    left = {id(b) for b in model.finished}
    for b in made:
        assert b.finished_calls == (1 if id(b) in left else 0)


@given(
    st.lists(st.integers(0, 100), max_size=30),
    st.integers(0, 10),
    st.integers(0, 600),
    st.integers(1, 5),
)
def test_queue_never_returns_more_bytes_than_the_limit(
    lengths: list[int], overhead: int, limit: int, fetches: int
) -> None:
    q = TransmitLimitedQueue(3, 50)
    for i, length in enumerate(lengths):
        q.queue_broadcast(NodeBroadcast(f"n{i}", b"x" * length))
    for _ in range(fetches):
        msgs = q.get_broadcasts(overhead, limit)
        assert sum(len(m) + overhead for m in msgs) <= limit


@given(st.integers(1, 5), st.integers(0, 10_000), st.integers(0, 5), st.integers(1, 200))
def test_broadcast_retires_after_retransmit_limit(mult: int, nodes: int, overhead: int, room: int) -> None:
    q = TransmitLimitedQueue(mult, nodes)
    b = NodeBroadcast("a", b"m" * 10)
    q.queue_broadcast(b)
    sends = 0
    for _ in range(100):
        sends += len(q.get_broadcasts(overhead, overhead + 10 + room))
    # Sent exactly retransmit_limit times (at least once, even when the limit is 0), then finished.
    assert sends == max(1, retransmit_limit(mult, nodes))
    assert q.num_queued() == 0
    assert b.finished_calls == 1


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 30)), min_size=1, max_size=30))
def test_named_broadcast_replaces_older_one_for_same_node(queued: list[tuple[str, int]]) -> None:
    q = TransmitLimitedQueue(3, 10)
    latest: dict[str, NodeBroadcast] = {}
    replaced: list[NodeBroadcast] = []
    for node, length in queued:
        b = NodeBroadcast(node, b"x" * length)
        if node in latest:
            replaced.append(latest[node])
        latest[node] = b
        q.queue_broadcast(b)
    assert {qb.broadcast for qb in q.queued()} == set(latest.values())
    assert q.num_queued() == len(latest)
    assert all(r.finished_calls == 1 for r in replaced)
    assert all(b.finished_calls == 0 for b in latest.values())


@given(st.lists(st.integers(0, 50), max_size=30), st.integers(0, 10), st.integers(0, 300))
def test_one_fetch_never_returns_a_message_twice(lengths: list[int], overhead: int, limit: int) -> None:
    q = TransmitLimitedQueue(10, 1000)
    for i, length in enumerate(lengths):
        q.queue_broadcast(NodeBroadcast(f"n{i}", f"{i:03d}".encode() + b"x" * length))
    msgs = q.get_broadcasts(overhead, limit)
    assert len(msgs) == len(set(msgs))


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 4)), max_size=30), st.integers(0, 35))
def test_prune_keeps_the_highest_priority_broadcasts(items: list[tuple[int, int]], keep: int) -> None:
    q = TransmitLimitedQueue(1, 10)
    for i, (length, transmits) in enumerate(items):
        q.queue_broadcast(NodeBroadcast(f"n{i}", b"x" * length), initial_transmits=transmits)
    before = q.queued()
    q.prune(keep)
    assert q.queued() == before[:keep]
    assert all(as_node(qb.broadcast).finished_calls == 1 for qb in before[keep:])
