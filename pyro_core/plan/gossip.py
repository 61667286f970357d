# Gossip dissemination for capacity planning: how long a ring change takes to reach every member and
# what gossip costs each member, at given memberlist settings.
# Owns: Serf's published convergence figures (spec memberlist.md §4), a closed-form logistic model that
# reproduces them (``serf_convergence_time``), a first-principles discrete epidemic model of
# memberlist-style push gossip with and without the retransmit limit (``epidemic_time``), a seeded Monte
# Carlo of that push process (``push_gossip_trials``), and the per-member plan built on them
# (``plan_gossip``: convergence times, and the ring-delta bandwidth model below: offered load, packet
# capacity, utilisation, and what saturation costs as heartbeat lag). Written from the published
# descriptions and this repository's memberlist / KV code; nothing is copied from Serf or memberlist.
# bench/gossip_model.py re-exports the models for the gossip benchmarks; tests/plan checks them against
# pyro_core.memberlist.simulation and, for bandwidth, against real KV stores heartbeating through it
# (pyro_core.plan.gossip_sim).
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
# Ring deltas: offered load, capacity, saturation (``plan_gossip``)
# ----------------------------------------------------------------
# Every instance heartbeats every P seconds as a CAS on the ring (pyro_core/kv/lifecycler.py); the
# store's local_cas merge returns the changed instance as the delta, the whole record with all its
# tokens (pyro_core/ring/merge.py), so a heartbeat's delta is as big as a join's: d ≈ 730 B for 128
# tokens (protobuf varints of random tokens; snappy and the packet's LZW cannot shrink them). Every
# member queues each change once (its own in the local queue, sent first; others' as forwarded gossip)
# and sends it up to L = mult · ceil(log10(n + 1)) times. Per member and second:
#
#     offered   O = (n / P) · L deltas,  O · d bytes
#     slots     S = g · k / T + 2 · k_p / T_probe    k = floor((packet − 2) / (d + 3)) deltas per gossip
#                                                    packet (g of them per interval T), k_p on the ping
#                                                    and ack a member sends per probe interval
#     ceiling   g · packet / T bytes (raw), S · d bytes (whole deltas only)
#     sent      min(O, S) deltas;   utilisation O / S
#
# Above 1 the queue does not grow: a newer delta of the same key that covers a queued one's instances
# invalidates it (pyro_core/kv/store.py), so a member holds at most one delta per instance, and the
# queue sends the fewest-sent first. Bandwidth stays at the capacity and each change gets fewer sends:
# per period the writer sends its own L times, every other member forwards it F = min(L, (S·P − L) /
# (n − 1)) times. The share s of members that gossip then never brings it to solves s = exp(−(1 − p) ·
# (L/(n − 1) + F · (1 − s))) (an SIR final size); they get a later heartbeat (the delta always carries
# the whole record, so it repairs a missed join too) or a push/pull. The cost of saturation is lag, not
# bandwidth: see ``plan_gossip`` for the mean and p99 heartbeat lag. Push/pull adds 2 · state / the
# scaled interval (one initiated, one answered), state = n · 66 B of members + the KV store's ring.
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
    transmit_limit: float | None = None,
    *,
    origin_limit: int | None = None,
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
    piggybacking, no anti-entropy: the protocol's dissemination alone. ``origin_limit``: node 0's own
    budget when it differs (a KV store sends its own changes first, the full limit); a fractional
    ``transmit_limit`` gives each newly informed node its floor or ceiling at random, averaging it."""
    rng = random.Random(seed)
    whole = transmit_limit is None or float(transmit_limit).is_integer()

    def new_budget() -> float:
        if transmit_limit is None:
            return math.inf
        if whole:
            return transmit_limit
        low = math.floor(transmit_limit)
        return low + (rng.random() < transmit_limit - low)

    need = math.ceil(target * (n - 1) - _EPS)
    out: list[float | None] = []
    for _ in range(trials):
        # each node's own tick phase, or one phase for the whole cluster
        phase = [rng.random() * interval for _ in range(n)] if staggered else [rng.random() * interval] * n
        informed_at: dict[int, float] = {0: 0.0}
        budget: dict[int, float] = {0: new_budget() if origin_limit is None else origin_limit}
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
                    budget[j] = new_budget()
                    after = arrives - phase[j]
                    heapq.heappush(ticks, (phase[j] + (math.floor(after / interval) + 1) * interval, j))
                elif arrives < informed_at[j]:
                    informed_at[j] = arrives
            if budget[i] >= 1:
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
# memberlist's packet framing (pyro_core/memberlist/state.py): a compound packet's header (type byte +
# part count), each part's u16 length, and the type byte a KV message gets as a user message. A ring
# delta of d bytes therefore takes d + 3 bytes of a packet's budget.
COMPOUND_HEADER_OVERHEAD = 2
PER_MESSAGE_OVERHEAD = 2 + 1
# Probe packets (ping, ack) piggyback broadcasts in what they leave of a packet.
PROBE_MESSAGE_BYTES = 40
# Share of a member's copies of heartbeats the p99 heartbeat lag is read at.
_LAG_QUANTILE = 0.99


@dataclass(frozen=True, slots=True)
class GossipSettings:
    """The memberlist settings that decide dissemination (dskit's defaults)."""

    interval: float = 0.2  # -memberlist.gossip-interval
    nodes: int = 3  # -memberlist.gossip-nodes (fanout)
    retransmit_mult: int = 4  # -memberlist.retransmit-factor
    packet_size: int = 1400  # memberlist UDPBufferSize: the most a gossip packet carries
    probe_interval: float = 5.0  # dskit fixes memberlist's probe interval at 5 s
    push_pull_interval: float = 30.0  # -memberlist.pullpush-interval
    loss: float = 0.0  # packet loss to plan for
    heartbeat_period: float = 5.0  # -ingester.heartbeat-period: every heartbeat is a ring change
    heartbeat_timeout: float = 60.0  # -ingester.heartbeat-timeout: an older heartbeat is unhealthy

    def check(self) -> list[str]:
        """What is wrong with these settings (empty when they are usable)."""
        errors = []
        seconds = (
            "interval",
            "probe_interval",
            "push_pull_interval",
            "heartbeat_period",
            "heartbeat_timeout",
        )
        for name in seconds:
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


def deltas_per_packet(settings: GossipSettings, delta_bytes: int, *, probe: bool = False) -> int:
    """How many ring deltas of ``delta_bytes`` one gossip packet (or, with ``probe``, one ping or ack)
    carries: the packet size less the compound header (and the probe message), in slots of delta + 3."""
    budget = settings.packet_size - COMPOUND_HEADER_OVERHEAD - (PROBE_MESSAGE_BYTES if probe else 0)
    return max(0, budget // (delta_bytes + PER_MESSAGE_OVERHEAD))


def delta_slots_per_s(settings: GossipSettings, delta_bytes: int) -> float:
    """Ring deltas one member can send per second: gossip_nodes packets per gossip interval, and the two
    probe packets (its ping, the ack it answers) per probe interval, each carrying what fits."""
    s = settings
    return (
        s.nodes * deltas_per_packet(s, delta_bytes) / s.interval
        + 2 * deltas_per_packet(s, delta_bytes, probe=True) / s.probe_interval
    )


def gossip_miss_share(n: int, own_sends: float, forwarded_sends: float, loss: float = 0.0) -> float:
    """Mean-field share s of the other n − 1 members that gossip never brings one ring change to, when
    its writer sends it ``own_sends`` times and every member that learns it forwards it
    ``forwarded_sends`` times to random peers (an SIR epidemic's final size):
    s = exp(−(1 − p) · (own / (n − 1) + forwarded · (1 − s)))."""
    if n <= 1:
        return 0.0
    a = (1.0 - loss) * own_sends / (n - 1)
    b = (1.0 - loss) * forwarded_sends
    s = 0.0
    for _ in range(10_000):  # a contraction near the root for b < 1; monotone from 0 otherwise
        nxt = math.exp(-(a + b * (1.0 - s)))
        if abs(nxt - s) < 1e-12:
            return nxt
        s = nxt
    return s


@dataclass(frozen=True, slots=True)
class GossipPlan:
    nodes: int
    retransmit_limit: int
    # time for one ring change to reach members (seconds)
    serf_model_s: float  # Serf's published model, 99.99% of members
    mean_field_s: float  # discrete push model with the transmit budget, 99.99% (inf: stops short)
    mean_field_reach: float  # fraction the push gossip ever reaches in the mean field
    all_members_median_s: float | None  # Monte Carlo (per-member tick phases): every member informed
    all_members_p99_s: float | None  # None: more than 1% of trials stop short
    stop_short_share: float  # trials where gossip alone missed a member (push/pull heals it)
    heal_within_s: float  # the scaled push/pull interval: the bound for a member gossip missed
    trials: int  # Monte Carlo trials run (capped for large clusters)
    monte_carlo_budget: float  # sends per forwarding member in the Monte Carlo (limit, or fewer)
    # ring deltas (the model; per member, bytes or deltas per second sent)
    update_bytes: int  # one heartbeat delta as the KV store queues it (the instance, tokens included)
    token_update_bytes: int  # one token-changing delta (a join): the same record
    state_bytes: int  # one push/pull state: member list + the whole ring
    ring_changes_per_s: float  # heartbeats of every instance: n / heartbeat period
    offered_deltas_per_s: float  # ring changes × retransmit limit: what the queues ask to send
    offered_bytes_per_s: float  # × update bytes
    deltas_per_packet: int  # ring deltas one gossip packet holds (packet size / (delta + 3))
    delta_slots_per_s: float  # deltas a member can send: nodes × per packet / interval + probes
    gossip_ceiling_bytes_per_s: float  # gossip nodes × packet size / interval (raw)
    gossip_capacity_bytes_per_s: float  # delta slots × update bytes: the ceiling less packing waste
    gossip_utilisation: float  # offered ÷ slots; > 1: changes get fewer sends, not more bandwidth
    gossip_bytes_per_s: float  # ring delta bytes sent: min(offered, capacity)
    own_sends: float  # times a member sends its own heartbeat (local queue first: the limit)
    forwarded_sends: float  # times a member forwards another's heartbeat (what the slots leave)
    gossip_miss_share: float  # share of members gossip never brings a given heartbeat to
    heartbeat_lag_mean_s: float  # how far a member's copy of a heartbeat trails the writer's latest
    heartbeat_lag_p99_s: float
    probe_bytes_per_s: float
    push_pull_bytes_per_s: float  # 2 × state / scaled push/pull interval (initiated and answered)
    total_bytes_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# The Monte Carlo's work (copies sent in all) is capped near this, so 1,000 members plan in a fraction
# of a second: at least 20 trials always run.
_MONTE_CARLO_SENDS = 300_000
_MIN_TRIALS = 20


def plan_gossip(
    n: int,
    settings: GossipSettings,
    update_bytes: int,
    ring_state_bytes: int,
    *,
    token_update_bytes: int | None = None,
    seed: int = 0,
    trials: int = 100,
) -> GossipPlan:
    """Convergence and bandwidth of a cluster of ``n`` members gossiping the ring at ``settings``.

    ``update_bytes``: one heartbeat delta as the KV store queues it; ``ring_state_bytes``: the ring as
    pushed and pulled (the KV store's local state). The model is in this module's header; the
    simulation it is checked against is pyro_core.plan.gossip_sim."""
    s = settings
    limit = retransmit_limit(n, s.retransmit_mult)
    changes = n / s.heartbeat_period
    offered = changes * limit
    per_packet = deltas_per_packet(s, update_bytes)
    slots = delta_slots_per_s(s, update_bytes)
    sent = min(offered, slots)
    # Per heartbeat period a member has slots × period sends: its own heartbeat (local queue, first)
    # takes up to the limit, the n − 1 forwarded heartbeats share the rest, each at most the limit.
    budget = slots * s.heartbeat_period
    own = float(min(limit, budget))
    forwarded = float(min(limit, (budget - own) / (n - 1))) if n > 1 else 0.0
    miss = gossip_miss_share(n, own, forwarded, s.loss) if n > 1 else 0.0
    heal = push_pull_interval(n, s.push_pull_interval)

    serf = serf_convergence_time(n, s.nodes, s.interval, s.loss)
    mean_field_budget = limit if forwarded >= limit else max(1, round(forwarded))
    mean_field = epidemic_time(n, s.nodes, s.interval, s.loss, transmit_limit=mean_field_budget)
    reach = epidemic_final_reach(n, s.nodes, s.loss, transmit_limit=mean_field_budget)
    work = n * max(1.0, forwarded)
    run = min(trials, max(_MIN_TRIALS, int(_MONTE_CARLO_SENDS // work))) if trials > 0 else 0
    median: float | None
    p99: float | None
    typical = s.interval  # mean time for one member to learn a change, when the Monte Carlo cannot say
    if n > 1 and run > 0:
        mc = {
            "n": n,
            "fanout": s.nodes,
            "interval": s.interval,
            "loss": s.loss,
            "transmit_limit": forwarded if forwarded < limit else limit,
            "origin_limit": max(1, math.floor(own)),
            "staggered": True,
            "trials": run,
        }
        times = push_gossip_trials(**mc, seed=seed, target=1.0)  # type: ignore[arg-type]
        done = [t for t in times if t is not None]
        stop_short = 1.0 - len(done) / len(times)
        median = _nearest_rank(done, 0.5) if done else None
        p99 = _nearest_rank(done, 0.99) if stop_short <= 0.01 and done else None
        halves = [t for t in push_gossip_trials(**mc, seed=seed + 1, target=0.5) if t is not None]  # type: ignore[arg-type]
        if halves:
            typical = _nearest_rank(halves, 0.5)
    else:
        stop_short, median, p99 = 0.0, 0.0, 0.0

    # Heartbeat lag, as a member's copy of an instance trails the writer's latest heartbeat (in whole
    # heartbeats of P seconds). A member misses a heartbeat with probability `miss` and then waits for a
    # later one or a push/pull (one initiated, one answered per scaled interval): it stays behind a
    # period with probability m = miss · exp(−2P / heal). It is at least one behind with probability
    # b = m + (1 − m) · τ / P (τ: the typical time to learn a heartbeat that does arrive) and at least
    # k + 1 behind with b · m^k, so the mean lag is P · b / (1 − m) and the p99 is P · (the least k with
    # b · m^k ≤ 1%).
    m = miss * math.exp(-2.0 * s.heartbeat_period / heal) if n > 1 else 0.0
    b = min(1.0, m + (1.0 - m) * typical / s.heartbeat_period) if n > 1 else 0.0
    lag_mean = s.heartbeat_period * b / (1.0 - m) if m < 1.0 else math.inf
    if b <= 1.0 - _LAG_QUANTILE:
        behind = 0
    elif m <= 0.0:
        behind = 1
    elif m >= 1.0:
        behind = -1
    else:
        behind = max(1, math.ceil(math.log((1.0 - _LAG_QUANTILE) / b) / math.log(m) - _EPS))
    lag_p99 = s.heartbeat_period * behind if behind >= 0 else math.inf

    state = n * NODE_STATE_BYTES + ring_state_bytes
    probe = 2 * PROBE_PACKET_BYTES / s.probe_interval
    push_pull = 2 * state / heal if n > 1 else 0.0  # one initiated, one answered per interval
    gossip = sent * update_bytes
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
        trials=run,
        monte_carlo_budget=forwarded if forwarded < limit else float(limit),
        update_bytes=update_bytes,
        token_update_bytes=update_bytes if token_update_bytes is None else token_update_bytes,
        state_bytes=state,
        ring_changes_per_s=changes,
        offered_deltas_per_s=offered,
        offered_bytes_per_s=offered * update_bytes,
        deltas_per_packet=per_packet,
        delta_slots_per_s=slots,
        gossip_ceiling_bytes_per_s=s.nodes * s.packet_size / s.interval,
        gossip_capacity_bytes_per_s=slots * update_bytes,
        gossip_utilisation=offered / slots if slots > 0 else math.inf,
        gossip_bytes_per_s=gossip,
        own_sends=own,
        forwarded_sends=forwarded,
        gossip_miss_share=miss,
        heartbeat_lag_mean_s=lag_mean,
        heartbeat_lag_p99_s=lag_p99,
        probe_bytes_per_s=probe,
        push_pull_bytes_per_s=push_pull,
        total_bytes_per_s=gossip + probe + push_pull,
    )
