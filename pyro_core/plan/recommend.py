# The recommendation: the smallest instance count, and the shard size that achieves it, that keeps every
# instance under its capacity with the target headroom; beside it the perfect-balance lower bound (what
# the imbalance costs) and what the configured shard size would need.
# Owns: the per-tenant minimum shard size (a tenant whose replicated rate is spread over s instances
# puts at least rate × RF / s on the busiest of them, so s ≥ ceil(rate × RF / usable), rounded up to
# whole zones since dskit picks ceil(s / zones) per zone), and the joint search over instance count n
# and global shard size s. Every candidate is verified by the caller's ``evaluate`` (the real ring and
# shuffle-shard placement of load.py), exactly when affordable, else estimated (see Bounded work).
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
# Bounded work (issue 6: 1,000 instances × 10,000 tenants in seconds). The search makes at most
# ``max_evaluations`` evaluations in step 2 (plus the few of steps 3 and 4), and with a ``row_budget``
# (and a ``sample`` evaluator) no evaluation walks more than about that many token ranges:
#   * a candidate whose full placement walks ≤ ``row_budget`` token ranges (Σ over tenants with a
#     partial shard of tokens × shard size, plus the whole ring once) is evaluated exactly, on all
#     tenants; the whole-ring candidates of step 2 always are;
#   * a larger one is ESTIMATED on a seeded sample: the heaviest tenants (down to the median rate, in
#     half the budget) exactly, and two disjoint uniform samples of the rest in the other half. Each
#     sample, rescaled to the rest's total rate, is an unbiased estimate of the rest's per-instance
#     load but spreads more than the full population (fewer, heavier tenants). The spread is set back
#     by moment matching: the part common to both samples (their covariance across instances: token
#     ownership) is kept, the part that differs between them (tenant draw noise) is shrunk to what
#     the whole rest would show (by Σ rate² of the rest against that of the samples);
#   * the answer is then verified with the full placement when that walks ≤ ``verify_budget`` token
#     ranges; if the verified peak misses the headroom, or the answer cannot be verified within the
#     budget, the whole-ring shard (exact, fits) is
#     recommended instead. ``method`` in the output says which of these happened.
# Must not know: rings, printing, argparse; ``evaluate`` and ``sample`` are given by the caller.
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pyro_core.plan.scenario import Tenant

