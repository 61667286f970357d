# How many instances two tenants share: simulated with the real shuffle shards beside the exact law.
# Owns: the exact overlap distribution of two shards (hypergeometric from ring/shard.py; with zone
# awareness the convolution of one hypergeometric per zone, since dskit picks per zone), the simulated
# histogram over independent pairs of seeded synthetic tenants, and the agreement statistic (Pearson
# chi-square over bins pooled to an expected count of at least 5).
# Must not know: loads, failures, printing; the seed is an argument.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pyro_core.ring.shard import overlap_probabilities, shard_combinations, shard_size_per_zone


def exact_overlap(zone_sizes: list[int], shard_size: int) -> list[float]:
    """P(two tenants' shards share exactly k instances), k = 0..len(shard), for a ring whose zones
    hold ``zone_sizes`` instances (one entry: no zone awareness)."""
    if len(zone_sizes) <= 1:
        return overlap_probabilities(zone_sizes[0] if zone_sizes else 1, shard_size)
    per_zone = shard_size_per_zone(shard_size, len(zone_sizes))
    dist = np.array([1.0])
    for n in zone_sizes:
        dist = np.convolve(dist, overlap_probabilities(n, min(per_zone, n)))
    return [float(p) for p in dist]


def combinations(zone_sizes: list[int], shard_size: int) -> int:
    """How many distinct shards exist (C(n, size); per zone, the product)."""
    if len(zone_sizes) <= 1:
        return shard_combinations(zone_sizes[0] if zone_sizes else 1, shard_size)
    per_zone = shard_size_per_zone(shard_size, len(zone_sizes))
    out = 1
    for n in zone_sizes:
        out *= shard_combinations(n, min(per_zone, n))
    return out


@dataclass(frozen=True, slots=True)
class OverlapReport:
    instances: int
    shard_size: int
    pairs: int
    exact: list[float]  # P(share k), k = 0..
    simulated: list[float]  # observed share of pairs sharing k
    counts: list[int]
    combinations: int
    chi_square: float
    degrees_of_freedom: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "shard_size": self.shard_size,
            "pairs": self.pairs,
            "combinations": self.combinations,
            "exact": self.exact,
            "simulated": self.simulated,
            "counts": self.counts,
            "chi_square": self.chi_square,
            "degrees_of_freedom": self.degrees_of_freedom,
        }


def chi_square(counts: list[int], probabilities: list[float]) -> tuple[float, int]:
    """Pearson's statistic and its degrees of freedom, pooling tail bins until each expects ≥ 5."""
    total = sum(counts)
    bins_o: list[float] = []
    bins_e: list[float] = []
    acc_o = acc_e = 0.0
    for o, p in zip(counts, probabilities, strict=True):
        acc_o += o
        acc_e += p * total
        if acc_e >= 5:
            bins_o.append(acc_o)
            bins_e.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 or acc_o > 0:
        if bins_e:
            bins_o[-1] += acc_o
            bins_e[-1] += acc_e
        else:
            bins_o, bins_e = [acc_o], [acc_e]
    stat = sum((o - e) ** 2 / e for o, e in zip(bins_o, bins_e, strict=True) if e > 0)
    return stat, max(len(bins_e) - 1, 0)


def simulate_overlap(ring: Any, shard_size: int, pairs: int, seed: int) -> OverlapReport:
    """Overlap of ``pairs`` independent pairs of synthetic tenants' real shards (2 × pairs tenants)."""
    ids = ring.instance_ids()
    index = {k: i for i, k in enumerate(ids)}
    zone_sizes = [sum(1 for inst in ring.instances if inst.zone == z) for z in ring.zones]
    if not ring.zone_awareness:
        zone_sizes = [len(ids)]
    exact = exact_overlap(zone_sizes, shard_size or len(ids))  # 0: every instance
    rng = np.random.default_rng([seed, 0x0E7])
    prefix = f"overlap-{int(rng.integers(2**62)):x}"
    member = np.zeros((2, pairs, len(ids)), dtype=bool)
    for p in range(pairs):
        for side in range(2):
            shard = ring.shuffle_shard(f"{prefix}-{p}-{side}", shard_size)
            member[side, p, [index[i] for i in shard.instance_ids()]] = True
    shared = (member[0] & member[1]).sum(axis=1)
    counts = np.bincount(shared, minlength=len(exact))[: len(exact)].tolist()
    stat, dof = chi_square(counts, exact)
    return OverlapReport(
        instances=len(ids),
        shard_size=shard_size,
        pairs=pairs,
        exact=exact,
        simulated=[c / pairs for c in counts] if pairs else [0.0] * len(exact),
        counts=counts,
        combinations=combinations(zone_sizes, shard_size or len(ids)),
        chi_square=stat,
        degrees_of_freedom=dof,
    )
