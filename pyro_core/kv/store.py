# The gossiped key-value store (dskit's memberlist KV), sans-I/O.
# Owns: the store's entries (value, local version, codec, deleted flag, update time), the codec registry,
# the compare-and-swap rules (one attempt as data, and the retry loop as a small object a shell drives),
# merging received values into the store and computing the change to gossip on, the two broadcast queues
# (local updates first, forwarded gossip after) with dskit's invalidation rule, watchers, tombstone
# expiry and the counters a metrics layer exports. It is the SWIM core's ``Delegate``.
# Must not know: sockets, packets, the member list, sleeping or reading the clock — wall-clock unix
# seconds come in as ``now`` arguments or through the ``clock`` callable the shell injects — nor what a
# ring is beyond the ``Mergeable`` protocol below (RingDesc implements it).
#
# Time: the store needs wall-clock unix seconds (tombstones carry unix timestamps). Methods a shell calls
# itself take ``now``; the Delegate methods the SWIM core calls (``notify_msg``, ``merge_remote_state``)
# have no ``now`` argument, so they read the injected ``clock()`` once per call. A trio shell passes
# ``time.time`` (or, in mock-clock tests, ``lambda: epoch + trio.current_time()``).
#
# Retries: dskit's CAS tries up to 10 times and sleeps 1 s after a "no change detected" attempt (the ring
# merge works at one-second resolution). Here ``KVStore.cas`` makes one attempt and returns a
# ``CasResult`` whose ``retry_after`` says when to try again (None: final). ``CasOperation`` is the whole
# loop as data: ``attempt(now)``, then while ``retry_at`` is not None wait until then and attempt again;
# ``cas_with_retries`` drives it with an injected ``sleep`` for synchronous callers.
from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Final, Generic, Protocol, Self, TypeVar

from pyro_core.memberlist.queue import Broadcast, TransmitLimitedQueue
from pyro_core.ring.dskit_codec import (
    CODEC_ID,
    KeyValuePair,
    decode_dskit,
    decode_kv_pair,
    encode_dskit,
    encode_kv_pair,
)
from pyro_core.ring.errors import CodecError
from pyro_core.ring.model import RingDesc

__all__ = [
    "NO_CHANGE_RETRY_DELAY",
    "RING_DESC_CODEC",
    "CasError",
    "CasOperation",
    "CasResult",
    "CasStatus",
    "Codec",
    "KVStats",
    "KVStore",
    "KeyInfo",
    "Mergeable",
    "RingDescCodec",
    "cas_with_retries",
]

# dskit's noChangeDetectedRetrySleep: how long a CAS waits after the merge saw no change.
NO_CHANGE_RETRY_DELAY: Final = 1.0
# dskit's maxCasRetries.
DEFAULT_MAX_CAS_RETRIES: Final = 10
_U32: Final = struct.Struct(">I")


class Mergeable(Protocol):
    """A value the store can hold: a state-based CRDT (dskit ``memberlist.Mergeable``).

    ``merge`` merges ``other`` into this value in place and returns the change (None: no change);
    ``local_cas`` is set only for a local compare-and-swap, where entries missing from ``other`` become
    tombstones stamped ``now``. Iterating yields the names of the entries (dskit ``MergeContent``: a
    broadcast whose names cover a queued one's invalidates it). ``remove_tombstones(limit)`` drops
    tombstones older than ``limit`` unix seconds (all when 0) and returns (kept, removed).
    """

    def merge(self, other: Self | None, local_cas: bool = False, now: int | None = None) -> Self | None: ...
    def remove_tombstones(self, limit: int = 0) -> tuple[int, int]: ...
    def copy(self) -> Self: ...
    def without_tombstones(self) -> Self: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...


V = TypeVar("V", bound=Mergeable)


class Codec(Protocol[V]):
    """Turns a value into the bytes carried in ``KeyValuePair.value`` and back (dskit ``codec.Codec``).

    ``decode`` raises on malformed bytes (any exception: the store counts and drops the message).
    """

    @property
    def id(self) -> str: ...
    def encode(self, value: V) -> bytes: ...
    def decode(self, data: bytes) -> V: ...


