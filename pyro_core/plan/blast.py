# Blast radius: which tenants suffer when k instances, or a whole zone, fail.
# Owns: the two harms per tenant, from the replica sets a Placement computed with the real walk —
# "loses a replica" (some of its keys have a failed replica: its shard meets the failed instances) and
# "loses quorum" (some of its keys keep fewer than RF // 2 + 1 live replicas: writes to them fail, as
# dskit's quorum rule says) — averaged over failure sets: exact hypergeometric for "loses a replica";
# for "loses quorum" every k-subset when there are at most ``exact_limit`` of them, else a seeded
# sample of ``samples`` subsets (with its standard error). Zones fail one at a time, exactly.
# Quorum losses are counted sparsely (instance → sets holding it → shards using them), so a failure set
# costs what it touches, not every set of the cluster; the dense reference method is kept for tests.
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
        counts = np.array([len(r) for r in rows], dtype=np.int64)
        allsets = np.full((int(counts.sum()), width), -1, dtype=np.int64)
        at = 0
        for r in rows:  # pad every shard's rows to the widest with -1
            allsets[at : at + len(r), : r.shape[1]] = r
            at += len(r)
        self.n = len(placement.instance_ids)
        base = self.n + 1
        if width * np.log2(base) < 62:  # np.unique(axis=0), fast: rows packed into one int64
            packed = np.zeros(len(allsets), dtype=np.int64)
            for j in range(width):
                packed = packed * base + (allsets[:, j] + 1)
            _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
            self.sets = allsets[first]
        else:
            self.sets, inverse = np.unique(allsets, axis=0, return_inverse=True)
        self.size = (self.sets >= 0).sum(axis=1)
        self.offsets = np.concatenate(([0], np.cumsum(counts)))
        self.set_of = inverse.ravel()  # per (shard, set) row: index into self.sets
        # per shard, how many tenants (and how much rate) it carries
        self.tenants = np.bincount(placement.shard_of, minlength=len(placement.shards)).astype(np.float64)
        self.rate = np.bincount(placement.shard_of, weights=placement.rates, minlength=len(placement.shards))
        # sparse indices: instance → sets holding it; set → shards using it
        set_ids = np.nonzero(self.sets.T >= 0)[1]
        members = self.sets.T[self.sets.T >= 0]
        order = np.argsort(members, kind="stable")
        self.inst_sets = set_ids[order]
        self.inst_ptr = np.searchsorted(members[order], np.arange(self.n + 1))
        shard_of_row = np.repeat(np.arange(len(counts)), counts)
        order = np.argsort(self.set_of, kind="stable")
        self.set_shards = shard_of_row[order]
        self.set_ptr = np.searchsorted(self.set_of[order], np.arange(len(self.sets) + 1))
        # a set loses quorum once this many of its members fail (≤ 0: it never had quorum)
        self.down_needed = self.size - self.quorum + 1
        never = np.flatnonzero(self.down_needed <= 0)
        self.always_lost = np.unique(self._shards_of(never))

    def _shards_of(self, sets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        if len(sets) == 0:
            return np.zeros(0, dtype=np.int64)
        starts, ends = self.set_ptr[sets], self.set_ptr[sets + 1]
        return self.set_shards[_ranges(starts, ends)].astype(np.int64)

    def losses(
        self, failed: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """failed: (S, k) instance indices → per row (tenants, rate) of the shards that have a set below
        quorum. Sparse: only the sets holding a failed instance are looked at."""
        s_count = failed.shape[0]
        flat = failed.ravel()
        row = np.repeat(np.arange(s_count), failed.shape[1])
        starts, ends = self.inst_ptr[flat], self.inst_ptr[flat + 1]
        idx = _ranges(starts, ends)
        set_ids = self.inst_sets[idx]
        rows = np.repeat(row, ends - starts)
        nsets = len(self.sets)
        key, down = np.unique(rows * nsets + set_ids, return_counts=True)
        lost = key[down >= self.down_needed[key % nsets]]
        lost_rows, lost_sets = lost // nsets, lost % nsets
        starts, ends = self.set_ptr[lost_sets], self.set_ptr[lost_sets + 1]
        shard = self.set_shards[_ranges(starts, ends)]
        shard_rows = np.repeat(lost_rows, ends - starts)
        if len(self.always_lost):
            shard = np.concatenate([shard, np.tile(self.always_lost, s_count)])
            shard_rows = np.concatenate([shard_rows, np.repeat(np.arange(s_count), len(self.always_lost))])
        pair = np.unique(shard_rows * len(self.tenants) + shard)
        pr, ps = pair // len(self.tenants), pair % len(self.tenants)
        tenants = np.bincount(pr, weights=self.tenants[ps], minlength=s_count).astype(np.float64)
        rate = np.bincount(pr, weights=self.rate[ps], minlength=s_count).astype(np.float64)
        return tenants, rate

    def shards_losing_quorum(self, failed: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """failed: (S, n) bool → (S, shards) bool: the shard has a set below quorum (dense; the
        reference the sparse ``losses`` is tested against, and the zone failures' method)."""
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


def _ranges(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The concatenation of arange(start, end) for every pair, vectorized."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    out: npt.NDArray[np.int64] = (np.repeat(starts, lengths) + np.arange(total) - offsets).astype(np.int64)
    return out


def blast_radius(
    placement: Placement,
    k: int,
    seed: int,
    *,
    samples: int = 2000,
    exact_limit: int = 20_000,
    dense: bool = False,
) -> BlastReport:
    """Expected harm when ``k`` instances chosen uniformly at random fail together. ``dense``: the
    reference method (every set checked for every failure set); the default looks only at the sets
    that hold a failed instance, with identical tenant shares."""
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
    chunk = 4096
    while True:
        block = list(itertools.islice(combos, chunk))
        if not block:
            break
        failed = np.array(block, dtype=np.int64).reshape(len(block), k)
        if dense:
            mask = np.zeros((len(block), n), dtype=bool)
            mask[np.repeat(np.arange(len(block)), k), failed.ravel()] = True
            lost = sets.shards_losing_quorum(mask)
            shares.extend((lost @ sets.tenants / tenants).tolist())
            rate_shares.extend((lost @ sets.rate / total_rate).tolist())
        else:
            lost_tenants, lost_rate = sets.losses(failed)
            shares.extend((lost_tenants / tenants).tolist())
            rate_shares.extend((lost_rate / total_rate).tolist())
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
