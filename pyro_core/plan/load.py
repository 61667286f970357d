# Where tenants' data lands: a planned ring, each tenant's real shuffle shard, and the load per instance.
# Owns: building a plan ring (instances ingester-0..N-1, zones round-robin, tokens from the real
# ``generate_tokens``; or nested, each instance with its own token stream, for comparing counts), the
# ``Placement`` of tenants on it (per distinct shard: the share of the tenant's key space each
# instance replicates, and the distinct replica sets, exact, no sampling), and the per-instance load
# summary. Shards come from the ring's own ``shuffle_shard``; their walks from ``walk_shards`` (every
# distinct shard at once, from the members' sorted tokens, numpy only) or, for rings it does not
# cover and as the reference, ``shard_load`` (each shard's sub-ring walked with ``Ring.get_many``).
# Must not know: argparse, printing, gossip, failure scenarios (blast.py reads the replica sets).
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pyro_core.plan.scenario import Tenant
from pyro_core.ring.model import InstanceState, RingDesc
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


_NESTED: dict[tuple[int, int], list[npt.NDArray[np.uint32]]] = {}


def nested_ring_desc(instances: int, zones: int, tokens: int, seed: int) -> RingDesc:
    """Like ``build_ring_desc``, but the ring of n + 1 instances is the ring of n plus one: instance i's
    tokens are drawn from its own seeded stream (random, unique across the ring), so growing the count
    adds an instance (as scaling a real cluster does) instead of redrawing every token. The
    recommendation's search compares counts on these rings, which keeps its peaks nearly monotone."""
    drawn = _NESTED.setdefault((tokens, seed), [])
    used = {int(t) for arr in drawn for t in arr} if drawn and len(drawn) < instances else set()
    while len(drawn) < instances:
        rng = np.random.default_rng([seed, 0x6E57, len(drawn)])
        own: list[int] = []
        while len(own) < tokens:
            for t in rng.integers(0, 2**32, size=2 * tokens, dtype=np.uint64).tolist():
                if t not in used:
                    used.add(t)
                    own.append(t)
                    if len(own) == tokens:
                        break
        drawn.append(np.array(sorted(own), dtype=np.uint32))
    desc = RingDesc()
    for i in range(instances):
        desc.add_instance(
            instance_name(i),
            f"10.0.{i // 250}.{i % 250 + 1}:9095",
            zone=zone_name(i % zones, zones),
            tokens=drawn[i],
            now=PLAN_NOW,
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


def shard_key(ring: Any, shard: Any, index: dict[str, int]) -> tuple[int, ...]:
    """A shard's identity: its sorted instance indices (() for the whole ring)."""
    if shard is ring:
        return ()
    return tuple(sorted(index[i] for i in shard.instance_ids()))


def fast_walk_applies(ring: Any) -> bool:
    """Whether ``walk_shards`` reproduces the ring's walk: every instance ACTIVE, writable and holding
    tokens, tokens unique across the ring, and (zone-aware) every zone named. The planner's rings
    always are; anything else takes the exact path."""
    instances = ring.instances
    if not instances:
        return False
    count = 0
    for inst in instances:
        if inst.state != InstanceState.ACTIVE or inst.read_only or len(inst.tokens) == 0:
            return False
        if ring.zone_awareness and not inst.zone:
            return False
        count += len(inst.tokens)
    return count == len(ring.tokens)  # the ring's tables drop duplicated tokens


def walk_shards(
    ring: Any, members: Sequence[tuple[int, ...]], max_rows: int = 1 << 20, *, with_sets: bool = True
) -> list[ShardLoad]:
    """``shard_load`` of many shards at once, without building a sub-ring per shard.

    A shard's sub-ring holds exactly its members' tokens, so its walk is computed from them directly:
    the members' tokens are merged and sorted per shard (all shards of a chunk in one sort), and the
    range [t_j, t_j+1) is served by the first RF distinct members met walking from t_j+1. Zone-aware,
    that is the first token of each of the first RF zones met, found for every range at once from
    each zone's next-token index (a reversed running minimum); otherwise the first RF distinct
    members of a window of the next W tokens (W doubled for the few ranges it does not resolve).
    Shares and set weights are accumulated range by range, as ``shard_load`` adds them, so the
    numbers are bit-identical (tests/plan checks it on random rings). ``with_sets=False``: shares
    only (the replica sets left empty), for the recommendation's search."""
    instances = ring.instances
    n = len(instances)
    rf = int(ring.replication_factor)
    zone_names = sorted({inst.zone for inst in instances})
    zone_index = {z: i for i, z in enumerate(zone_names)}
    zone_of = np.array([zone_index[inst.zone] for inst in instances], dtype=np.int64)
    tok_of = [inst.tokens.astype(np.int64) for inst in instances]
    count_of = np.array([len(t) for t in tok_of], dtype=np.int64)
    sizes = np.array([int(count_of[list(m)].sum()) for m in members], dtype=np.int64)
    ends = np.cumsum(sizes)
    out: list[ShardLoad] = []
    start = 0
    while start < len(members):
        base_rows = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base_rows + max_rows, side="right")))
        out.extend(
            _walk_chunk(
                members[start:stop],
                tok_of,
                count_of,
                zone_of,
                len(zone_names),
                (n, rf),
                ring.zone_awareness,
                with_sets,
            )
        )
        start = stop
    return out


