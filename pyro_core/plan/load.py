# Where tenants' data lands: a planned ring, each tenant's real shuffle shard, and the load per instance.
# Owns: building a plan ring (instances ingester-0..N-1, zones round-robin, tokens from the real
# ``generate_tokens``), the ``Placement`` of tenants on it (per distinct shard: the share of the tenant's
# key space each instance replicates, and the distinct replica sets, from the shard's own token ranges
# walked with ``Ring.get_many``: exact, no sampling), and the per-instance load summary.
# Must not know: argparse, printing, gossip, failure scenarios (blast.py reads the replica sets).
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pyro_core.plan.scenario import Tenant
from pyro_core.ring.model import RingDesc
from pyro_core.ring.ring import ring_class
from pyro_core.ring.tokens import generate_tokens

PLAN_NOW = 1_700_000_000  # the heartbeat of every planned instance (lookups ignore time: now=None)
KEY_SPACE = float(2**32)

Progress = Callable[[int], None]  # called with the number of tenants just placed


def instance_name(i: int) -> str:
    return f"ingester-{i}"


def zone_name(z: int, zones: int) -> str:
    return f"zone-{z}" if zones > 1 else ""


def build_ring_desc(instances: int, zones: int, tokens: int, seed: int, now: int = PLAN_NOW) -> RingDesc:
    """``instances`` ACTIVE instances with ``tokens`` random tokens each, zones round-robin. The tokens
    come from one ``generate_tokens`` call (unique across the ring), dealt out at random."""
    rng = np.random.default_rng([seed, 0x417])
    all_tokens = rng.permutation(generate_tokens(instances * tokens, (), rng)).reshape(instances, tokens)
    desc = RingDesc()
    for i in range(instances):
        desc.add_instance(
            instance_name(i),
            f"10.0.{i // 250}.{i % 250 + 1}:9095",
            zone=zone_name(i % zones, zones),
            tokens=np.sort(all_tokens[i]),
            now=now,
        )
    return desc


def add_planned_instance(desc: RingDesc, tokens: int, zones: int, seed: int) -> str:
    """Add the next instance (next name, next zone round-robin, fresh tokens) to ``desc``; its id."""
    n = len(desc)
    name = instance_name(n)
    while name in desc:
        n += 1
        name = instance_name(n)
    rng = np.random.default_rng([seed, 0xADD])
    desc.add_instance(
        name,
        f"10.1.{n // 250}.{n % 250 + 1}:9095",
        zone=zone_name(n % zones, zones),
        tokens=generate_tokens(tokens, desc.tokens(), rng),
        now=PLAN_NOW,
    )
    return name


def make_ring(desc: RingDesc, replication_factor: int, zones: int) -> Any:
    return ring_class()(desc, replication_factor=replication_factor, zone_awareness=zones > 1)


@dataclass(frozen=True, slots=True)
class ShardLoad:
    """One distinct shard: who holds what share of a tenant's data, and its replica sets."""

    members: npt.NDArray[np.int64]  # instance indices (into Placement.instance_ids), sorted
    share: npt.NDArray[np.float64]  # per member: share of the tenant's keys it replicates (Σ ≈ RF)
    sets: npt.NDArray[np.int64]  # distinct replica sets (rows, padded with -1), instance indices
    set_weight: npt.NDArray[np.float64]  # share of the key space each set serves (Σ = 1)


def shard_load(shard: Any, index: dict[str, int], rf: int) -> ShardLoad:
    """Walk every token range of ``shard`` (a sub-ring) once: the replicas of range [t_{j-1}, t_j) are
    those of key t_{j-1}, and the range's width is its share of the key space."""
    tokens = shard.tokens
    if len(tokens) == 0:
        empty = np.zeros(0, dtype=np.int64)
        nothing = np.zeros(0, dtype=np.float64)
        return ShardLoad(empty, nothing, np.zeros((0, rf), dtype=np.int64), nothing)
    keys = tokens.astype(np.uint32)
    width = np.diff(tokens.astype(np.int64), append=int(tokens[0]) + 2**32) / KEY_SPACE
    batch = shard.get_many(keys)
    to_parent = np.array([index[inst.id] for inst in batch.instances], dtype=np.int64)
    reps = batch.replicas.astype(np.int64)
    mask = reps >= 0
    parent = np.where(mask, to_parent[np.where(mask, reps, 0)], -1)
    share_all = np.bincount(
        parent[mask], weights=np.broadcast_to(width[:, None], reps.shape)[mask], minlength=len(index)
    )
    members = np.flatnonzero(share_all > 0)
    # Distinct replica sets, as sorted rows (a set is the same set whatever the walk order).
    rows = np.sort(np.where(mask, parent, np.iinfo(np.int64).max), axis=1)
    rows[rows == np.iinfo(np.int64).max] = -1
    sets, inverse = _unique_rows(rows, len(index))
    weight = np.bincount(inverse, weights=width, minlength=len(sets))
    return ShardLoad(
        members.astype(np.int64), share_all[members].astype(np.float64), sets, weight.astype(np.float64)
    )


