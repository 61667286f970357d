# Pure-Python twin of pyro_core._ring: the ring walk, quorum filter, batch lookup and shuffle-shard
# picks over the flat tables of pyro_core.ring.tables. Reads like the spec (ring.md §4–5).
# Owns: the rules of dskit's findInstancesForKey + defaultReplicationStrategy.Filter and of the
# shuffle-shard walk. Must not know: how tables are built, caching, clocks (``now`` is passed in).
from __future__ import annotations

from bisect import bisect_left
from typing import Any

import numpy as np
import numpy.typing as npt

from pyro_core._pure.gorand import GoRand
from pyro_core.ring.errors import EmptyRingError, InvalidRingError, TooManyUnhealthyInstancesError
from pyro_core.ring.model import InstanceDesc, RingDesc
from pyro_core.ring.replication import not_enough_replicas_message
from pyro_core.ring.shard import shuffle_shard_seed
from pyro_core.ring.tables import RingTables

WRITE = 0x1E0001  # ACTIVE healthy; extend on LEAVING, PENDING, JOINING, LEFT


def search_token(tokens: Any, key: int) -> int:
    """Index of the first token strictly greater than ``key``, wrapping to 0."""
    i = bisect_left(tokens, key)
    if i < len(tokens) and tokens[i] == key:
        i += 1
    return 0 if i >= len(tokens) else i


def _check_op_now(op: Any, now: Any) -> tuple[int, float | None]:
    if isinstance(op, bool) or not isinstance(op, (int, np.integer)) or not 0 <= op <= 0xFFFFFFFF:
        raise InvalidRingError(f"op must be an operation bitmask (uint32), got {op!r}")
    if now is not None:
        if isinstance(now, bool):
            raise InvalidRingError(f"now must be unix seconds (a number) or None, got {now!r}")
        try:
            now = float(now)
        except (TypeError, ValueError):
            raise InvalidRingError(f"now must be unix seconds (a number) or None, got {now!r}") from None
    return int(op), now


class ReplicationSet:
    """Instances to send an operation to, in ring-walk order, and the failures it tolerates.

    ``max_errors`` applies without zone awareness; with zone awareness (all-instances sets)
    ``max_unavailable_zones`` says how many whole zones may fail instead.
    """

    __slots__ = ("instances", "max_errors", "max_unavailable_zones")

    def __init__(self, instances: Any = (), max_errors: int = 0, max_unavailable_zones: int = 0) -> None:
        self.instances: tuple[InstanceDesc, ...] = tuple(instances)
        self.max_errors = int(max_errors)
        self.max_unavailable_zones = int(max_unavailable_zones)

    def instance_ids(self) -> list[str]:
        return [i.id for i in self.instances]

    def addresses(self) -> list[str]:
        return [i.addr for i in self.instances]

    def __len__(self) -> int:
        return len(self.instances)

    def __eq__(self, other: object) -> bool:
        try:
            return (
                self.max_errors == other.max_errors  # type: ignore[attr-defined]
                and self.max_unavailable_zones == other.max_unavailable_zones  # type: ignore[attr-defined]
                and self.instances == tuple(other.instances)  # type: ignore[attr-defined]
            )
        except AttributeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ReplicationSet(instances={self.instance_ids()!r}, max_errors={self.max_errors}, "
            f"max_unavailable_zones={self.max_unavailable_zones})"
        )


