# Gossip dissemination for capacity planning: how long a ring change takes to reach every member and
# what gossip costs each member, at given memberlist settings.
# Owns: Serf's published convergence figures (spec memberlist.md §4), a closed-form logistic model that
# reproduces them (``serf_convergence_time``), a first-principles discrete epidemic model of
# memberlist-style push gossip with and without the retransmit limit (``epidemic_time``), a seeded Monte
# Carlo of that push process (``push_gossip_trials``), and the per-member plan built on them
# (``plan_gossip``: convergence times, retransmit budget, bandwidth against the gossip ceiling). Written
# from the published descriptions; nothing is copied from Serf or memberlist. bench/gossip_model.py
# re-exports the models for the gossip benchmarks; tests/plan checks them against
# pyro_core.memberlist.simulation.
# Must not know: sockets, clocks, the SWIM state machine (math and a seeded Monte Carlo only; seeds are
# arguments, no global random).
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
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "PUBLISHED",
    "GossipPlan",
    "GossipSettings",
    "epidemic_final_reach",
    "epidemic_time",
    "model_vs_published",
    "plan_gossip",
    "push_gossip_trials",
    "push_pull_interval",
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


# -- the plan: memberlist settings in, convergence and per-member bandwidth out ------------------------
# Bytes of one probe packet (ping or ack with its compound header), as the simulation measured them
# (bench/RESULTS.md, "idle load": 45 B per packet); a member sends a ping and answers one per probe
# interval on average.
PROBE_PACKET_BYTES = 45
# Bytes of one member's entry in a push/pull state (name, address, incarnation, state, meta), as the
# simulation measured them (1,969 B for 30 members).
NODE_STATE_BYTES = 66


@dataclass(frozen=True, slots=True)
class GossipSettings:
    """The memberlist settings that decide dissemination (dskit's defaults)."""

    interval: float = 0.2  # -memberlist.gossip-interval
    nodes: int = 3  # -memberlist.gossip-nodes (fanout)
    retransmit_mult: int = 4  # -memberlist.retransmit-factor
    packet_size: int = 1400  # memberlist UDPBufferSize: the most a gossip packet carries
    probe_interval: float = 1.0
    push_pull_interval: float = 30.0  # -memberlist.pullpush-interval
    loss: float = 0.0  # packet loss to plan for
    heartbeat_period: float = 5.0  # -ingester.heartbeat-period: every heartbeat is a ring change

    def check(self) -> list[str]:
        """What is wrong with these settings (empty when they are usable)."""
        errors = []
        for name in ("interval", "probe_interval", "push_pull_interval", "heartbeat_period"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                errors.append(f"gossip {name} must be a positive number of seconds, got {value!r}")
        for name in ("nodes", "retransmit_mult", "packet_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors.append(f"gossip {name} must be a positive integer, got {value!r}")
        if not (isinstance(self.loss, (int, float)) and 0.0 <= self.loss < 1.0):
            errors.append(f"gossip loss must be a fraction in [0, 1), got {self.loss!r}")
        return errors


def push_pull_interval(n: int, interval: float) -> float:
    """memberlist's push/pull interval stretched for large clusters (pushPullScale): × (ceil(log2(n) −
    log2(32)) + 1) above 32 members."""
    if n <= 32:
        return interval
    return interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


@dataclass(frozen=True, slots=True)
class GossipPlan:
    nodes: int
    retransmit_limit: int
    # time for one ring change to reach members (seconds)
    serf_model_s: float  # Serf's published model, 99.99% of members
    mean_field_s: float  # discrete push model with the retransmit limit, 99.99% (inf: stops short)
    mean_field_reach: float  # fraction the push gossip ever reaches in the mean field
    all_members_median_s: float | None  # Monte Carlo (per-member tick phases): every member informed
    all_members_p99_s: float | None  # None: more than 1% of trials stop short
    stop_short_share: float  # trials where gossip alone missed a member (push/pull heals it)
    heal_within_s: float  # the scaled push/pull interval: the bound for a member gossip missed
    trials: int
    # per-member bandwidth (bytes per second sent)
    update_bytes: int  # one ring change as gossiped (dskit KV broadcast of one instance)
    state_bytes: int  # one push/pull state: member list + the whole ring
    ring_changes_per_s: float  # heartbeats of every instance
    gossip_bytes_per_s: float  # ring changes × retransmit limit × update bytes
    gossip_ceiling_bytes_per_s: float  # gossip nodes × packet size / interval
    gossip_utilisation: float  # demand ÷ ceiling; > 1: the broadcast queue grows without bound
    probe_bytes_per_s: float
    push_pull_bytes_per_s: float
    total_bytes_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def plan_gossip(
    n: int,
    settings: GossipSettings,
    update_bytes: int,
    ring_state_bytes: int,
    *,
    seed: int = 0,
    trials: int = 100,
) -> GossipPlan:
    """Convergence and bandwidth of a cluster of ``n`` members gossiping the ring at ``settings``.

    ``update_bytes``: one ring change as a broadcast; ``ring_state_bytes``: the whole ring as pushed and
    pulled. Every member re-broadcasts each change it learns (dskit's KV does), ``retransmit_limit``
    times, so each sends changes × limit × bytes per second."""
    s = settings
    limit = retransmit_limit(n, s.retransmit_mult)
    serf = serf_convergence_time(n, s.nodes, s.interval, s.loss)
    mean_field = epidemic_time(n, s.nodes, s.interval, s.loss, transmit_limit=limit)
    reach = epidemic_final_reach(n, s.nodes, s.loss, transmit_limit=limit)
    if n > 1 and trials > 0:
        times = push_gossip_trials(
            n, s.nodes, s.interval, s.loss, limit, staggered=True, trials=trials, seed=seed, target=1.0
        )
        done = [t for t in times if t is not None]
        stop_short = 1.0 - len(done) / len(times)
        median = _nearest_rank(done, 0.5) if done else None
        p99 = _nearest_rank(done, 0.99) if stop_short <= 0.01 and done else None
    else:
        stop_short, median, p99 = 0.0, 0.0, 0.0
    heal = push_pull_interval(n, s.push_pull_interval)
    changes = n / s.heartbeat_period
    gossip = changes * limit * update_bytes
    ceiling = s.nodes * s.packet_size / s.interval
    state = n * NODE_STATE_BYTES + ring_state_bytes
    probe = 2 * PROBE_PACKET_BYTES / s.probe_interval
    push_pull = 2 * state / heal if n > 1 else 0.0  # one initiated, one answered per interval
    return GossipPlan(
        nodes=n,
        retransmit_limit=limit,
        serf_model_s=serf,
        mean_field_s=mean_field,
        mean_field_reach=reach,
        all_members_median_s=median,
        all_members_p99_s=p99,
        stop_short_share=stop_short,
        heal_within_s=heal,
        trials=trials,
        update_bytes=update_bytes,
        state_bytes=state,
        ring_changes_per_s=changes,
        gossip_bytes_per_s=gossip,
        gossip_ceiling_bytes_per_s=ceiling,
        gossip_utilisation=gossip / ceiling,
        probe_bytes_per_s=probe,
        push_pull_bytes_per_s=push_pull,
        total_bytes_per_s=gossip + probe + push_pull,
    )