def _walk_chunk(
    members: Sequence[tuple[int, ...]],
    tok_of: list[npt.NDArray[np.int64]],
    count_of: npt.NDArray[np.int64],
    zone_of: npt.NDArray[np.int64],
    zones: int,
    n_rf: tuple[int, int],
    zone_aware: bool,
    with_sets: bool,
) -> list[ShardLoad]:
    n, rf = n_rf
    d = len(members)
    flat = np.fromiter((u for m in members for u in m), dtype=np.int64)
    k = np.array([len(m) for m in members], dtype=np.int64)
    per_member = count_of[flat]
    length = np.bincount(np.repeat(np.arange(d), k), weights=per_member, minlength=d).astype(np.int64)
    off = np.concatenate(([0], np.cumsum(length)))
    seg = np.repeat(np.arange(d, dtype=np.int64), length)
    tok = np.concatenate([tok_of[u] for u in flat.tolist()])
    order = np.argsort((seg << 32) | tok)
    tok = tok[order]
    mpos = np.repeat(np.arange(len(flat), dtype=np.int64), per_member)[order]  # index into flat
    rows = len(tok)
    seg_start = off[:-1][seg]
    seg_end = off[1:][seg]
    # width of range j: t_{j+1} − t_j, the last range wrapping round to the shard's first token
    nxt = np.arange(1, rows + 1)
    nxt[seg_end == nxt] = seg_start[seg_end == nxt]
    width = (tok[nxt] + np.where(nxt == seg_start, 2**32, 0) - tok) / KEY_SPACE
    if zone_aware:
        pos = _zone_walk(zone_of[flat[mpos]], seg, off, seg_start, seg_end, zones, rf, members, zone_of)
    else:
        pos = _window_walk(flat[mpos], seg, off, seg_start, seg_end, np.minimum(k, rf)[seg], rf)
    mask = pos >= 0
    rep_mpos = np.where(mask, mpos[np.where(mask, pos, 0)], -1)
    # shares: one bin per (shard, member); each range adds its width once to each of its replicas
    share: npt.NDArray[np.float64] = np.bincount(
        rep_mpos[mask], weights=np.broadcast_to(width[:, None], pos.shape)[mask], minlength=len(flat)
    ).astype(np.float64)
    moff = np.concatenate(([0], np.cumsum(k)))
    if not with_sets:
        no_sets = np.zeros((0, min(rf, n)), dtype=np.int64)
        no_weight = np.zeros(0, dtype=np.float64)
        return [
            ShardLoad(flat[moff[i] : moff[i + 1]], share[moff[i] : moff[i + 1]], no_sets, no_weight)
            for i in range(d)
        ]
    inst = np.where(mask, flat[np.where(mask, rep_mpos, 0)], -1)
    big = np.iinfo(np.int64).max
    sets = np.sort(np.where(mask, inst, big), axis=1)
    sets[sets == big] = -1
    base = n + 1
    if sets.shape[1] * np.log2(base) + np.log2(max(d, 1)) + 1 < 62:
        packed = seg.copy()
        for j in range(sets.shape[1]):
            packed = packed * base + (sets[:, j] + 1)
        # equal neighbours share a set: take the unique of the runs only
        change = np.ones(rows, dtype=bool)
        change[1:] = packed[1:] != packed[:-1]
        run_start = np.flatnonzero(change)
        _, first_run, run_inv = np.unique(packed[run_start], return_index=True, return_inverse=True)
        first = run_start[first_run]
        set_inv = run_inv.ravel()[np.cumsum(change) - 1]
    else:
        _, first, set_inv = np.unique(
            np.column_stack([seg, sets]), axis=0, return_index=True, return_inverse=True
        )
        set_inv = set_inv.ravel()
    set_weight: npt.NDArray[np.float64] = np.bincount(set_inv, weights=width, minlength=len(first)).astype(
        np.float64
    )
    set_off = np.searchsorted(seg[first], np.arange(d + 1))
    out = []
    for i in range(d):
        sa, sb = int(set_off[i]), int(set_off[i + 1])
        out.append(
            ShardLoad(
                flat[moff[i] : moff[i + 1]],
                share[moff[i] : moff[i + 1]],
                sets[first[sa:sb], : min(int(k[i]), rf)],
                set_weight[sa:sb],
            )
        )
    return out


