# The recommendation: the smallest instance count, and the shard sizes, that keep every instance under
# its capacity with the target headroom.
# Owns: shard sizes (a global one covering 99% of tenants, overrides for the largest tenants, so that
# one tenant takes at most ``TENANT_SHARE`` of an instance's usable capacity), and the instance-count
# search: start from perfect balance × the observed imbalance, rebuild the ring and place the tenants
# with the real algorithms at each candidate, correct by the measured peak, then step up until it fits.
# Must not know: printing, argparse; ``evaluate`` (candidate count → peak load) is given by the caller.
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyro_core.plan.scenario import Tenant

TENANT_SHARE = 0.5  # at most this share of one instance's usable capacity goes to a single tenant


@dataclass(frozen=True, slots=True)
class Recommendation:
    instances: int
    shard_size: int
    shard_overrides: dict[str, int]  # tenant → its own shard size
    usable_capacity: float  # MB/s per instance after headroom
    peak_load: float  # MB/s on the most loaded instance at the recommended count
    peak_utilisation: float  # of the full capacity
    evaluations: list[tuple[int, float]]  # (instances, peak MB/s) tried
    fits: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "shard_size": self.shard_size,
            "shard_overrides": self.shard_overrides,
            "usable_capacity_mb_s": self.usable_capacity,
            "peak_load_mb_s": self.peak_load,
            "peak_utilisation": self.peak_utilisation,
            "evaluations": [{"instances": n, "peak_mb_s": p} for n, p in self.evaluations],
            "fits": self.fits,
        }


def recommend_shard_sizes(
    tenants: Sequence[Tenant], rf: int, zones: int, configured: int, usable: float
) -> tuple[int, dict[str, int]]:
    """(global shard size, per-tenant overrides). 0 (every instance) stays 0."""

    def needed(rate: float) -> int:
        size = max(rf, math.ceil(rate * rf / (TENANT_SHARE * usable)) if usable > 0 else rf)
        return -(-size // zones) * zones  # dskit picks ceil(size / zones) per zone

    if configured == 0:
        return 0, {}
    sizes = sorted(needed(t.rate) for t in tenants if t.shard_size is None)
    covering = sizes[min(len(sizes) - 1, math.ceil(0.99 * len(sizes)) - 1)] if sizes else rf
    size = max(configured, covering)
    overrides = {t.name: needed(t.rate) for t in tenants if needed(t.rate) > (t.shard_size or size)}
    return size, overrides


def recommend_instances(
    evaluate: Callable[[int], float],
    total_replicated: float,
    usable: float,
    minimum: int,
    imbalance_hint: float,
    *,
    max_instances: int = 100_000,
    max_evaluations: int = 12,
) -> tuple[int, float, list[tuple[int, float]], bool]:
    """(instances, peak, evaluations, fits): the smallest count found whose peak load ≤ ``usable``."""
    tried: dict[int, float] = {}

    def peak(n: int) -> float:
        if n not in tried:
            tried[n] = evaluate(n)
        return tried[n]

    n = max(minimum, math.ceil(total_replicated * max(imbalance_hint, 1.0) / usable))
    n = min(n, max_instances)
    fit: int | None = None
    no_fit = minimum - 1
    while len(tried) < max_evaluations:
        p = peak(n)
        if p <= usable:
            fit = n if fit is None else min(fit, n)
            # a little smaller may still fit: try the count the measured peak suggests
            guess = max(no_fit + 1, math.ceil(n * p / usable))
            if guess >= n:
                break
            n = guess
        else:
            no_fit = max(no_fit, n)
            guess = max(n + max(1, n // 50), math.ceil(n * p / usable))
            if fit is not None:
                guess = min(guess, fit - 1)
                if guess <= no_fit:
                    break
            if guess > max_instances:
                break
            n = guess
    evaluations = sorted(tried.items())
    if fit is None:
        best = max(tried, key=lambda k: (tried[k] <= usable, k))
        return best, tried[best], evaluations, False
    return fit, tried[fit], evaluations, True
