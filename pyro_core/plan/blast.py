# Blast radius: which tenants suffer when k instances, or a whole zone, fail.
# Owns: the two harms per tenant, from the replica sets a Placement computed with the real walk —
# "loses a replica" (some of its keys have a failed replica: its shard meets the failed instances) and
# "loses quorum" (some of its keys keep fewer than RF // 2 + 1 live replicas: writes to them fail, as
# dskit's quorum rule says) — averaged over failure sets: exact hypergeometric for "loses a replica";
# for "loses quorum" every k-subset when there are at most ``exact_limit`` of them, else a seeded
# sample of ``samples`` subsets (with its standard error). Zones fail one at a time, exactly.
# Must not know: how the placement was built, printing; the seed is an argument.
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pyro_core.plan.load import Placement


@dataclass(frozen=True, slots=True)
class BlastReport:
    failed: int  # k instances fail
    method: str  # "exact" (every k-subset) or "sampled"
    failure_sets: int  # how many k-subsets were evaluated
    lose_replica_share: float  # expected share of tenants with a failed replica (exact)
    lose_quorum_share: float  # expected share of tenants with keys below quorum
    lose_quorum_stderr: float  # 0 when exact
    lose_quorum_worst: float  # the worst failure set seen
    lose_quorum_rate_share: float  # the same, weighted by ingest rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ZoneBlast:
    zone: str
    lose_replica_share: float
    lose_quorum_share: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Sets:
    """Every distinct replica set of the placement once, and which shards use which."""

    def __init__(self, placement: Placement) -> None:
        rf = placement.replication_factor
        self.quorum = rf // 2 + 1
        rows = [s.sets for s in placement.shards]
        width = max((r.shape[1] for r in rows), default=rf)
        padded = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=-1) for r in rows]
        allsets = np.concatenate(padded) if padded else np.zeros((0, width), dtype=np.int64)
        self.sets, inverse = np.unique(allsets, axis=0, return_inverse=True)
        self.size = (self.sets >= 0).sum(axis=1)
        self.offsets = np.cumsum([0] + [len(r) for r in rows])
        self.set_of = inverse.ravel()  # per (shard, set) row: index into self.sets
        self.n = len(placement.instance_ids)
        # per shard, how many tenants (and how much rate) it carries
        self.tenants = np.bincount(placement.shard_of, minlength=len(placement.shards)).astype(np.float64)
        self.rate = np.bincount(placement.shard_of, weights=placement.rates, minlength=len(placement.shards))

    def shards_losing_quorum(self, failed: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """failed: (S, n) bool → (S, shards) bool: the shard has a set below quorum."""
        padded = np.concatenate([failed, np.zeros((failed.shape[0], 1), dtype=bool)], axis=1)
        down = padded[:, self.sets].sum(axis=2)  # -1 indexes the always-alive pad column
        lost_set = (self.size[None, :] - down) < self.quorum
        per_row = lost_set[:, self.set_of]
        if per_row.shape[1] == 0:
            return np.zeros((failed.shape[0], len(self.tenants)), dtype=bool)
        starts = self.offsets[:-1]
        nonempty = self.offsets[1:] > starts
        out = np.zeros((failed.shape[0], len(self.tenants)), dtype=bool)
        out[:, nonempty] = np.logical_or.reduceat(per_row, starts[nonempty], axis=1)
        return out


def blast_radius(
    placement: Placement, k: int, seed: int, *, samples: int = 2000, exact_limit: int = 20_000
) -> BlastReport:
    """Expected harm when ``k`` instances chosen uniformly at random fail together."""
    n = len(placement.instance_ids)
    k = min(max(k, 0), n)
    tenants = max(len(placement.tenants), 1)
    sets = _Sets(placement)
    # loses a replica: the shard meets the failed set; exact over all C(n, k) subsets
    total = math.comb(n, k)
    sizes = np.array([len(s.members) for s in placement.shards])
    miss = np.array([math.comb(n - int(s), k) / total for s in sizes]) if len(sizes) else np.zeros(0)
    lose_replica = float(((1.0 - miss) * sets.tenants).sum() / tenants)
    if total <= exact_limit:
        method = "exact"
        combos: Any = itertools.combinations(range(n), k)
        count = total
    else:
        method = "sampled"
        rng = np.random.default_rng([seed, 0xB1A5, k])
        count = samples
        combos = (rng.choice(n, k, replace=False) for _ in range(samples))
    shares: list[float] = []
    rate_shares: list[float] = []
    total_rate = float(placement.rates.sum()) or 1.0
    chunk = max(1, min(256, 4_000_000 // max(1, len(sets.sets) * max(1, sets.sets.shape[1]))))
    while True:
        block = list(itertools.islice(combos, chunk))
        if not block:
            break
        failed = np.zeros((len(block), n), dtype=bool)
        for row, members in enumerate(block):
            failed[row, list(members)] = True
        lost = sets.shards_losing_quorum(failed)
        shares.extend((lost @ sets.tenants / tenants).tolist())
        rate_shares.extend((lost @ sets.rate / total_rate).tolist())
    arr = np.array(shares) if shares else np.zeros(1)
    stderr = 0.0 if method == "exact" or len(arr) < 2 else float(arr.std(ddof=1) / math.sqrt(len(arr)))
    return BlastReport(
        failed=k,
        method=method,
        failure_sets=count,
        lose_replica_share=lose_replica,
        lose_quorum_share=float(arr.mean()),
        lose_quorum_stderr=stderr,
        lose_quorum_worst=float(arr.max()),
        lose_quorum_rate_share=float(np.mean(rate_shares)) if rate_shares else 0.0,
    )


def zone_blast(placement: Placement) -> list[ZoneBlast]:
    """Each zone failing on its own (every instance of it down)."""
    if len(placement.zones) <= 1:
        return []
    sets = _Sets(placement)
    tenants = max(len(placement.tenants), 1)
    failed = np.stack([placement.zone_of == z for z in range(len(placement.zones))])
    lost = sets.shards_losing_quorum(failed)
    out = []
    for z, zone in enumerate(placement.zones):
        meets = np.array([bool(failed[z, s.members].any()) for s in placement.shards])
        out.append(
            ZoneBlast(
                zone,
                float((meets * sets.tenants).sum() / tenants),
                float((lost[z] * sets.tenants).sum() / tenants),
            )
        )
    return out