def _zone_walk(
    zone: npt.NDArray[np.int64],
    seg: npt.NDArray[np.int64],
    off: npt.NDArray[np.int64],
    seg_start: npt.NDArray[np.int64],
    seg_end: npt.NDArray[np.int64],
    zones: int,
    rf: int,
    members: Sequence[tuple[int, ...]],
    zone_of: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Zone-aware walk: per range, the rows (token positions) of its replicas, -1 padded to RF."""
    rows = len(zone)
    big = np.iinfo(np.int64).max
    start = np.arange(1, rows + 1)  # the walk of range j starts at token j + 1
    present_zones = np.array([len({int(zone_of[u]) for u in m}) for m in members], dtype=np.int64)
    need = np.minimum(present_zones, rf)
    ordered = not (need == present_zones).all()  # else every zone of a shard holds a replica
    dist = np.full((rows, zones), big, dtype=np.int64) if ordered else None
    at = np.empty((rows, zones), dtype=np.int64)
    idx = np.arange(rows, dtype=np.int64)
    shard_first = off[:-1]
    for z in range(zones):
        suffix = np.empty(rows + 1, dtype=np.int64)
        suffix[-1] = big
        suffix[:-1] = np.minimum.accumulate(np.where(zone == z, idx, big)[::-1])[::-1]
        ahead = suffix[start]  # first zone-z token at or after the start (maybe in a later shard)
        first = suffix[shard_first][seg]  # the shard's first zone-z token (none if ≥ its end)
        inside = ahead < seg_end
        first[first >= seg_end] = -1
        at[:, z] = np.where(inside, ahead, first)
        if dist is not None:
            wrapped = np.where(first >= 0, first - seg_start + seg_end - start, big)
            dist[:, z] = np.where(inside, ahead - start, wrapped)
    if dist is None:
        keep = at
    else:
        order = np.argsort(dist, axis=1, kind="stable")
        ranked = np.take_along_axis(at, order, axis=1)
        keep = np.where(np.arange(zones)[None, :] < need[seg][:, None], ranked, -1)
    width = min(rf, zones)
    found = keep >= 0
    if keep.shape[1] == width and found.all():
        return keep
    out = np.full((rows, width), -1, dtype=np.int64)
    # compact each row's replicas to the left (their order within a row does not matter)
    rank = np.cumsum(found, axis=1) - 1
    r, c = np.nonzero(found)
    out[r, rank[r, c]] = keep[r, c]
    return out


def _window_walk(
    owner: npt.NDArray[np.int64],
    seg: npt.NDArray[np.int64],
    off: npt.NDArray[np.int64],
    seg_start: npt.NDArray[np.int64],
    seg_end: npt.NDArray[np.int64],
    need: npt.NDArray[np.int64],
    rf: int,
) -> npt.NDArray[np.int64]:
    """Walk without zones: per range, the rows of the first ``need`` distinct owners after it."""
    rows = len(owner)
    seg_len = seg_end - seg_start
    local = np.arange(rows, dtype=np.int64) - seg_start
    out = np.full((rows, rf), -1, dtype=np.int64)
    todo = np.arange(rows, dtype=np.int64)
    w: int = rf + 2
    while len(todo):
        longest = int(seg_len[todo].max())
        w_eff = min(w, longest)
        cols = (local[todo, None] + 1 + np.arange(w_eff)[None, :]) % seg_len[todo, None] + seg_start[
            todo, None
        ]
        ent = owner[cols]
        new = np.arange(w_eff)[None, :] < seg_len[todo, None]  # one full turn at most
        for c in range(1, w_eff):
            new[:, c] &= (ent[:, :c] != ent[:, c : c + 1]).all(axis=1)
        rank = np.cumsum(new, axis=1)
        take = new & (rank <= need[todo, None])
        hit_r, hit_c = np.nonzero(take)
        out[todo[hit_r], rank[hit_r, hit_c] - 1] = cols[hit_r, hit_c]
        if w_eff >= longest:
            break
        todo = todo[rank[:, -1] < need[todo]]
        w *= 2
    return out


def place_tenants(
    ring: Any,
    tenants: Sequence[Tenant],
    default_shard_size: int,
    progress: Progress | None = None,
    *,
    exact: bool = False,
    with_sets: bool = True,
) -> Placement:
    """Each tenant's real shuffle shard (``ring.shuffle_shard``), walked once per distinct shard:
    with ``walk_shards`` (all distinct shards at once) when it applies, else (or with ``exact``) by
    ``shard_load`` on each shard's sub-ring. ``with_sets=False`` may skip the replica sets (loads only;
    blast radius needs them)."""
    instances = ring.instances
    ids = [inst.id for inst in instances]
    index = {k: i for i, k in enumerate(ids)}
    zones = sorted({inst.zone for inst in instances})
    zone_index = {z: i for i, z in enumerate(zones)}
    zone_of = np.array([zone_index[inst.zone] for inst in instances], dtype=np.int64)
    rf = ring.replication_factor
    fast = not exact and fast_walk_applies(ring)
    cache: dict[tuple[int, ...], int] = {}
    subrings: list[Any] = []
    keys: list[tuple[int, ...]] = []
    shard_of = np.zeros(len(tenants), dtype=np.int64)
    step = max(1, len(tenants) // 100)
    for t, tenant in enumerate(tenants):
        size = default_shard_size if tenant.shard_size is None else tenant.shard_size
        shard = ring.shuffle_shard(tenant.name, size)
        key = shard_key(ring, shard, index)
        slot = cache.get(key)
        if slot is None:
            slot = cache[key] = len(keys)
            keys.append(key)
            subrings.append(shard)
        shard_of[t] = slot
        if progress is not None and (t + 1) % step == 0:
            progress(step)
    if progress is not None and len(tenants) % step:
        progress(len(tenants) % step)
    shards: list[ShardLoad | None] = [None] * len(keys)
    if fast:
        partial = [i for i, key in enumerate(keys) if key]
        for i, s in zip(
            partial, walk_shards(ring, [keys[i] for i in partial], with_sets=with_sets), strict=True
        ):
            shards[i] = s
    for i, sub in enumerate(subrings):
        if shards[i] is None:
            shards[i] = shard_load(sub, index, rf)
    rates = np.array([t.rate for t in tenants], dtype=np.float64)
    done = [s for s in shards if s is not None]
    return Placement(ring, ids, zone_of, zones, rf, tenants, shard_of, done, rates)


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