class RingDescCodec:
    """dskit's ``ringDesc`` codec: protobuf ``ring.Desc`` as a snappy block.

    Empty bytes decode to the empty ring (dskit substitutes a snappy-encoded empty message for them).
    """

    @property
    def id(self) -> str:
        return CODEC_ID

    def encode(self, value: RingDesc) -> bytes:
        return encode_dskit(value)

    def decode(self, data: bytes) -> RingDesc:
        return decode_dskit(data) if data else RingDesc()


RING_DESC_CODEC: Final = RingDescCodec()


# -- CAS results ---------------------------------------------------------------------------------------


class CasStatus(enum.Enum):
    """How one CAS attempt ended."""

    UPDATED = "updated"  # merged and stored: version bumped, watchers notified, change queued locally
    NOTHING_TO_DO = "nothing_to_do"  # f returned no value: nothing to store (a success)
    NO_CHANGE = "no_change"  # f returned a value but the merge saw no change (same-second timestamps)
    CONFLICT = "conflict"  # the key's version moved while f ran
    ERROR = "error"  # f raised CasError, or merging its value failed


class CasError(Exception):
    """Raised by a CAS function to fail the attempt; ``retry`` says whether the loop may try again."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True, slots=True)
class CasResult(Generic[V]):
    """The outcome of a CAS attempt (or of a whole ``CasOperation``, for its last attempt).

    ``retry_after`` is the delay before the next attempt (0.0: at once; dskit sleeps 1 s after
    NO_CHANGE), or None when this result is final. ``change`` is the delta queued for gossip.
    """

    status: CasStatus
    key: str
    version: int  # the key's version after the attempt
    retry_after: float | None = None
    change: V | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The CAS succeeded: stored a change, or had nothing to do."""
        return self.status in (CasStatus.UPDATED, CasStatus.NOTHING_TO_DO)

    @property
    def final(self) -> bool:
        return self.retry_after is None


# -- stats ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Counters:
    # Names follow dskit's memberlist KV metrics (kv/memberlist/metrics.go) where one exists.
    cas_attempts: int = 0  # cas_attempt_total
    cas_successes: int = 0  # cas_success_total
    cas_failures: int = 0  # cas_failure_total (final failures, incl. retries exhausted)
    received_broadcasts: int = 0  # received_broadcasts_total (notify_msg calls)
    received_broadcasts_bytes: int = 0
    received_broadcasts_invalid: int = 0  # garbled pair, empty key, unknown codec, undecodable value
    sent_local_broadcasts: int = 0  # messages handed out by get_broadcasts from the local queue
    sent_gossip_broadcasts: int = 0  # ... and from the forwarded-gossip queue
    sent_broadcasts_bytes: int = 0
    broadcasts_dropped: int = 0  # messages_to_broadcast_dropped_total: a change that failed to encode
    state_pushes: int = 0  # state_pushes_total (merge_remote_state calls)
    state_pushes_bytes: int = 0
    state_pushes_invalid: int = 0  # pairs (or trailing garbage) dropped from a pushed state
    state_pulls: int = 0  # state_pulls_total (local_state calls)
    state_pulls_bytes: int = 0
    tombstones_removed: int = 0  # kv_store_value_tombstones_removed_total (all keys)
    watch_callback_errors: int = 0  # exceptions raised by watcher callbacks (caught)


