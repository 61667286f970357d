# The recommendation: the smallest instance count, and the shard size that achieves it, that keeps every
# instance under its capacity with the target headroom; beside it the perfect-balance lower bound (what
# the imbalance costs) and what the configured shard size would need.
# Owns: the per-tenant minimum shard size (a tenant whose replicated rate is spread over s instances
# puts at least rate × RF / s on the busiest of them, so s ≥ ceil(rate × RF / usable), rounded up to
# whole zones since dskit picks ceil(s / zones) per zone), and the joint search over instance count n
# and global shard size s. Every candidate is verified by the caller's ``evaluate`` (the real ring and
# shuffle-shard placement of load.py); nothing is estimated.
# The search (assumptions stated, as bisection needs them):
#   1. lower bound: n ≥ ceil(total replicated load / usable) (perfect balance), n ≥ RF, zones, and
#      every per-tenant minimum shard size.
#   2. the best count: the whole-ring shard (s = all) spreads every tenant over every instance, so
#      only token ownership is uneven; assumed to balance at least as well as any smaller shard. Its
#      peak is assumed non-increasing in n (true in expectation; with random tokens each n has its own
#      draw, so the answer is exact up to that noise, a few %), so: grow n geometrically from the
#      lower bound until it fits, then bisect.
#   3. the shard size at that count: the smallest s ≥ the configured size (never smaller: shard size
#      is also an isolation choice) that fits, assuming the peak is non-increasing in s (larger
#      shards average more tenants): doubling from the configured size, then bisection to within
#      an eighth of the size (or one zone).
#   4. the configured size's own need: the smallest n at which the configured s fits, searched as in
#      2 from the best count, up to 8 × the best count and 14 evaluations (else reported as not found).
# Must not know: rings, printing, argparse; ``evaluate`` is given by the caller.
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyro_core.plan.scenario import Tenant

# evaluate(instances, global shard size (0 = all), per-tenant shard sizes) → MB/s on the busiest instance
Evaluate = Callable[[int, int, dict[str, int]], float]


@dataclass(frozen=True, slots=True)
class Recommendation:
    instances: int
    shard_size: int  # 0: every instance
    shard_overrides: dict[str, int]  # tenant → its own shard size (raised to its minimum)
    usable_capacity: float  # MB/s per instance after headroom
    peak_load: float  # MB/s on the most loaded instance at the recommended count
    peak_utilisation: float  # of the full capacity
    lower_bound: int  # perfect balance: ceil(total replicated / usable) (and the size minimums)
    imbalance_cost: float  # instances / lower_bound − 1
    configured_shard_size: int
    configured_instances: int | None  # smallest count the configured shard size fits at (None: not found)
    evaluations: list[tuple[int, int, float]] = field(default_factory=list)  # (n, s, peak) tried
    fits: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "shard_size": self.shard_size,
            "shard_overrides": self.shard_overrides,
            "usable_capacity_mb_s": self.usable_capacity,
            "peak_load_mb_s": self.peak_load,
            "peak_utilisation": self.peak_utilisation,
            "lower_bound_instances": self.lower_bound,
            "imbalance_cost": self.imbalance_cost,
            "configured_shard_size": self.configured_shard_size,
            "configured_shard_size_instances": self.configured_instances,
            "evaluations": [
                {"instances": n, "shard_size": s, "peak_mb_s": p} for n, s, p in self.evaluations
            ],
            "fits": self.fits,
        }


