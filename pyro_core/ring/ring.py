# The read side of a ring (dskit ring.Ring): lookups, replication sets, shuffle shards.
# Owns: the public ``Ring`` API — configuration, swapping in new descriptions (tables rebuilt only
# on a topology change), the batch result, the all-instances replication set, shuffle-shard
# caching (wiped on topology change) and ownership. The walks themselves are kernels
# (pyro_core._ring or its pure twin); ``ring_class(kernels)`` builds the class over either.
# Must not know: clocks (``now`` is an argument), gossip, I/O.
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyro_core import _impl
from pyro_core.ring.errors import EmptyRingError, InvalidRingError, TooManyUnhealthyInstancesError
from pyro_core.ring.model import WRITE, InstanceDesc, RingDesc
from pyro_core.ring.shard import shard_size_per_zone
from pyro_core.ring.tables import RingTables, build_tables, same_topology, with_states

MAX_REPLICATION_FACTOR = 2**20


def _check_identifier(identifier: object) -> None:
    if type(identifier) is not str:
        raise InvalidRingError(f"identifier must be a string, got {type(identifier).__name__}")
    if not identifier.isascii():
        try:
            identifier.encode()
        except UnicodeEncodeError:
            raise InvalidRingError(f"identifier is not valid Unicode text: {identifier!r}") from None


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D {value.dtype} array"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class BatchReplication:
    """Replicas of many keys at once (``Ring.get_many``).

    ``replicas[i, :counts[i]]`` are the indices (into ``instances``) of key i's healthy replicas in
    walk order; ``max_errors[i]`` is -1 when key i has too few live replicas (dskit DoBatch fails
    the whole batch then: see ``failed``).
    """

    replicas: npt.NDArray[np.int32]
    counts: npt.NDArray[np.int32]
    max_errors: npt.NDArray[np.int32]
    instances: list[InstanceDesc]
    _set_type: type = object

    @property
    def failed(self) -> npt.NDArray[np.intp]:
        """Indices of keys without enough live replicas."""
        return np.flatnonzero(self.max_errors < 0)

    def replication_set(self, i: int) -> Any:
        """Key i's replicas as a ReplicationSet, as ``Ring.get`` returns them. For a failed key (see
        ``failed``), where ``get`` would raise, ``max_errors`` is -1."""
        n = int(self.counts[i])
        return self._set_type(
            tuple(self.instances[j] for j in self.replicas[i, :n].tolist()), int(self.max_errors[i]), 0
        )

    def groups(self) -> dict[str, npt.NDArray[np.intp]]:
        """Key indices per instance id (dskit DoBatch's fan-out), for keys that did not fail."""
        ok_rows = np.flatnonzero(self.max_errors >= 0)
        reps = self.replicas[ok_rows]
        rows = np.repeat(ok_rows, reps.shape[1]).reshape(reps.shape)
        mask = reps >= 0
        inst = reps[mask]
        keys = rows[mask]
        order = np.argsort(inst, kind="stable")
        inst, keys = inst[order], keys[order]
        bounds = np.flatnonzero(np.diff(inst)) + 1
        out: dict[str, npt.NDArray[np.intp]] = {}
        for chunk_inst, chunk_keys in zip(np.split(inst, bounds), np.split(keys, bounds), strict=True):
            if len(chunk_inst):
                out[self.instances[int(chunk_inst[0])].id] = chunk_keys
        return out


