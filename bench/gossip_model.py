# Convergence models for gossip dissemination, written for bench/test_bench_gossip.py from their
# published descriptions (nothing here is copied from Serf or memberlist).
# Owns: Serf's published convergence figures (spec memberlist.md §4), a closed-form logistic model
# that reproduces them (``serf_convergence_time``), a first-principles discrete epidemic model of
# memberlist-style push gossip with and without the retransmit limit (``epidemic_time``), and a Monte
# Carlo of that push process (``push_gossip_trials``), so that a simulated pyro-core figure can be put
# beside them. Math and a seeded Monte Carlo only: no pyro-core, no I/O.
#
# Serf's model (``serf_fraction`` / ``serf_convergence_time``)
# ------------------------------------------------------------
# An SI epidemic in continuous time: x(t) is the fraction of n nodes that know the update, x(0) = 1/n,
# and every node that knows it keeps gossiping it forever (no retransmit limit, no anti-entropy):
#
#     dx/dt = r · x · (1 − x),   r = f · (1 − p) / (2 T)
#     x(t)  = 1 / (1 + (n − 1) · e^(−r t))
#     t*(X) = ln((n − 1) · X / (1 − X)) / r            time until a fraction X knows it
#
# with fanout f, gossip interval T, packet loss p. The published figures are the first gossip tick at
# or after t*: T · ceil(t*/T). With r = f(1−p)/(2T) this reproduces all eight published figures exactly
# (30/100/1k/10k nodes: 1.8/2.0/2.2/2.6 s; 10% loss: 2.0 s at 30 and 2.8 s at 10k; 50% loss: 3.4 s and
# 5.0 s; see ``PUBLISHED`` and ``model_vs_published``). The raw push contact rate is f(1−p)/T; the
# published curve corresponds to half of it (for f = 3 and p = 0 that is close to ln(1 + f)/T = 1.39/T,
# the continuous rate of a process that quadruples per round), so Serf's figure is the conservative one.
#
# First-principles discrete model (``epidemic_time``)
# ---------------------------------------------------
# Rounds of length T. In round k every informed node sends the update to f distinct random other nodes;
# each copy is lost with probability p. A node not yet informed misses one copy with probability
# 1 − (1 − p)/(n − 1), so with C copies sent in the round it stays uninformed with probability
# q^C, q = 1 − (1 − p)/(n − 1). Mean field:
#
#     I(k+1) = I(k) + (n − I(k)) · (1 − q^C(k))
#
# Unlimited retransmission (Serf's assumption): C(k) = f · I(k), i.e. x ← x + (1 − x)(1 − q^(f n x)),
# which for large n is x ← x + (1 − x)(1 − e^(−f(1−p)x)). With memberlist's retransmit limit each node
# sends a message L = retransmit_mult · ceil(log10(n + 1)) times in total (n = 30: 8, 100: 12, 1k: 16,
# 10k: 20 with the default mult 4) and then retires it: a node informed in round j sends min(f, L − a·f)
# copies in round j + 1 + a while that is positive (an SIR epidemic: about L/f rounds of gossip each,
# and piggybacks on probes spend the same budget). The spread then stops; the fraction never reached
# is about e^(−L(1−p)) (the solution of 1 − x = e^(−L(1−p)x) near x = 1; the mean field above gives
# 2.1e-4 for n = 30 without loss, 5.0e-4 at 10% loss, 1.6e-2 at 50% loss, so 0.6%, 1.4% and 37% of
# updates miss at least one of the 29 other members). Push/pull anti-entropy (every 30 s, scaled up
# above 32 nodes) heals what gossip missed; no model here includes it.
# The mean field's "99.99%" is of the expected informed count (expected stragglers ≤ 0.0001 n), which
# is stricter than one trial reaching 99.99% of the members (for n ≤ 10,000: all of them): at n = 30
# it is the time that about 99.7% of trials meet, not the median trial.
#
# Monte Carlo of the bare push process (``push_gossip_trials``)
# -------------------------------------------------------------
# The same push process trial by trial, in continuous time, with the retransmit budget and per-copy
# loss and delay: each node gossips at its own ticks (memberlist's per-node tickers start at random
# phases) or, for comparison, at ticks shared by the whole cluster (synchronous rounds). With its own
# phases, a node informed just before its next tick passes the update on at once, so an update crosses
# several hops per interval: that, not the implementation, is why a memberlist-style cluster beats the
# round-based figures. Neither probes (whose pings and acks also carry broadcasts) nor push/pull are
# modelled, so a faithful SWIM core should be at least as fast as the staggered variant when gossip
# does not stop short.
from __future__ import annotations