@dataclass(frozen=True, slots=True)
class KVStats:
    """A snapshot of the store's counters and gauges (see ``KVStore.stats``)."""

    cas_attempts: int
    cas_successes: int
    cas_failures: int
    received_broadcasts: int
    received_broadcasts_bytes: int
    received_broadcasts_invalid: int
    sent_local_broadcasts: int
    sent_gossip_broadcasts: int
    sent_broadcasts_bytes: int
    broadcasts_dropped: int
    state_pushes: int
    state_pushes_bytes: int
    state_pushes_invalid: int
    state_pulls: int
    state_pulls_bytes: int
    tombstones_removed: int
    watch_callback_errors: int
    # Gauges.
    local_queue_length: int
    gossip_queue_length: int
    queued_bytes: int  # messages_in_broadcast_queue_bytes
    keys: int
    tombstones: Mapping[str, int]  # kv_store_value_tombstones{key}: as of the key's last merge


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the ``/memberlist`` status page shows about a key."""

    key: str
    codec: str
    version: int
    deleted: bool
    update_time_millis: int


# -- internals -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry(Generic[V]):
    """One key of the store (dskit ValueDesc). ``value`` is never changed in place once stored."""

    value: V
    # Local only: bumped on every change; stamps broadcasts for invalidation and checks CAS conflicts.
    version: int
    codec_id: str
    # Marked for deletion (dskit KV.Delete); removed after obsolete_entries_timeout.
    deleted: bool = False
    # Unix milliseconds of the deletion mark (0 = unknown).
    update_time_millis: int = 0


class _VersionMismatch(Exception):
    pass


@dataclass(slots=True)
class _Merged(Generic[V]):
    change: V
    version: int
    deleted: bool
    update_time_millis: int


class _ValueBroadcast:
    """A queued change of one key (dskit ringBroadcast): plain for the queue, never named or unique.

    A new one invalidates a queued one of the same key whose entry names it covers, if it is at least as
    new (by local version).
    """

    __slots__ = ("_msg", "_on_finished", "content", "key", "version")

    def __init__(
        self, key: str, content: frozenset[str], version: int, msg: bytes, on_finished: Callable[[int], None]
    ) -> None:
        self.key = key
        self.content = content
        self.version = version
        self._msg = msg
        self._on_finished = on_finished

    def invalidates(self, other: Broadcast) -> bool:
        return (
            isinstance(other, _ValueBroadcast)
            and other.key == self.key
            and other.content <= self.content
            and self.version >= other.version
        )

    def message(self) -> bytes:
        return self._msg

    def finished(self) -> None:
        self._on_finished(len(self._msg))

    def __repr__(self) -> str:
        return f"_ValueBroadcast(key={self.key!r}, version={self.version}, content={sorted(self.content)})"


@dataclass(eq=False, slots=True)
class _Watcher:
    callback: Callable[..., object]
    active: bool = True


def _unix_floor(now: float) -> int:
    return math.floor(now)


# -- the store -----------------------------------------------------------------------------------------


class KVStore(Generic[V]):
    """dskit's memberlist KV, sans-I/O: a map of keys to mergeable values, kept in sync by gossip.

    ``codecs``: the value codecs this store understands (a received value with another codec id is
    dropped). ``retransmit_mult`` and ``num_members`` size the broadcast queues' transmit limit
    (``retransmit_mult × ceil(log10(n + 1))``). ``clock`` returns wall-clock unix seconds; it is read
    only by the delegate methods that have no ``now`` argument. ``left_ingesters_timeout``: tombstones
    older than this are dropped at each merge (0 keeps them). ``obsolete_entries_timeout``: how long a
    key marked deleted stays before ``remove_obsolete_entries`` drops it.
    """

    def __init__(
        self,
        codecs: Iterable[Codec[V]],
        *,
        retransmit_mult: int,
        num_members: Callable[[], int],
        clock: Callable[[], float],
        left_ingesters_timeout: float = 300.0,
        obsolete_entries_timeout: float = 30.0,
        max_cas_retries: int = DEFAULT_MAX_CAS_RETRIES,
    ) -> None:
        self._codecs: dict[str, Codec[V]] = {}
        for codec in codecs:
            if codec.id in self._codecs:
                raise ValueError(f"two codecs with id {codec.id!r}")
            self._codecs[codec.id] = codec
        if not self._codecs:
            raise ValueError("the store needs at least one codec")
        if max_cas_retries < 1:
            raise ValueError(f"max_cas_retries must be at least 1, got {max_cas_retries}")
        if left_ingesters_timeout < 0 or obsolete_entries_timeout < 0:
            raise ValueError("timeouts must not be negative")
        self.left_ingesters_timeout = float(left_ingesters_timeout)
        self.obsolete_entries_timeout = float(obsolete_entries_timeout)
        self.max_cas_retries = max_cas_retries
        self._clock = clock
        self._store: dict[str, _Entry[V]] = {}
        # Locally generated changes: sent first.
        self._local = TransmitLimitedQueue(retransmit_mult, num_members)
        # Changes computed from received gossip, forwarded: fill the rest of a packet.
        self._gossip = TransmitLimitedQueue(retransmit_mult, num_members)
        self._queued_bytes = 0
        self._key_watchers: dict[str, list[_Watcher]] = {}
        self._prefix_watchers: dict[str, list[_Watcher]] = {}
        self._counters = _Counters()
        self._tombstones: dict[str, int] = {}

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, key: str) -> V | None:
        """The value of ``key`` as clients see it: a copy without tombstones (None if absent)."""
        entry = self._store.get(key)
        return entry.value.without_tombstones() if entry is not None else None

    def raw(self, key: str) -> V | None:
        """A copy of the stored value with its tombstones (for status pages and tests; clients use get)."""
        entry = self._store.get(key)
        return entry.value.copy() if entry is not None else None

    def keys(self, prefix: str = "") -> list[str]:
        """The keys (including those marked deleted) starting with ``prefix``, sorted."""
        return sorted(k for k in self._store if k.startswith(prefix))

    def version(self, key: str) -> int:
        """The key's local version: 0 if absent, bumped at every change."""
        entry = self._store.get(key)
        return entry.version if entry is not None else 0

    def key_info(self, key: str) -> KeyInfo | None:
        entry = self._store.get(key)
        if entry is None:
            return None
        return KeyInfo(key, entry.codec_id, entry.version, entry.deleted, entry.update_time_millis)

    def codec(self, codec_id: str) -> Codec[V] | None:
        return self._codecs.get(codec_id)

    @property
    def stats(self) -> KVStats:
        """A snapshot of the counters (monotonic) and gauges."""
        return KVStats(
            **asdict(self._counters),
            local_queue_length=self._local.num_queued(),
            gossip_queue_length=self._gossip.num_queued(),
            queued_bytes=self._queued_bytes,
            keys=len(self._store),
            tombstones=dict(self._tombstones),
        )

    def num_queued_local(self) -> int:
        """Locally generated changes still waiting to be gossiped (a shell waits for 0 before leaving)."""
        return self._local.num_queued()

    # -- watchers --------------------------------------------------------------------------------------

    def watch_key(self, key: str, callback: Callable[[V | None], bool | None]) -> Callable[[], None]:
        """Call ``callback(value)`` after every change of ``key`` (value without tombstones).

        Callbacks run synchronously inside the call that changed the store, after the change is
        stored and queued. Returning False stops the watch; so does calling the returned function.
        Exceptions from callbacks are caught and counted (``stats.watch_callback_errors``).
        """
        return self._add_watcher(self._key_watchers, key, callback)

    def watch_prefix(self, prefix: str, callback: Callable[[str, V], bool | None]) -> Callable[[], None]:
        """Call ``callback(key, value)`` after every change of a key starting with ``prefix``."""
        return self._add_watcher(self._prefix_watchers, prefix, callback)

    @staticmethod
    def _add_watcher(
        table: dict[str, list[_Watcher]], name: str, callback: Callable[..., object]
    ) -> Callable[[], None]:
        watcher = _Watcher(callback)
        table.setdefault(name, []).append(watcher)

        def cancel() -> None:
            watcher.active = False
            watchers = table.get(name)
            if watchers is not None and watcher in watchers:
                watchers.remove(watcher)
                if not watchers:
                    del table[name]

        return cancel

    def _notify_watchers(self, key: str) -> None:
        for watcher in list(self._key_watchers.get(key, ())):
            if watcher.active:
                self._call_watcher(self._key_watchers, key, watcher, self.get(key))
        for prefix in [p for p in self._prefix_watchers if key.startswith(p)]:
            for watcher in list(self._prefix_watchers.get(prefix, ())):
                value = self.get(key)
                if watcher.active and value is not None:
                    self._call_watcher(self._prefix_watchers, prefix, watcher, key, value)

    def _call_watcher(
        self, table: dict[str, list[_Watcher]], name: str, watcher: _Watcher, *args: object
    ) -> None:
        try:
            keep = watcher.callback(*args)
        except Exception:
            self._counters.watch_callback_errors += 1
            return
        if keep is False:
            watcher.active = False
            watchers = table.get(name)
            if watchers is not None and watcher in watchers:
                watchers.remove(watcher)
                if not watchers:
                    del table[name]

    # -- compare-and-swap ------------------------------------------------------------------------------

    def cas(
        self,
        key: str,
        f: Callable[[V | None], tuple[V | None, bool]],
        now: float,
        *,
        codec_id: str | None = None,
    ) -> CasResult[V]:
        """One CAS attempt (dskit trySingleCas); see ``CasOperation`` for the retry loop.

        ``f`` gets a copy of the current value without tombstones (None if absent) and returns
        (new value or None for "nothing to do", retry flag). The new value is merged into the store with
        ``local_cas`` (entries ``f`` removed become tombstones stamped ``now``). ``f`` may raise
        ``CasError``; other exceptions propagate. ``codec_id`` names the codec of a new key (default: the
        key's codec, or the only registered codec).

        A final failure is counted in ``stats.cas_failures``; a retryable one (``retry_after`` set) is
        counted by the loop when it gives up.
        """
        result = self._cas_attempt(key, f, now, codec_id)
        if not result.ok and result.final:
            self._counters.cas_failures += 1
        return result

    def cas_operation(
        self,
        key: str,
        f: Callable[[V | None], tuple[V | None, bool]],
        *,
        codec_id: str | None = None,
        max_attempts: int | None = None,
    ) -> CasOperation[V]:
        """dskit's CAS retry loop over ``key`` as an object a shell drives (see ``CasOperation``)."""
        return CasOperation(self, key, f, codec_id=codec_id, max_attempts=max_attempts)

    def _codec_for_cas(self, key: str, codec_id: str | None) -> Codec[V]:
        if codec_id is None:
            entry = self._store.get(key)
            if entry is not None:
                codec_id = entry.codec_id
            elif len(self._codecs) == 1:
                codec_id = next(iter(self._codecs))
            else:
                raise ValueError(f"key {key!r} is new and the store has several codecs: pass codec_id")
        codec = self._codecs.get(codec_id)
        if codec is None:
            raise ValueError(f"unknown codec {codec_id!r}")
        return codec

    def _cas_attempt(
        self,
        key: str,
        f: Callable[[V | None], tuple[V | None, bool]],
        now: float,
        codec_id: str | None,
    ) -> CasResult[V]:
        codec = self._codec_for_cas(key, codec_id)
        self._counters.cas_attempts += 1
        entry = self._store.get(key)
        version = entry.version if entry is not None else 0
        current = entry.value.without_tombstones() if entry is not None else None
        try:
            out, retry = f(current)
        except CasError as exc:
            return CasResult(
                CasStatus.ERROR, key, version, retry_after=0.0 if exc.retry else None, error=str(exc)
            )
        if out is None:
            return CasResult(CasStatus.NOTHING_TO_DO, key, version)
        try:
            merged = self._merge_value(
                key,
                out,
                clone=True,
                cas_version=version,
                codec_id=codec.id,
                deleted=False,
                update_time_millis=0,
                now=now,
            )
        except _VersionMismatch:
            return CasResult(
                CasStatus.CONFLICT,
                key,
                self.version(key),
                retry_after=0.0 if retry else None,
                error="version mismatch",
            )
        if merged is None:
            return CasResult(
                CasStatus.NO_CHANGE,
                key,
                version,
                retry_after=NO_CHANGE_RETRY_DELAY if retry else None,
                error="no change detected",
            )
        self._counters.cas_successes += 1
        self._broadcast(key, merged, codec, local=True)
        self._notify_watchers(key)
        return CasResult(CasStatus.UPDATED, key, merged.version, change=merged.change.copy())

    # -- merging ---------------------------------------------------------------------------------------

    def _merge_value(
        self,
        key: str,
        incoming: V,
        *,
        clone: bool,
        cas_version: int,
        codec_id: str,
        deleted: bool,
        update_time_millis: int,
        now: float,
    ) -> _Merged[V] | None:
        """dskit mergeValueForKey: merge ``incoming`` into the key's value; return the stored change.

        None when nothing changed (nothing stored, no version bump). Raises _VersionMismatch when
        ``cas_version`` is set and the key's version differs.
        """
        curr = self._store.get(key)
        if curr is None and deleted:
            return None  # a deletion of a key we do not have: do not revive it
        if cas_version > 0 and (curr is None or curr.version != cas_version):
            raise _VersionMismatch
        change: V | None
        if curr is None:
            result = incoming.copy() if clone else incoming
            change = result
        else:
            result = curr.value.copy()  # merged aside, committed below: the stored value never changes
            change = result.merge(incoming, cas_version > 0, _unix_floor(now))

        cur_deleted = curr.deleted if curr is not None else False
        cur_update = curr.update_time_millis if curr is not None else 0
        new_deleted, new_update = cur_deleted, cur_update
        if deleted and update_time_millis and update_time_millis > new_update:
            new_deleted, new_update = True, update_time_millis

        if (change is None or len(change) == 0) and cur_deleted == new_deleted:
            return None

        if self.left_ingesters_timeout > 0:
            # Tombstones strictly older than now - timeout go (timestamps are whole seconds, so the
            # float limit rounds up). A limit of 0 would mean "all": only reachable near the epoch.
            limit = math.ceil(now - self.left_ingesters_timeout)
            if limit > 0:
                kept, removed = result.remove_tombstones(limit)
                self._tombstones[key] = kept
                self._counters.tombstones_removed += removed
                if change is not None and change is not result:
                    change.remove_tombstones(limit)
                if change is not None and len(change) == 0:
                    # Only obsolete tombstones changed: keep the merged value, gossip nothing.
                    if curr is not None:
                        curr.value = result
                    return None

        if change is None:
            change = result  # only the deleted mark changed: the change is the whole value
        new_version = (curr.version if curr is not None else 0) + 1
        self._store[key] = _Entry(result, new_version, codec_id, new_deleted, new_update)
        return _Merged(change, new_version, new_deleted, new_update)

    def _merge_pair(self, pair: KeyValuePair, codec: Codec[V], now: float) -> bool:
        """Merge a received pair; gossip the computed change. False if the value did not decode."""
        try:
            incoming = codec.decode(pair.value)
        except Exception:  # any codec's decode error: a bad message, never ours to raise
            return False
        merged = self._merge_value(
            pair.key,
            incoming,
            clone=False,
            cas_version=0,
            codec_id=codec.id,
            deleted=pair.deleted,
            update_time_millis=pair.update_time_millis,
            now=now,
        )
        if merged is not None:
            # Forward what changed here, not the message received.
            self._broadcast(pair.key, merged, codec, local=False)
            self._notify_watchers(pair.key)
        return True

    # -- deletion --------------------------------------------------------------------------------------

    def delete(self, key: str, now: float) -> bool:
        """Mark ``key`` deleted (dskit KV.Delete) and gossip the mark; False if absent or already marked.

        The key stays readable until ``remove_obsolete_entries`` drops it.
        """
        entry = self._store.get(key)
        if entry is None or entry.deleted:
            return False
        codec = self._codecs.get(entry.codec_id)
        if codec is None:
            return False
        merged = self._merge_value(
            key,
            entry.value,
            clone=False,
            cas_version=0,
            codec_id=entry.codec_id,
            deleted=True,
            update_time_millis=max(1, round(now * 1000)),
            now=now,
        )
        if merged is None:
            return False
        self._broadcast(key, merged, codec, local=False)  # dskit queues it as forwarded gossip
        self._notify_watchers(key)
        return True

    def remove_obsolete_entries(self, now: float) -> list[str]:
        """Drop keys marked deleted more than ``obsolete_entries_timeout`` ago; return them.

        dskit runs this every ``obsolete_entries_timeout``; the shell owns that ticker.
        """
        removed = [
            k
            for k, e in self._store.items()
            if e.deleted and now - e.update_time_millis / 1000.0 > self.obsolete_entries_timeout
        ]
        for k in removed:
            del self._store[k]
            self._tombstones.pop(k, None)
        return sorted(removed)

    # -- broadcasting ----------------------------------------------------------------------------------

    def _broadcast(self, key: str, merged: _Merged[V], codec: Codec[V], *, local: bool) -> None:
        try:
            data = codec.encode(merged.change)
            msg = encode_kv_pair(
                KeyValuePair(
                    key=key,
                    value=data,
                    codec=codec.id,
                    deleted=merged.deleted,
                    update_time_millis=merged.update_time_millis,
                )
            )
        except Exception:  # any codec's encode error
            self._counters.broadcasts_dropped += 1
            return
        b = _ValueBroadcast(key, frozenset(merged.change), merged.version, msg, self._on_broadcast_finished)
        self._queued_bytes += len(msg)
        (self._local if local else self._gossip).queue_broadcast(b)

    def _on_broadcast_finished(self, size: int) -> None:
        self._queued_bytes -= size

    def queued(self, *, local: bool) -> list[tuple[str, int, frozenset[str]]]:
        """(key, version, entry names) of the queued broadcasts of one queue, in sending order."""
        queue = self._local if local else self._gossip
        out: list[tuple[str, int, frozenset[str]]] = []
        for q in queue.queued():
            b = q.broadcast
            if isinstance(b, _ValueBroadcast):
                out.append((b.key, b.version, b.content))
        return out

    # -- the memberlist Delegate -----------------------------------------------------------------------

    def node_meta(self, limit: int) -> bytes:
        """No node metadata (dskit sends some only with zone-aware routing)."""
        return b""

    def notify_msg(self, payload: bytes) -> None:
        """A gossiped ``KeyValuePair``: merge it, forward the computed change. Never raises on bad
        input: a garbled pair, an empty key, an unknown codec or an undecodable value is counted in
        ``stats.received_broadcasts_invalid`` and dropped."""
        c = self._counters
        c.received_broadcasts += 1
        c.received_broadcasts_bytes += len(payload)
        try:
            pair = decode_kv_pair(payload)
        except CodecError:
            c.received_broadcasts_invalid += 1
            return
        codec = self._codecs.get(pair.codec)
        if not pair.key or codec is None:
            c.received_broadcasts_invalid += 1
            return
        if not self._merge_pair(pair, codec, self._clock()):
            c.received_broadcasts_invalid += 1

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Messages for one packet: locally generated changes first, forwarded gossip in what is left."""
        msgs = self._local.get_broadcasts(overhead, limit)
        c = self._counters
        c.sent_local_broadcasts += len(msgs)
        left = limit - sum(overhead + len(m) for m in msgs)
        if left > 0:
            forwarded = self._gossip.get_broadcasts(overhead, left)
            c.sent_gossip_broadcasts += len(forwarded)
            msgs.extend(forwarded)
        c.sent_broadcasts_bytes += sum(len(m) for m in msgs)
        return msgs

    def local_state(self, join: bool) -> bytes:
        """The whole store for push/pull: every key as ``[u32 BE length][KeyValuePair]``, tombstones
        included, keys sorted."""
        parts: list[bytes] = []
        for key in sorted(self._store):
            entry = self._store[key]
            codec = self._codecs.get(entry.codec_id)
            if codec is None:
                continue
            try:
                msg = encode_kv_pair(
                    KeyValuePair(
                        key=key,
                        value=codec.encode(entry.value),
                        codec=entry.codec_id,
                        deleted=entry.deleted,
                        update_time_millis=entry.update_time_millis,
                    )
                )
            except Exception:  # any codec's encode error: leave the key out
                continue
            if len(msg) > 0xFFFFFFFF:
                continue
            parts.append(_U32.pack(len(msg)))
            parts.append(msg)
        data = b"".join(parts)
        self._counters.state_pulls += 1
        self._counters.state_pulls_bytes += len(data)
        return data

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        """A peer's whole store (its ``local_state``): merge every key; watchers are notified and the
        computed changes queued as forwarded gossip. Malformed framing stops the parse (the pairs before
        it are kept); a pair with an unknown codec or an undecodable value is skipped; each is counted in
        ``stats.state_pushes_invalid``."""
        c = self._counters
        c.state_pushes += 1
        c.state_pushes_bytes += len(data)
        now = self._clock()
        view = memoryview(data)
        offset, end = 0, len(view)
        while offset < end:
            if end - offset < 4:
                c.state_pushes_invalid += 1
                break
            (length,) = _U32.unpack_from(view, offset)
            offset += 4
            if end - offset < length:
                c.state_pushes_invalid += 1
                break
            try:
                pair = decode_kv_pair(view[offset : offset + length])
            except CodecError:
                c.state_pushes_invalid += 1
                break
            offset += length
            codec = self._codecs.get(pair.codec)
            if not pair.key or codec is None or not self._merge_pair(pair, codec, now):
                c.state_pushes_invalid += 1

    def __repr__(self) -> str:
        return (
            f"KVStore(keys={len(self._store)}, local_queued={self._local.num_queued()}, "
            f"gossip_queued={self._gossip.num_queued()})"
        )


# -- the CAS retry loop as data ------------------------------------------------------------------------


class CasOperation(Generic[V]):
    """dskit's CAS loop: up to ``max_attempts`` (default ``store.max_cas_retries``) attempts of
    ``store.cas``; after a NO_CHANGE attempt it waits 1 s, after a conflict or a retryable error it
    tries again at once. The loop ends at the first final result or when the attempts run out (then the
    last result is returned as final and ``stats.cas_failures`` counts it).

    A shell drives it::

        op = store.cas_operation(key, f)
        result = op.attempt(now())
        while op.retry_at is not None:
            await sleep_until(op.retry_at)
            result = op.attempt(now())
    """

    def __init__(
        self,
        store: KVStore[V],
        key: str,
        f: Callable[[V | None], tuple[V | None, bool]],
        *,
        codec_id: str | None = None,
        max_attempts: int | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self._f = f
        self._codec_id = codec_id
        self.max_attempts = store.max_cas_retries if max_attempts is None else max_attempts
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        # Attempts made so far.
        self.attempts = 0
        # The last attempt's result (final once retry_at is None).
        self.result: CasResult[V] | None = None
        # When to attempt again; None when done (or not started).
        self.retry_at: float | None = None

    @property
    def done(self) -> bool:
        return self.result is not None and self.retry_at is None

    def attempt(self, now: float) -> CasResult[V]:
        if self.done:
            raise RuntimeError("this CAS operation is finished")
        self.attempts += 1
        result = self.store._cas_attempt(self.key, self._f, now, self._codec_id)
        if result.retry_after is not None and self.attempts >= self.max_attempts:
            error = f"failed to CAS-update key {self.key}: too many retries ({result.error})"
            result = CasResult(result.status, result.key, result.version, None, result.change, error)
        if result.retry_after is None:
            self.retry_at = None
            if not result.ok:
                self.store._counters.cas_failures += 1
        else:
            self.retry_at = now + result.retry_after
        self.result = result
        return result

    def __repr__(self) -> str:
        return f"CasOperation(key={self.key!r}, attempts={self.attempts}, retry_at={self.retry_at})"


def cas_with_retries(
    store: KVStore[V],
    key: str,
    f: Callable[[V | None], tuple[V | None, bool]],
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    codec_id: str | None = None,
) -> CasResult[V]:
    """Run dskit's whole CAS loop synchronously: ``sleep(seconds)`` is called between attempts."""
    op = store.cas_operation(key, f, codec_id=codec_id)
    result = op.attempt(clock())
    while op.retry_at is not None:
        delay = op.retry_at - clock()
        if delay > 0:
            sleep(delay)
        result = op.attempt(clock())
    return result