def _unique_rows(rows: npt.NDArray[np.int64], n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """``np.unique(rows, axis=0, return_inverse=True)``, fast: rows of small non-negative numbers (or
    -1) are packed into one int64 each when they fit."""
    base = n + 1
    if rows.shape[1] * np.log2(base) < 62:
        packed = np.zeros(len(rows), dtype=np.int64)
        for j in range(rows.shape[1]):
            packed = packed * base + (rows[:, j] + 1)
        _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
        return rows[first], inverse.ravel()
    sets, inverse = np.unique(rows, axis=0, return_inverse=True)
    return sets, inverse.ravel()


@dataclass(slots=True)
class Placement:
    """Tenants placed on a ring: per tenant, its distinct shard (shared by tenants with equal shards)."""

    ring: Any
    instance_ids: list[str]
    zone_of: npt.NDArray[np.int64]  # zone index per instance
    zones: list[str]
    replication_factor: int
    tenants: Sequence[Tenant]
    shard_of: npt.NDArray[np.int64]  # per tenant: index into ``shards``
    shards: list[ShardLoad]
    rates: npt.NDArray[np.float64]  # per tenant, MB/s

    def instance_load(self) -> npt.NDArray[np.float64]:
        """MB/s each instance ingests (replicas included)."""
        per_shard_rate = np.bincount(self.shard_of, weights=self.rates, minlength=len(self.shards))
        load = np.zeros(len(self.instance_ids))
        for s, rate in zip(self.shards, per_shard_rate.tolist(), strict=True):
            if rate:
                load[s.members] += rate * s.share
        return load

    def shard_members(self, tenant: int) -> npt.NDArray[np.int64]:
        return self.shards[int(self.shard_of[tenant])].members


def place_tenants(
    ring: Any,
    tenants: Sequence[Tenant],
    default_shard_size: int,
    progress: Progress | None = None,
) -> Placement:
    """Each tenant's real shuffle shard (``ring.shuffle_shard``), walked once per distinct shard."""
    instances = ring.instances
    ids = [inst.id for inst in instances]
    index = {k: i for i, k in enumerate(ids)}
    zones = sorted({inst.zone for inst in instances})
    zone_index = {z: i for i, z in enumerate(zones)}
    zone_of = np.array([zone_index[inst.zone] for inst in instances], dtype=np.int64)
    rf = ring.replication_factor
    cache: dict[tuple[str, ...], int] = {}
    shards: list[ShardLoad] = []
    shard_of = np.zeros(len(tenants), dtype=np.int64)
    step = max(1, len(tenants) // 100)
    for t, tenant in enumerate(tenants):
        size = default_shard_size if tenant.shard_size is None else tenant.shard_size
        shard = ring.shuffle_shard(tenant.name, size)
        key = ("*",) if shard is ring else tuple(shard.instance_ids())
        slot = cache.get(key)
        if slot is None:
            slot = cache[key] = len(shards)
            shards.append(shard_load(shard, index, rf))
        shard_of[t] = slot
        if progress is not None and (t + 1) % step == 0:
            progress(step)
    if progress is not None and len(tenants) % step:
        progress(len(tenants) % step)
    rates = np.array([t.rate for t in tenants], dtype=np.float64)
    return Placement(ring, ids, zone_of, zones, rf, tenants, shard_of, shards, rates)


@dataclass(frozen=True, slots=True)
class LoadSummary:
    total_ingest: float  # MB/s the tenants send
    total_replicated: float  # MB/s the instances write (× replication)
    mean: float
    max: float
    min: float
    imbalance: float  # max / mean
    most_loaded: list[tuple[str, str, float]]  # (instance, zone, MB/s), heaviest first
    instance_capacity: float | None
    max_utilisation: float | None  # max / capacity
    distinct_shards: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_ingest_mb_s": self.total_ingest,
            "total_replicated_mb_s": self.total_replicated,
            "mean_mb_s": self.mean,
            "max_mb_s": self.max,
            "min_mb_s": self.min,
            "imbalance": self.imbalance,
            "most_loaded": [{"instance": i, "zone": z, "mb_s": v} for i, z, v in self.most_loaded],
            "instance_capacity_mb_s": self.instance_capacity,
            "max_utilisation": self.max_utilisation,
            "distinct_shards": self.distinct_shards,
        }


def summarize_load(
    placement: Placement, load: npt.NDArray[np.float64], capacity: float | None, top: int = 5
) -> LoadSummary:
    mean = float(load.mean()) if len(load) else 0.0
    peak = float(load.max()) if len(load) else 0.0
    order = np.argsort(-load, kind="stable")[:top]
    zones = placement.zones
    return LoadSummary(
        total_ingest=float(placement.rates.sum()),
        total_replicated=float(load.sum()),
        mean=mean,
        max=peak,
        min=float(load.min()) if len(load) else 0.0,
        imbalance=peak / mean if mean > 0 else 1.0,
        most_loaded=[
            (placement.instance_ids[i], zones[int(placement.zone_of[i])], float(load[i])) for i in order
        ],
        instance_capacity=capacity,
        max_utilisation=peak / capacity if capacity else None,
        distinct_shards=len(placement.shards),
    )