import heapq
import json
import math
import random
import sys
from typing import Any

__all__ = [
    "PUBLISHED",
    "epidemic_final_reach",
    "epidemic_time",
    "model_vs_published",
    "push_gossip_trials",
    "render_results",
    "retransmit_limit",
    "serf_convergence_time",
    "serf_fraction",
    "serf_rate",
]

# Serf's published time for an update to reach 99.99% of nodes (fanout 3, 200 ms interval),
# keyed by (nodes, packet loss).
PUBLISHED: dict[tuple[int, float], float] = {
    (30, 0.0): 1.8,
    (100, 0.0): 2.0,
    (1000, 0.0): 2.2,
    (10000, 0.0): 2.6,
    (30, 0.1): 2.0,
    (10000, 0.1): 2.8,
    (30, 0.5): 3.4,
    (10000, 0.5): 5.0,
}

_EPS = 1e-9


def retransmit_limit(n: int, retransmit_mult: int = 4) -> int:
    """How many times memberlist sends one broadcast in a cluster of n: mult × ceil(log10(n + 1))."""
    return retransmit_mult * math.ceil(math.log10(n + 1)) if n > 0 else 0


def serf_rate(fanout: int = 3, interval: float = 0.2, loss: float = 0.0) -> float:
    """The logistic growth rate r (per second) of Serf's published curve: f(1 − p) / (2T)."""
    return fanout * (1.0 - loss) / (2.0 * interval)


def serf_fraction(t: float, n: int, fanout: int = 3, interval: float = 0.2, loss: float = 0.0) -> float:
    """Fraction of n nodes that know an update t seconds after one node had it (Serf's curve)."""
    if n <= 1:
        return 1.0
    r = serf_rate(fanout, interval, loss)
    return 1.0 / (1.0 + (n - 1) * math.exp(-r * t))


def serf_convergence_time(
    n: int, fanout: int = 3, interval: float = 0.2, loss: float = 0.0, target: float = 0.9999
) -> float:
    """Seconds until ``target`` of n nodes know an update, rounded up to a whole gossip interval
    (the published figures are read at gossip ticks). ``inf`` when nothing gets through."""
    if n <= 1 or target <= 1.0 / n:
        return 0.0
    if loss >= 1.0 or fanout <= 0:
        return math.inf
    if not 0.0 < target < 1.0:
        raise ValueError("target must be a fraction in (0, 1)")
    r = serf_rate(fanout, interval, loss)
    exact = math.log((n - 1) * target / (1.0 - target)) / r
    return round(math.ceil(exact / interval - _EPS) * interval, 9)


def _epidemic(
    n: int, fanout: int, loss: float, transmit_limit: int | None, target: float, max_rounds: int
) -> tuple[int | None, float]:
    """(first round at which the informed fraction reaches ``target`` or None, final fraction)."""
    if n <= 1:
        return 0, 1.0
    q = 1.0 - (1.0 - loss) / (n - 1)
    informed = 1.0
    # by_age[a]: nodes informed a rounds ago that may still send (only with a transmit limit)
    by_age: list[float] = [1.0]
    for k in range(1, max_rounds + 1):
        if transmit_limit is None:
            copies = fanout * informed
        else:
            copies = sum(
                count * max(0, min(fanout, transmit_limit - age * fanout)) for age, count in enumerate(by_age)
            )
        new = (n - informed) * (1.0 - q**copies)
        informed += new
        if transmit_limit is not None:
            by_age = [new, *by_age]
            while by_age and len(by_age) * fanout >= transmit_limit + fanout:
                by_age.pop()  # the oldest cohort has spent its budget
        if informed / n >= target - _EPS:
            return k, informed / n
        if transmit_limit is not None and new < 1e-12 * n:
            return None, informed / n
    return None, informed / n