class RingCore:
    """Lookup state of one ring; the public ``Ring`` class adds descriptions and caches on top."""

    replication_factor = 1
    zone_awareness = False
    heartbeat_timeout = 60.0
    _loaded = False

    _gen = 0
    _shard_cache: dict[tuple[str, int], tuple[Any, int]]

    def _lazy_load(self) -> None:  # provided by the public Ring: builds tables on first use
        raise EmptyRingError()

    def _shuffle_shard_slow(self, identifier: str, size: int) -> Any:  # provided by the public Ring
        raise NotImplementedError

    def shuffle_shard(self, identifier: str, size: int) -> Any:
        """The tenant's shard: ``size`` instances picked by dskit's shuffle-sharding walk (per zone
        ``ceil(size / zones)`` when zone-aware), read-only instances excluded; ``size`` 0 = every
        instance. Stable, consistent, and cached until the topology changes."""
        if type(size) is int and type(identifier) is str:  # anything else is validated by the slow path
            entry = self._shard_cache.get((identifier, size))
            if entry is not None and entry[1] == self._gen:
                return entry[0]
        return self._shuffle_shard_slow(identifier, size)

    def _configure(self, replication_factor: int, zone_awareness: bool, heartbeat_timeout: float) -> None:
        self.replication_factor = int(replication_factor)
        self.zone_awareness = bool(zone_awareness)
        self.heartbeat_timeout = float(heartbeat_timeout)

    def _load(self, tables: RingTables) -> None:
        self._kt = tables
        self._loaded = True
        self._tokens = tables.tokens.tolist()
        self._owner = tables.owner.tolist()
        self._has_tokens = set(self._owner)
        self._zone_of = tables.inst_zone.tolist()
        self._zone_empty = [z == "" for z in tables.zones]
        self._load_states(tables)

    def _load_states(self, tables: RingTables) -> None:
        """Swap in new states and heartbeats only (same topology)."""
        self._kt = tables
        self._state = tables.state.tolist()
        self._heartbeat = tables.heartbeat.tolist()

    # -- the walk (dskit findInstancesForKey) ---------------------------------------------------
    def _find(self, key: int, op: int) -> list[int]:
        tokens, owner = self._tokens, self._owner
        n_tokens = len(tokens)
        size = self.replication_factor
        zone_aware = self.zone_awareness
        n_zones = len(self._zone_empty)
        total = self._kt.zone_size.tolist()
        found = [0] * n_zones
        examined = [0] * n_zones
        target = 1  # max(1, RF // RF): one replica per zone
        chosen: list[int] = []
        i = search_token(tokens, key)
        iterations = 0
        n_instances = len(self._state)
        while len(chosen) < min(n_instances, size) and iterations < n_tokens:
            if zone_aware and all(found[z] >= target or examined[z] >= total[z] for z in range(n_zones)):
                break
            iterations += 1
            i %= n_tokens
            inst = owner[i]
            i += 1
            if inst in chosen:
                continue
            z = self._zone_of[inst]
            has_zone = zone_aware and not self._zone_empty[z]
            if has_zone:
                if found[z] >= target:
                    continue
                examined[z] += 1
            chosen.append(inst)
            if op & (0x10000 << self._state[inst]):
                size += 1  # an extra replica that does not count for its zone
            elif has_zone:
                found[z] += 1
        return chosen

    def _healthy(self, inst: int, op: int, now: float | None) -> bool:
        if not op & (1 << self._state[inst]):
            return False
        return now is None or now - self._heartbeat[inst] <= self.heartbeat_timeout

    # -- single lookup --------------------------------------------------------------------------
    def get(self, key: int, op: int = WRITE, now: float | None = None) -> ReplicationSet:
        """Replicas for ``key`` (a uint32 token) healthy for ``op``; ``now`` enables heartbeat checks."""
        if not self._loaded:
            self._lazy_load()
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key <= 0xFFFFFFFF:
            raise InvalidRingError(f"key must be a uint32, got {key!r}")
        op, now = _check_op_now(op, now)
        if not self._tokens:
            raise EmptyRingError()
        key = int(key)
        if not 0 <= key <= 0xFFFFFFFF:
            raise InvalidRingError(f"key must be a uint32, got {key}")
        chosen = self._find(key, op)
        n = max(self.replication_factor, len(chosen))
        min_success = n // 2 + 1
        healthy = [i for i in chosen if self._healthy(i, op, now)]
        if len(healthy) < min_success:
            unhealthy = [self._kt.instances[i].addr for i in chosen if i not in healthy]
            raise TooManyUnhealthyInstancesError(
                not_enough_replicas_message(min_success, len(healthy), unhealthy, self.zone_awareness)
            )
        instances = self._kt.instances
        return ReplicationSet(tuple(instances[i] for i in healthy), len(healthy) - min_success, 0)

    # -- batch lookup (dskit DoBatch's fan-out) ---------------------------------------------------
    def _max_width(self, op: int) -> int:
        """Most candidates one key can get: RF plus every extending instance that owns tokens."""
        extenders = sum(1 for i in self._has_tokens if op & (0x10000 << self._state[i]))
        return max(1, min(len(self._has_tokens), self.replication_factor + extenders))

    def get_many_raw(
        self, keys: npt.NDArray[np.uint32], op: int, now: float | None
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32], list[InstanceDesc]]:
        """Per key: healthy replica indices (row, -1 padded), their count, max_errors (-1 = failed),
        and the instances the indices refer to."""
        op, now = _check_op_now(op, now)
        if not self._loaded:
            self._lazy_load()
        if not self._tokens:
            raise EmptyRingError()
        n = len(keys)
        width = self._max_width(op)
        replicas = np.full((n, width), -1, dtype=np.int32)
        counts = np.zeros(n, dtype=np.int32)
        max_errors = np.zeros(n, dtype=np.int32)
        for row, key in enumerate(keys.tolist()):
            chosen = self._find(key, op)
            min_success = max(self.replication_factor, len(chosen)) // 2 + 1
            healthy = [i for i in chosen if self._healthy(i, op, now)]
            replicas[row, : len(healthy)] = healthy
            counts[row] = len(healthy)
            max_errors[row] = len(healthy) - min_success if len(healthy) >= min_success else -1
        return replicas, counts, max_errors, list(self._kt.instances)

    # -- shuffle-shard picks (dskit Ring.shuffleShard's walk) -------------------------------------
    def _include_read_only(self, inst: int, lookback: bool, until: int) -> bool:
        t = self._kt
        if not t.read_only[inst]:
            return True
        if not lookback:
            return False
        ts = int(t.read_only_ts[inst])
        return not (ts > 0 and ts < until)

    def _init_view(self, desc: Any) -> None:  # provided by the public Ring
        raise NotImplementedError

    def _subring(self, indices: list[int]) -> Any:
        """A read-only ring of some of this ring's instances; its tables are built on first use."""
        if not self._loaded:
            self._lazy_load()
        t = self._kt
        cls = type(self)
        sub = cls.__new__(cls)
        sub._configure(self.replication_factor, self.zone_awareness, self.heartbeat_timeout)
        sub._shard_cache = {}
        sub._gen = 0
        sub._loaded = False
        sub._init_view(RingDesc._trusted({t.ids[i]: t.instances[i] for i in indices}))
        return sub

    def _shard_pick(self, identifier: str, per_zone: int, lookback: bool, until: int) -> list[int]:
        """Instance indices of ``identifier``'s shard, ``per_zone`` picks per zone (sorted zones when
        zone-aware, the whole ring as one zone otherwise)."""
        if not self._loaded:
            self._lazy_load()
        t = self._kt
        zones = t.zones if self.zone_awareness else [""]
        seeds = [shuffle_shard_seed(identifier, z) for z in zones]
        picked: list[int] = []
        in_shard: set[int] = set()
        zone_aware = self.zone_awareness
        for z, seed in enumerate(seeds):
            if zone_aware:
                if per_zone >= int(t.zone_size[z]):
                    for inst in range(len(t.instances)):
                        if self._zone_of[inst] == z and self._include_read_only(inst, lookback, until):
                            picked.append(inst)
                            in_shard.add(inst)
                    continue
                lo, hi = int(t.zone_offsets[z]), int(t.zone_offsets[z + 1])
                tokens = t.zone_tokens[lo:hi].tolist()
                owner = t.zone_owner[lo:hi].tolist()
            else:
                tokens, owner = self._tokens, self._owner
            rnd = GoRand(seed)
            for _ in range(per_zone):
                start = search_token(tokens, rnd.uint32())
                found = False
                for step in range(len(tokens)):
                    inst = owner[(start + step) % len(tokens)]
                    if inst in in_shard or not self._include_read_only(inst, lookback, until):
                        continue
                    picked.append(inst)
                    in_shard.add(inst)
                    if lookback and int(t.registered_ts[inst]) >= until:
                        continue  # registered within the lookback window: keep walking
                    if lookback and (t.read_only[inst] or int(t.read_only_ts[inst]) >= until):
                        continue  # read-only, or switched within the window: keep walking
                    found = True
                    break
                if not found:
                    break  # this zone has no instance left to pick
        return picked
