# The gossip broadcast queue (memberlist's TransmitLimitedQueue), sans-I/O.
# Owns: which queued broadcasts go into the next packet and in what order, how many times each is sent
# before it retires (retransmit_limit), which queued broadcasts a new one replaces (named) or
# invalidates, and pruning. The Broadcast protocols that queued items implement.
# Must not know: message encodings, packets and their framing, sockets, clocks, or locking — the caller
# passes the per-message overhead and the byte budget, and owns the cluster size behind num_nodes.
#
# Order ("priority"): fewer transmits first; within a transmit tier, longer messages first; within a
# length, newer (higher id) first. A fetch walks the tiers from the lowest and, in each tier, takes the
# longest message that still fits the remaining space (newest among equals) until nothing fits. Every
# message a fetch returns spends one transmit; one that has been sent retransmit_limit times retires.
from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Broadcast",
    "NamedBroadcast",
    "QueuedBroadcast",
    "TransmitLimitedQueue",
    "UniqueBroadcast",
    "retransmit_limit",
]


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times a broadcast is sent in a cluster of ``n`` members: ``mult × ceil(log10(n + 1))``.

    0 for n = 0, mult for 1 ≤ n ≤ 9, 2 × mult for 10 ≤ n ≤ 99, and so on.
    """
    return retransmit_mult * math.ceil(math.log10(n + 1))


@runtime_checkable
class Broadcast(Protocol):
    """Something to disseminate by gossip, piggybacked on protocol packets."""

    def invalidates(self, other: Broadcast) -> bool:
        """True if queueing this broadcast makes the queued ``other`` obsolete.

        Only consulted for plain broadcasts (neither named nor unique), and only against queued plain
        broadcasts.
        """
        ...

    def message(self) -> bytes:
        """The bytes to send; must not change while the broadcast is queued."""
        ...

    def finished(self) -> None:
        """Called once when the broadcast leaves the queue: retired, replaced, invalidated, pruned or
        reset. It must not call back into the queue (it runs while the queue is being changed)."""
        ...


@runtime_checkable
class NamedBroadcast(Broadcast, Protocol):
    """A broadcast with a unique name (memberlist's are named after the member they are about).

    Queueing a named broadcast replaces the queued one of the same name, with no scan and without
    calling ``invalidates``. Queued named broadcasts are never invalidated by plain ones. A named
    broadcast whose name is empty is queued like a plain one (its ``invalidates`` is consulted), but is
    still never invalidated by others. ``invalidates`` should agree with the name: true exactly for
    another named broadcast of the same name.
    """

    def name(self) -> str: ...


@runtime_checkable
class UniqueBroadcast(Broadcast, Protocol):
    """A broadcast that is intrinsically unique: queueing it scans nothing and replaces nothing, and
    nothing invalidates it. ``invalidates`` should always return False."""

    def unique_broadcast(self) -> None:
        """A marker; never called."""
        ...


# Kinds of queued broadcasts, decided once when they are queued.
_PLAIN = 0
_NAMED = 1
_UNIQUE = 2

# Sort key of a queued broadcast: (transmits, -message length, -id); the smallest key goes first.
_Key = tuple[int, int, int]
# Below every real second or third key component (ids and lengths never reach 2**63).
_LOWEST = -(2**63)


class _Entry:
    """A queued broadcast and its bookkeeping (mutable; never handed out)."""

    __slots__ = ("broadcast", "id", "kind", "msg_len", "name", "transmits")

    def __init__(self, broadcast: Broadcast, transmits: int, msg_len: int, id: int, kind: int, name: str):
        self.broadcast = broadcast
        # How many times it has been sent.
        self.transmits = transmits
        # len(message()) when it was queued.
        self.msg_len = msg_len
        # Stamped from an increasing counter when queued: higher is newer.
        self.id = id
        # _PLAIN, _NAMED or _UNIQUE.
        self.kind = kind
        # The name of a named broadcast ("" otherwise, or if its name is empty).
        self.name = name

    def key(self) -> _Key:
        return (self.transmits, -self.msg_len, -self.id)


@dataclass(frozen=True, slots=True)
class QueuedBroadcast:
    """A snapshot of one queued broadcast (see ``TransmitLimitedQueue.queued``)."""

    broadcast: Broadcast
    # Times sent so far.
    transmits: int
    # Length of its message when queued.
    message_length: int
    # Queueing order stamp: higher is newer. Restarts at 1 when the queue has been empty.
    id: int


def _kind_and_name(b: Broadcast) -> tuple[int, str]:
    if isinstance(b, NamedBroadcast) and callable(b.name):
        return _NAMED, b.name()
    if isinstance(b, UniqueBroadcast) and callable(b.unique_broadcast):
        return _UNIQUE, ""
    return _PLAIN, ""


class TransmitLimitedQueue:
    """Broadcasts waiting to be gossiped, each sent a limited number of times, fresher ones first.

    ``num_nodes`` is the cluster size, or a callable returning it; it is read at every fetch to
    compute the transmit limit ``retransmit_limit(retransmit_mult, num_nodes)``.
    """

    def __init__(self, retransmit_mult: int, num_nodes: int | Callable[[], int]) -> None:
        # Multiplier of the transmit limit (memberlist's RetransmitMult).
        self.retransmit_mult = retransmit_mult
        # The cluster size, as a callable.
        self._num_nodes: Callable[[], int]
        if callable(num_nodes):
            self._num_nodes = num_nodes
        else:
            fixed = num_nodes
            self._num_nodes = lambda: fixed
        # Keys of the queued entries, sorted: the first is the first candidate to send.
        self._keys: list[_Key] = []
        # Entry of each key.
        self._by_key: dict[_Key, _Entry] = {}
        # Entry of each non-empty name.
        self._by_name: dict[str, _Entry] = {}
        # The last id handed out; restarts from 0 whenever a broadcast is queued into an empty queue.
        self._last_id = 0

    # -- queueing -------------------------------------------------------------------------------

    def queue_broadcast(self, b: Broadcast, *, initial_transmits: int = 0) -> None:
        """Queue ``b`` for gossip, first removing what it replaces or invalidates.

        ``initial_transmits`` places it in a later transmit tier, as if already sent that many times
        (for tests).
        """
        kind, name = _kind_and_name(b)
        done: list[Broadcast] = []
        if name:
            old = self._by_name.get(name)
            if old is not None:
                self._remove(old)
                done.append(old.broadcast)
        elif kind != _UNIQUE:
            # The slow path: ask the new broadcast about every queued plain one.
            stale = [
                e
                for e in (self._by_key[k] for k in self._keys)
                if e.kind == _PLAIN and b.invalidates(e.broadcast)
            ]
            for e in stale:
                self._remove(e)
                done.append(e.broadcast)
        if not self._keys:
            # Nothing queued: no id in use, so the counter can start again (ids stay unique).
            self._last_id = 0
        self._last_id += 1
        self._add(_Entry(b, initial_transmits, len(b.message()), self._last_id, kind, name))
        for d in done:
            d.finished()

    # -- sending --------------------------------------------------------------------------------

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Messages for one packet: at most ``limit`` bytes counting ``overhead`` bytes per message.

        Each returned message spends a transmit; those that reach the transmit limit leave the queue
        (``finished()`` is called), the others move to the next tier — after this fetch, so one fetch
        never returns a message twice.
        """
        if not self._keys:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, self._num_nodes())
        keys = self._keys
        to_send: list[bytes] = []
        sent: list[_Entry] = []
        used = 0
        tier = keys[0][0]
        while True:
            free = limit - used - overhead
            if free <= 0:
                break
            # The first entry of this tier whose length is at most `free`: the longest that fits,
            # newest among equals.
            i = bisect_left(keys, (tier, -free, _LOWEST))
            keep: _Entry | None = None
            msg = b""
            while i < len(keys) and keys[i][0] == tier:
                entry = self._by_key[keys[i]]
                msg = entry.broadcast.message()
                if len(msg) <= free:  # it could only be longer if message() changed while queued
                    keep = entry
                    break
                i += 1
            if keep is None:
                # Nothing in this tier fits (and never will in this fetch): go to the next tier.
                j = bisect_left(keys, (tier + 1, _LOWEST, _LOWEST))
                if j == len(keys):
                    break
                tier = keys[j][0]
                continue
            to_send.append(msg)
            used += overhead + len(msg)
            self._remove(keep)
            sent.append(keep)
        retired: list[Broadcast] = []
        for entry in sent:
            if entry.transmits + 1 >= transmit_limit:
                retired.append(entry.broadcast)
            else:
                entry.transmits += 1
                self._add(entry)
        for r in retired:
            r.finished()
        return to_send

    # -- housekeeping ---------------------------------------------------------------------------

    def num_queued(self) -> int:
        """How many broadcasts are queued."""
        return len(self._keys)

    def queued(self) -> list[QueuedBroadcast]:
        """A snapshot of the queue in priority order (the first is the first candidate to send)."""
        return [
            QueuedBroadcast(e.broadcast, e.transmits, e.msg_len, e.id)
            for e in (self._by_key[k] for k in self._keys)
        ]

    def prune(self, max_retain: int) -> None:
        """Drop the lowest-priority broadcasts (most sent, then shortest, then oldest) until at most
        ``max_retain`` remain; each dropped one is ``finished()``."""
        dropped: list[Broadcast] = []
        while self._keys and len(self._keys) > max_retain:
            entry = self._by_key[self._keys[-1]]
            self._remove(entry)
            dropped.append(entry.broadcast)
        for d in dropped:
            d.finished()

    def reset(self) -> None:
        """Empty the queue, calling ``finished()`` on every broadcast in priority order."""
        entries = [self._by_key[k] for k in self._keys]
        self._keys = []
        self._by_key = {}
        self._by_name = {}
        self._last_id = 0
        for e in entries:
            e.broadcast.finished()

    # -- internals ------------------------------------------------------------------------------

    def _add(self, entry: _Entry) -> None:
        key = entry.key()
        insort(self._keys, key)
        self._by_key[key] = entry
        if entry.name:
            self._by_name[entry.name] = entry

    def _remove(self, entry: _Entry) -> None:
        key = entry.key()
        i = bisect_left(self._keys, key)
        del self._keys[i]
        del self._by_key[key]
        if entry.name:
            del self._by_name[entry.name]

    def __repr__(self) -> str:
        return f"TransmitLimitedQueue(retransmit_mult={self.retransmit_mult}, queued={len(self._keys)})"