def epidemic_time(
    n: int,
    fanout: int = 3,
    interval: float = 0.2,
    loss: float = 0.0,
    target: float = 0.9999,
    transmit_limit: int | None = None,
    max_rounds: int = 10_000,
) -> float:
    """Seconds (whole rounds of ``interval``) until ``target`` of n nodes are informed in the discrete
    mean-field push model; ``transmit_limit`` = None is unlimited retransmission (Serf's assumption),
    else each node sends the update that many times in total. ``inf`` if the spread stops short."""
    rounds, _ = _epidemic(n, fanout, loss, transmit_limit, target, max_rounds)
    return math.inf if rounds is None else rounds * interval


def epidemic_final_reach(
    n: int, fanout: int = 3, loss: float = 0.0, transmit_limit: int | None = None
) -> float:
    """Fraction of n nodes the push gossip ever reaches (1.0 without a transmit limit)."""
    if transmit_limit is None:
        return 1.0
    _, reach = _epidemic(n, fanout, loss, transmit_limit, 2.0, 10_000)
    return reach


def push_gossip_trials(
    n: int,
    fanout: int = 3,
    interval: float = 0.2,
    loss: float = 0.0,
    transmit_limit: int | None = None,
    *,
    staggered: bool = True,
    trials: int = 200,
    seed: int = 0,
    delay: tuple[float, float] = (0.0005, 0.002),
    target: float = 0.9999,
) -> list[float | None]:
    """Monte Carlo of the bare push process, one time per trial: seconds until ``target`` of the other
    n − 1 nodes are informed, or None if the gossip stopped short (retransmit budget spent).

    Node 0 is informed at t = 0. Every informed node gossips at its own ticks, one every ``interval``,
    to ``fanout`` distinct random other nodes (fewer once its ``transmit_limit`` budget runs out); each
    copy is lost with probability ``loss``, else arrives after a uniform ``delay``. ``staggered``: each
    node's ticks have their own random phase, as memberlist's per-node tickers do, so an update can
    cross several hops within one interval. Otherwise every node ticks at the same instants (a random
    phase for the whole cluster): the synchronous rounds the mean-field models assume. No probes, no
    piggybacking, no anti-entropy: the protocol's dissemination alone."""
    rng = random.Random(seed)
    need = math.ceil(target * (n - 1) - _EPS)
    out: list[float | None] = []
    for _ in range(trials):
        # each node's own tick phase, or one phase for the whole cluster
        phase = [rng.random() * interval for _ in range(n)] if staggered else [rng.random() * interval] * n
        informed_at: dict[int, float] = {0: 0.0}
        budget: dict[int, float] = {0: math.inf if transmit_limit is None else transmit_limit}
        ticks: list[tuple[float, int]] = [(phase[0], 0)]
        while ticks:
            t, i = heapq.heappop(ticks)
            if transmit_limit is None and len(informed_at) == n:
                break
            sends = int(min(fanout, budget[i]))
            budget[i] -= sends
            for j in rng.sample(range(n - 1), sends):
                j += j >= i  # skip the sender
                if rng.random() < loss:
                    continue
                arrives = t + rng.uniform(*delay)
                if j not in informed_at:
                    informed_at[j] = arrives
                    budget[j] = math.inf if transmit_limit is None else transmit_limit
                    after = arrives - phase[j]
                    heapq.heappush(ticks, (phase[j] + (math.floor(after / interval) + 1) * interval, j))
                elif arrives < informed_at[j]:
                    informed_at[j] = arrives
            if budget[i] > 0:
                heapq.heappush(ticks, (t + interval, i))
        times = sorted(v for k, v in informed_at.items() if k != 0)
        out.append(times[need - 1] if len(times) >= need else None)
    return out