# evaluate(instances, global shard size (0 = all), per-tenant shard sizes) → MB/s on the busiest instance
Evaluate = Callable[[int, int, dict[str, int]], float]
# sample(instances, shard size, overrides, some tenants, group of each (0, 1 or 2)) → per-group,
# per-instance MB/s, shape (3, instances): the real placement of just those tenants
SampleLoads = Callable[[int, int, dict[str, int], Sequence[Tenant], Sequence[int]], npt.NDArray[np.float64]]


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
    estimated: frozenset[tuple[int, int]] = frozenset()  # (n, s) evaluated on a sample, not all tenants
    method: str = "exact: every candidate placed with all tenants"
    verified: bool = True  # peak_load is the full placement's (else a sampled estimate)
    configured_estimated: bool = False  # configured_instances found on sampled estimates

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
            "configured_shard_size_instances_estimated": self.configured_estimated,
            "evaluations": [
                {"instances": n, "shard_size": s, "peak_mb_s": p, "exact": (n, s) not in self.estimated}
                for n, s, p in self.evaluations
            ],
            "fits": self.fits,
            "verified": self.verified,
            "method": self.method,
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
    sample: SampleLoads | None = None,
    tokens: int = 128,
    row_budget: int | None = None,
    verify_budget: int | None = None,
    seed: int = 0,
) -> Recommendation:
    """The search described in the header. Without ``sample`` and ``row_budget`` every candidate is
    evaluated exactly; with them, candidates whose full placement walks more than ``row_budget`` token
    ranges are estimated on a sample, and the answer verified if it walks ≤ ``verify_budget``."""
    usable = capacity * (1.0 - headroom)
    rates = np.array([t.rate for t in tenants], dtype=np.float64)
    median = float(np.median(rates)) if len(rates) else 0.0
    by_rate = np.argsort(-rates, kind="stable")
    estimated: set[tuple[int, int]] = set()
    largest_sample = 0
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

    def rows(n: int, s: int, overrides: dict[str, int]) -> npt.NDArray[np.int64]:
        """Token ranges each tenant's own shard walk costs (0: the whole ring, walked once anyway)."""
        out = np.zeros(len(tenants), dtype=np.int64)
        for i, t in enumerate(tenants):
            own = overrides.get(t.name, s if t.shard_size is None else t.shard_size)
            if 0 < own < n:
                out[i] = tokens * min(round_to_zones(own, zones), n)
        return out

    def estimate(n: int, s: int, overrides: dict[str, int], cost: npt.NDArray[np.int64]) -> float | None:
        """Peak on a sample (heaviest tenants exact, two uniform samples of the rest, moment
        matched); None when the sample would be every tenant anyway."""
        nonlocal largest_sample
        assert sample is not None and row_budget is not None
        half = row_budget // 2
        free = cost == 0
        heavy = by_rate[(rates[by_rate] >= median) & ~free[by_rate]]
        heavy = heavy[np.cumsum(cost[heavy]) <= half]
        exact_set = np.zeros(len(tenants), dtype=bool)
        exact_set[heavy] = True
        exact_set[free] = True
        rest = np.flatnonzero(~exact_set)
        m = max(2, int(half // max(1.0, float(cost[rest].mean())))) if len(rest) else 0
        if m >= len(rest):
            return None
        rng = np.random.default_rng([seed, 0x5A3, n, s])
        pick = rng.permutation(rng.choice(rest, size=m, replace=False))
        chosen = np.concatenate([np.flatnonzero(exact_set), pick])
        groups = [0] * int(exact_set.sum()) + [1 + j % 2 for j in range(m)]
        loads = sample(n, s, overrides, [tenants[int(i)] for i in chosen], groups)
        largest_sample = max(largest_sample, len(chosen))
        return float((loads[0] + _rest_estimate(loads[1], loads[2], rates, rest, pick)).max())

    def peak(n: int, s: int) -> float:
        s, overrides = sized(n, s)
        if (n, s) not in tried:
            got: float | None = None
            if sample is not None and row_budget is not None:
                cost = rows(n, s, overrides)
                if int(cost.sum()) + n * tokens > row_budget:
                    got = estimate(n, s, overrides, cost)
            if got is None:
                tried[(n, s)] = evaluate(n, s, overrides)
            else:
                tried[(n, s)] = got
                estimated.add((n, s))
        return tried[(n, s)]

    def verify(n: int, s: int) -> bool:
        """Re-evaluate an estimated candidate on all tenants if affordable; whether it is exact now."""
        s, overrides = sized(n, s)
        if (n, s) not in estimated:
            return True
        if verify_budget is None or int(rows(n, s, overrides).sum()) + n * tokens > verify_budget:
            return False
        tried[(n, s)] = evaluate(n, s, overrides)
        estimated.discard((n, s))
        return True

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
            _evaluations(tried), False, frozenset(estimated), verified=(n_max, 0) not in estimated,
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
    verified = verify(best, size)
    fallback = ""
    if verified and p != tried[(best, size)]:
        p = tried[(best, size)]
        if p > usable:  # the estimate was optimistic: the whole ring fits (step 2, exact)
            fallback = (
                f"; shard size {size} (estimated to fit) peaks at {p:.3g} MB/s on all tenants, over "
                f"{usable:.3g} usable, so the whole ring is recommended"
            )
            size, overrides = sized(best, 0)
            p = peak(best, size)
            verified = verify(best, size)
    if not verified and size:
        # Sampled estimates can be optimistic by ~15% at large shard sizes: never recommend an
        # unverified shard size. The whole ring at this count is exact and fits.
        fallback = (
            f"; shard size {size} is estimated to fit (peak ≈ {p:.3g} MB/s) but verifying it on all "
            f"tenants would walk > {verify_budget} token ranges, so the whole ring (exact) is recommended"
        )
        size, overrides = sized(best, 0)
        p = peak(best, size)
        verified = verify(best, size)
    if configured and round_to_zones(configured, zones) < best:
        conf_n = (
            best
            if size == round_to_zones(configured, zones)
            else smallest_n(configured, best + 1, 8 * best, 14)
        )
    else:
        conf_n = best
    conf_key = sized(conf_n, configured)[0] if conf_n is not None else 0
    if not estimated:
        method = f"exact: every candidate placed with all {len(tenants)} tenants"
    else:
        method = (
            f"searched on samples of ≤ {largest_sample} of {len(tenants)} tenants where a full placement "
            f"would walk > {row_budget} token ranges ({len(estimated)} of {len(tried)} evaluations); "
            + (
                "the recommendation verified on all tenants"
                if verified
                else f"the recommendation is an ESTIMATE (verifying it would walk > {verify_budget} ranges)"
            )
            + fallback
        )
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
        estimated=frozenset(estimated),
        method=method,
        verified=verified,
        configured_estimated=conf_n is not None and (conf_n, conf_key) in estimated,
    )


def _rest_estimate(
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    rates: npt.NDArray[np.float64],
    rest: npt.NDArray[np.int64],
    pick: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Per-instance load of all the ``rest`` tenants from two disjoint samples (``a``: the loads of
    pick[0::2], ``b``: of pick[1::2]). Each sample rescaled to the rest's total rate is unbiased; their
    mean keeps the common part (covariance across instances) and shrinks the tenant-draw noise (half
    their difference) to the size the whole rest shows: noise variance ∝ Σ rate² / (Σ rate)²."""
    total = float(rates[rest].sum())
    ra, rb = rates[pick[0::2]], rates[pick[1::2]]
    sa, sb = float(ra.sum()), float(rb.sum())
    if total <= 0:
        return np.zeros_like(a)
    if sa <= 0 or sb <= 0:  # one sample carries nothing: the other, unshrunk (conservative)
        return (a if sa > 0 else b) * (total / max(sa, sb))
    ea, eb = a * (total / sa), b * (total / sb)
    avg = (ea + eb) / 2.0
    mean = float(avg.mean())
    d = avg - mean
    common = max(0.0, float(np.mean((ea - mean) * (eb - mean))))
    noise = float(np.var(ea - eb)) / 4.0
    # noise variance, per unit of per-rate variance: sample mean vs the whole rest
    in_avg = total**2 * (float((ra**2).sum()) / sa**2 + float((rb**2).sum()) / sb**2) / 4.0
    in_full = float((rates[rest] ** 2).sum())
    target = common + noise * (in_full / in_avg if in_avg > 0 else 0.0)
    spread = float(np.var(d))
    k = min(1.0, math.sqrt(target / spread)) if spread > 0 else 0.0
    out: npt.NDArray[np.float64] = mean + k * d
    return out


def _evaluations(tried: dict[tuple[int, int], float]) -> list[tuple[int, int, float]]:
    return [(n, s, p) for (n, s), p in sorted(tried.items())]