def round_to_zones(size: int, zones: int) -> int:
    """The size dskit really picks: ceil(size / zones) per zone."""
    return -(-size // max(zones, 1)) * max(zones, 1)


def tenant_min_shard_size(rate: float, rf: int, zones: int, usable: float) -> int:
    """The smallest shard that can carry ``rate``: ceil(rate × RF / usable), whole zones, at least RF."""
    need = math.ceil(rate * rf / usable - 1e-12) if usable > 0 else rf
    return round_to_zones(max(rf, need, 1), zones)


def shard_overrides(
    tenants: Sequence[Tenant], size: int, rf: int, zones: int, usable: float
) -> dict[str, int]:
    """Per-tenant shard sizes raised to the tenant's minimum where the global ``size`` (or the tenant's
    own) is smaller. ``size`` 0 (every instance) needs none."""
    out: dict[str, int] = {}
    for t in tenants:
        own = size if t.shard_size is None else t.shard_size
        if own == 0:
            continue
        need = tenant_min_shard_size(t.rate, rf, zones, usable)
        if need > own:
            out[t.name] = need
    return out


def lower_bound(total_replicated: float, usable: float, minimum: int) -> int:
    """Perfect balance: no count below this can carry the load."""
    return max(minimum, math.ceil(total_replicated / usable - 1e-9) if usable > 0 else minimum)


def recommend(
    evaluate: Evaluate,
    tenants: Sequence[Tenant],
    *,
    rf: int,
    zones: int,
    configured_shard_size: int,
    capacity: float,
    headroom: float,
    max_instances: int = 100_000,
    max_evaluations: int = 40,
) -> Recommendation:
    usable = capacity * (1.0 - headroom)
    total = sum(t.rate for t in tenants) * rf
    size_floor = max(
        [rf, zones]
        + [tenant_min_shard_size(t.rate, rf, zones, usable) for t in tenants]
        + [t.shard_size for t in tenants if t.shard_size]
    )
    bound = lower_bound(total, usable, size_floor)
    tried: dict[tuple[int, int], float] = {}

    def sized(n: int, s: int) -> tuple[int, dict[str, int]]:
        s = 0 if s >= n else s  # a shard of every instance is the whole ring
        overrides = {k: min(v, n) for k, v in shard_overrides(tenants, s, rf, zones, usable).items()}
        return s, overrides

    def peak(n: int, s: int) -> float:
        s, overrides = sized(n, s)
        if (n, s) not in tried:
            tried[(n, s)] = evaluate(n, s, overrides)
        return tried[(n, s)]

    def fits(n: int, s: int) -> bool:
        return peak(n, s) <= usable

    def smallest_n(s: int, start: int, limit: int, budget: int) -> int | None:
        """Smallest n ≥ start with fits(n, s): geometric growth, then bisection (monotone in n)."""
        stop = min(len(tried) + budget, max_evaluations)
        lo, hi = start - 1, start  # lo: known not to fit (or below the start)
        while not fits(hi, s):
            if hi >= limit or len(tried) >= stop:
                return None
            lo, hi = hi, min(limit, max(hi + 1, math.ceil(hi * 1.5)))
        while hi - lo > 1 and len(tried) < stop:
            mid = (lo + hi) // 2
            if fits(mid, s):
                hi = mid
            else:
                lo = mid
        return hi

    configured = configured_shard_size
    best = smallest_n(0, bound, max_instances, max_evaluations)
    if best is None:  # nothing fits within the limits: report the largest count tried
        n_max = max(n for n, _ in tried)
        p = tried[(n_max, 0)]
        return Recommendation(
            n_max, 0, {}, usable, p, p / capacity, bound, n_max / bound - 1, configured, None,
            _evaluations(tried), False,
        )  # fmt: skip
    # the smallest shard size ≥ the configured one that fits at the best count
    size = 0
    if configured:
        lo_s = round_to_zones(configured, zones)
        if lo_s < best and fits(best, lo_s):
            size = lo_s
        elif lo_s < best:
            bad, good = lo_s, best  # best ≡ the whole ring, which fits
            s = lo_s
            while True:  # doubling until it fits
                s = round_to_zones(s * 2, zones)
                if s >= best:
                    break
                if fits(best, s):
                    good = s
                    break
                bad = s
            # bisection on whole zones, to within an eighth of the size (the peak is flat up there)
            while good - bad > max(zones, good // 8):
                mid = round_to_zones((bad + good) // 2, zones)
                if mid in (bad, good):
                    break
                if fits(best, mid):
                    good = mid
                else:
                    bad = mid
            size = 0 if good >= best else good
    size, overrides = sized(best, size)
    p = peak(best, size)
    if configured and round_to_zones(configured, zones) < best:
        conf_n = (
            best
            if size == round_to_zones(configured, zones)
            else smallest_n(configured, best + 1, 8 * best, 14)
        )
    else:
        conf_n = best
    return Recommendation(
        instances=best,
        shard_size=size,
        shard_overrides=overrides,
        usable_capacity=usable,
        peak_load=p,
        peak_utilisation=p / capacity,
        lower_bound=bound,
        imbalance_cost=best / bound - 1.0,
        configured_shard_size=configured,
        configured_instances=conf_n,
        evaluations=_evaluations(tried),
        fits=True,
    )


def _evaluations(tried: dict[tuple[int, int], float]) -> list[tuple[int, int, float]]:
    return [(n, s, p) for (n, s), p in sorted(tried.items())]