class _RingAPI:
    """The Python half of ``Ring`` (mixed over a kernel ``RingCore``)."""

    # No per-ring __dict__ (shards are many). The concrete class made by ``ring_class`` declares the
    # slots: an extension-type base forbids non-empty slots on this mixin.
    if TYPE_CHECKING:
        __slots__ = ("__weakref__", "_desc", "_gen", "_lookback_cache", "_shard_cache", "_t")
    else:
        __slots__ = ()

    _kernels: SimpleNamespace
    _desc: RingDesc
    _t: RingTables | None
    _gen: int
    _shard_cache: dict[tuple[str, int], tuple[Any, int]]  # read by the kernel's shuffle_shard
    _lookback_cache: dict[tuple[str, int, float], tuple[Any, int, int, int]] | None  # made on first use
    replication_factor: int
    zone_awareness: bool
    heartbeat_timeout: float

    if TYPE_CHECKING:  # provided by the kernel RingCore

        def _configure(
            self, replication_factor: int, zone_awareness: bool, heartbeat_timeout: float
        ) -> None: ...
        def _load(self, tables: RingTables) -> None: ...
        def _load_states(self, tables: RingTables) -> None: ...
        def get(self, key: int, op: int = WRITE, now: float | None = None) -> Any: ...
        def get_many_raw(self, keys: Any, op: int, now: float | None) -> tuple[Any, Any, Any, Any]: ...
        def _shard_pick(self, identifier: str, per_zone: int, lookback: bool, until: int) -> list[int]: ...
        def shuffle_shard(self, identifier: str, size: int) -> Any: ...
        def _subring(self, indices: list[int]) -> Any: ...

    def __init__(
        self,
        desc: RingDesc | None = None,
        replication_factor: int = 1,
        zone_awareness: bool = False,
        heartbeat_timeout: float = 60.0,
    ) -> None:
        if (
            isinstance(replication_factor, bool)
            or not isinstance(replication_factor, int)
            or not 1 <= replication_factor <= MAX_REPLICATION_FACTOR
        ):
            raise InvalidRingError(
                f"replication_factor must be an integer in [1, {MAX_REPLICATION_FACTOR}], "
                f"got {replication_factor!r}"
            )
        if (
            isinstance(heartbeat_timeout, bool)
            or not isinstance(heartbeat_timeout, (int, float))
            or not 0 < heartbeat_timeout < math.inf
        ):
            raise InvalidRingError(
                f"heartbeat_timeout must be a positive number of seconds, got {heartbeat_timeout!r}"
            )
        if desc is not None and not isinstance(desc, RingDesc):
            raise InvalidRingError(f"desc must be a RingDesc, got {type(desc).__name__}")
        self._configure(replication_factor, bool(zone_awareness), float(heartbeat_timeout))
        self._gen = 0
        self._shard_cache = {}
        self._lookback_cache = {}
        self._desc = desc if desc is not None else RingDesc()
        self._t = None
        self._ensure_tables()

    # -- state ------------------------------------------------------------------------------------
    def _ensure_tables(self) -> RingTables:
        if self._t is None:
            self._t = build_tables(self._desc)
            self._load(self._t)
        return self._t

    def _lazy_load(self) -> None:
        self._ensure_tables()

    @property
    def desc(self) -> RingDesc:
        return self._desc

    def update(self, desc: RingDesc) -> bool:
        """Swap in a new description; return True when the topology changed (tables rebuilt and
        shard caches wiped), False when only states or heartbeats changed (a cheap swap)."""
        if not isinstance(desc, RingDesc):
            raise InvalidRingError(f"desc must be a RingDesc, got {type(desc).__name__}")
        old = self._ensure_tables()
        self._desc = desc
        self._gen += 1
        if same_topology(old, desc):
            self._t = with_states(old, desc)
            self._load_states(self._t)  # tables, bucket index and scratch stay as they are
            return False
        self._t = build_tables(desc)
        self._load(self._t)
        self._shard_cache.clear()
        self._lookback_cache = None
        return True

    def __len__(self) -> int:
        return len(self._desc.instances)

    def __iter__(self) -> Iterator[InstanceDesc]:
        return iter(self._ensure_tables().instances)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._desc.instances

    def instance_ids(self) -> list[str]:
        """Ids of the ring's instances, sorted."""
        return sorted(self._desc.instances)

    @property
    def instances(self) -> list[InstanceDesc]:
        """Instances sorted by id; the indices used by ``get_many``."""
        return list(self._ensure_tables().instances)

    @property
    def zones(self) -> list[str]:
        return list(self._ensure_tables().zones)

    @property
    def tokens(self) -> npt.NDArray[np.uint32]:
        return self._ensure_tables().tokens

    def __repr__(self) -> str:
        return (
            f"Ring(<{len(self)} instances>, replication_factor={self.replication_factor}, "
            f"zone_awareness={self.zone_awareness})"
        )

    # -- lookups ----------------------------------------------------------------------------------
    def get_many(
        self, keys: npt.NDArray[np.uint32], op: int = WRITE, now: float | None = None
    ) -> BatchReplication:
        """Replicas of every key of a uint32 array at once (a nogil loop in the compiled build)."""
        if not isinstance(keys, np.ndarray) or keys.dtype != np.uint32 or keys.ndim != 1:
            raise InvalidRingError(
                f"keys must be a one-dimensional numpy array of dtype uint32 (got {_describe(keys)})"
            )
        replicas, counts, max_errors, instances = self.get_many_raw(np.ascontiguousarray(keys), op, now)
        return BatchReplication(replicas, counts, max_errors, instances, self._kernels.ring.ReplicationSet)

    def get_all_healthy(self, op: int = WRITE, now: float | None = None) -> Any:
        t = self._ensure_tables()
        if not t.instances:
            raise EmptyRingError()
        healthy = tuple(i for i in t.instances if i.is_healthy(op, self.heartbeat_timeout, now))
        return self._kernels.ring.ReplicationSet(healthy, 0, 0)

    def replication_set_for_operation(self, op: int = WRITE, now: float | None = None) -> Any:
        """Every instance to call for ``op`` (e.g. a query), with dskit's error and zone rules."""
        t = self._ensure_tables()
        if len(t.tokens) == 0:
            raise EmptyRingError()
        healthy: list[InstanceDesc] = []
        failed_zones: set[str] = set()
        for inst in t.instances:
            if inst.is_healthy(op, self.heartbeat_timeout, now):
                healthy.append(inst)
            else:
                failed_zones.add(inst.zone)
        rf = self.replication_factor
        if self.zone_awareness:
            max_unavailable_zones = min(len(t.zones), rf) // 2
            if len(failed_zones) > max_unavailable_zones:
                raise TooManyUnhealthyInstancesError(
                    f"too many unhealthy instances in the ring: {len(failed_zones)} zones have unhealthy "
                    f"instances, at most {max_unavailable_zones} may"
                )
            if failed_zones:
                healthy = [i for i in healthy if i.zone not in failed_zones]
            return self._kernels.ring.ReplicationSet(
                tuple(healthy), 0, max_unavailable_zones - len(failed_zones)
            )
        required = max(len(t.instances), rf) - rf // 2
        if len(healthy) < required:
            raise TooManyUnhealthyInstancesError(
                f"too many unhealthy instances in the ring: {len(healthy)} healthy, {required} required"
            )
        return self._kernels.ring.ReplicationSet(tuple(healthy), len(healthy) - required, 0)

    # -- shuffle sharding -------------------------------------------------------------------------
    def _init_view(self, desc: RingDesc) -> None:
        """Finish a sub-ring made by the kernel's ``_subring``: tables are built on first use."""
        self._desc = desc
        self._t = None
        self._lookback_cache = None

    def _fresh(self, sub: Any) -> Any:
        """A cached shard made before the last state swap: give it this ring's current states.

        Reads the loaded tables (not ``self._desc``, which a caller may be mutating before its next
        ``update``): a shard never sees a topology its parent has not loaded."""
        if sub is not self:
            t = self._ensure_tables()
            sub_desc = RingDesc._trusted({k: t.instances[t.index[k]] for k in sub._desc.instances})
            sub.update(sub_desc)
        return sub

    def _check_size(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise InvalidRingError(
                f"shard size must be a non-negative integer (0 = every instance), got {size!r}"
            )

    def _pick(self, identifier: str, size: int, lookback: bool, until: int) -> Any:
        t = self._t if self._t is not None else self._ensure_tables()
        if lookback and t.oldest_registered > 0 and t.oldest_registered >= until:
            return self  # every instance registered within the window: all would be included
        if self.zone_awareness:
            if not t.zones:
                return self._subring([])
            per_zone = shard_size_per_zone(size, len(t.zones))
        else:
            per_zone = size
        # More picks than instances changes nothing (a zone stops at its first fruitless draw), and
        # clamping keeps the count within the kernel's C int.
        per_zone = min(per_zone, len(t.instances))
        return self._subring(self._shard_pick(identifier, per_zone, lookback, until))

    def _without_read_only(self, lookback: bool, until: int) -> Any:
        t = self._ensure_tables()
        if t.read_only_count == 0:
            return self
        if lookback and t.oldest_read_only_updated >= until:
            return self
        keep = []
        for i, inst in enumerate(t.instances):
            if not inst.read_only or (lookback and not (0 < inst.read_only_updated_timestamp < until)):
                keep.append(i)
        return self._subring(keep)

    def _shuffle_shard_slow(self, identifier: str, size: int) -> Any:
        """``shuffle_shard`` past the kernel's cache fast path: a stale or missing entry."""
        _check_identifier(identifier)
        if type(size) is not int or size < 0:
            self._check_size(size)
            size = int(size)
        key = (identifier, size)
        entry = self._shard_cache.get(key)
        if entry is not None:  # made before a state swap: refresh it and stamp it current again
            result = self._fresh(entry[0])
            self._shard_cache[key] = (result, self._gen)
            return result
        result = self._pick(identifier, size, False, 0) if size else self._without_read_only(False, 0)
        if result is not self:
            self._shard_cache[key] = (result, self._gen)
        return result

    def shuffle_shard_with_lookback(self, identifier: str, size: int, lookback: float, now: float) -> Any:
        """Like ``shuffle_shard`` but also every instance that was part of the shard since
        ``now - lookback`` (instances registered or read-only-switched in the window extend the
        walk). For reads only: the result may be unbalanced across zones."""
        _check_identifier(identifier)
        self._check_size(size)
        if (
            isinstance(lookback, bool)
            or not isinstance(lookback, (int, float))
            or not 0 <= lookback < math.inf
        ):
            raise InvalidRingError(f"lookback must be finite, non-negative seconds, got {lookback!r}")
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise InvalidRingError(f"now must be a finite unix time in seconds, got {now!r}")
        if lookback == 0:
            return self.shuffle_shard(identifier, size)
        # Clamped to int64 like every stored timestamp, so both kernels compare the same numbers.
        until = min(max(math.floor(now - lookback), -(2**63)), 2**63 - 1)
        t = self._ensure_tables()
        key = (identifier, int(size), float(lookback))
        if self._lookback_cache is None:
            self._lookback_cache = {}
        entry = self._lookback_cache.get(key)
        if entry is not None:
            sub, gen, lo, hi = entry
            if lo < until <= hi:
                if gen != self._gen:
                    sub = self._fresh(sub)
                    self._lookback_cache[key] = (sub, self._gen, lo, hi)
                return sub
        if size == 0:
            result = self._without_read_only(True, until)
        else:
            result = self._pick(identifier, int(size), True, until)
        # The result depends on ``until`` only through comparisons with registration and
        # read-only times, so it holds for every ``until`` between the neighbouring event times.
        events = t.lookback_events
        pos = int(np.searchsorted(events, until, side="left"))
        lo = int(events[pos - 1]) if pos > 0 else -(2**63)
        hi = int(events[pos]) if pos < len(events) else 2**63 - 1
        self._lookback_cache[key] = (result, self._gen, lo, hi)
        return result

    # -- capacity views ---------------------------------------------------------------------------
    def ownership(self) -> dict[str, float]:
        """Share of the token space each instance owns (within its zone), from 0 to 1."""
        t = self._ensure_tables()
        owned = np.zeros(len(t.instances), dtype=np.float64)
        for z in range(len(t.zones)):
            lo, hi = int(t.zone_offsets[z]), int(t.zone_offsets[z + 1])
            toks = t.zone_tokens[lo:hi].astype(np.int64)
            if not len(toks):
                continue
            prev = np.roll(toks, 1)
            dist = np.where(prev < toks, toks - prev, 2**32 - prev + toks)
            np.add.at(owned, t.zone_owner[lo:hi], dist)
        return {inst.id: float(owned[i]) / 2**32 for i, inst in enumerate(t.instances)}


_RING_CLASSES: dict[str, type] = {}


def ring_class(kernels: SimpleNamespace | None = None) -> type:
    """The ``Ring`` class over one kernel implementation (default: compiled, or pure if asked)."""
    k = kernels if kernels is not None else _impl.kernels()
    cls = _RING_CLASSES.get(k.name)
    if cls is not None:
        return cls
    slots = ("__weakref__", "_desc", "_lookback_cache", "_t")
    namespace = {"__module__": __name__, "_kernels": k, "__slots__": slots}
    cls = type("Ring", (_RingAPI, k.ring.RingCore), namespace)
    cls.__qualname__ = f"Ring[{k.name}]"
    _RING_CLASSES[k.name] = cls
    cls.__doc__ = (
        "A hash ring over a RingDesc with dskit's lookup semantics.\n\n"
        "``Ring(desc, replication_factor=1, zone_awareness=False, heartbeat_timeout=60.0)``; "
        "``get(key, op=WRITE, now=None)`` walks from the first token greater than ``key``; pass "
        "``now`` (unix seconds) to treat instances with stale heartbeats as unhealthy."
    )
    return cls