def model_vs_published() -> list[tuple[int, float, float, float]]:
    """(nodes, loss, published s, serf_convergence_time s) for every published figure."""
    return [(n, p, t, serf_convergence_time(n, loss=p)) for (n, p), t in PUBLISHED.items()]


def _fmt(x: object, unit: str = " s") -> str:
    return "—" if x is None else f"{x:.2f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def render_results(data: dict[str, Any]) -> str:
    """Markdown tables of the "gossip-convergence" group of a pytest-benchmark JSON file (the simulated
    figures bench/test_bench_gossip.py records in extra_info; bench/report.py shows only wall times).
    A p99 of "—" in a Monte Carlo column: more than 1% of its trials stop short of the target (the
    retransmit budget ran out first); pyro-core's p99 then shows how long push/pull took to heal it."""
    rows = [b["extra_info"] for b in data.get("benchmarks", []) if b.get("group") == "gossip-convergence"]
    conv = [r for r in rows if "trials" in r]
    idle = [r for r in rows if "udp_packets_sent_per_member_s" in r]
    out = [
        "| update | nodes | loss | trials | pyro-core median | pyro-core p99 | push MC staggered median / p99"
        " | push MC rounds median / p99 | mean field (unlimited) | Serf model | Serf published | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in conv:
        short = r["mc_push_staggered_stopped_short"]
        short_rounds = r["mc_push_rounds_stopped_short"]
        out.append(
            f"| {r['update']} | {r['nodes']} | {r['loss']:.0%} | {r['trials']} | {_fmt(r.get('sim_median_s'))}"
            f" | {_fmt(r.get('sim_p99_s'))} | {_fmt(r['mc_push_staggered_median_s'])} /"
            f" {_fmt(r['mc_push_staggered_p99_s'])}{f' ({short:.1%} stop short)' if short else ''}"
            f" | {_fmt(r['mc_push_rounds_median_s'])} / {_fmt(r['mc_push_rounds_p99_s'])}"
            f"{f' ({short_rounds:.1%} stop short)' if short_rounds else ''}"
            f" | {_fmt(r['model_push_unlimited_s'])} | {_fmt(r['model_s'])} | {_fmt(r['published_s'])}"
            f" | {_fmt(r['wall_s'])} |"
        )
    if idle:
        out += [
            "",
            "| nodes | UDP packets sent / member / s | UDP bytes sent / member / s | bytes per packet"
            " | push/pull interval | push/pull state (LZW) | push/pull bytes sent / member / s | total B/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in idle:
            out.append(
                f"| {r['nodes']} | {r['udp_packets_sent_per_member_s']} | {r['udp_bytes_sent_per_member_s']}"
                f" | {r['udp_bytes_per_packet']} | {r['push_pull_interval_s']:.0f} s"
                f" | {r['push_pull_state_bytes']} B ({r['push_pull_state_bytes_lzw']} B)"
                f" | {r['push_pull_bytes_sent_per_member_s']} | {r['total_bytes_sent_per_member_s']} |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    # python bench/gossip_model.py                  the model beside Serf's published figures
    # python bench/gossip_model.py results.json     the gossip-convergence tables of a benchmark run
    if len(sys.argv) > 1:
        with open(sys.argv[1]) as fh:
            print(render_results(json.load(fh)))
        sys.exit(0)
    print("nodes  loss  published  model  mean-field (unlimited)  (memberlist limit)  reach")
    for n, p, pub, model in model_vs_published():
        lim = retransmit_limit(n)
        print(
            f"{n:6d} {p:4.0%} {pub:9.1f} {model:6.1f} {epidemic_time(n, loss=p):12.1f}"
            f" {epidemic_time(n, loss=p, transmit_limit=lim):20.1f}"
            f" {epidemic_final_reach(n, loss=p, transmit_limit=lim):.6f}"
        )
