# The gossip plan's model against the deterministic SWIM simulation (bare broadcasts, and the ring
# heartbeated through real KV stores), its bandwidth arithmetic, and the delta sizes it reads.
from __future__ import annotations

import statistics

from pyro_core.memberlist import wire
from pyro_core.memberlist.simulation import Simulation
from pyro_core.plan.gossip import (
    GossipSettings,
    delta_slots_per_s,
    deltas_per_packet,
    plan_gossip,
    push_gossip_trials,
    retransmit_limit,
)
from pyro_core.plan.gossip_sim import simulate_ring_gossip
from pyro_core.plan.load import build_ring_desc
from pyro_core.plan.plan import gossip_sizes

N = 16
POLL = 0.01


def _refute_spread(sim: Simulation, subject: str) -> float | None:
    """Seconds until every other member holds ``subject``'s refutation (a broadcast, as a ring change)."""
    me = sim.members[subject].member
    before = me.local_node.incarnation
    accuser = next(n for n in sim.members if n != subject)
    packet = wire.encode_packet(
        wire.encode_message(wire.Suspect(incarnation=before, node=subject, from_=accuser))
    )
    me.receive_packet(packet, sim.members[accuser].address, sim.now)
    new = me.local_node.incarnation
    t0 = sim.now
    while sim.now < t0 + 10.0:
        sim.run_until(sim.now + POLL)
        others = [s.member for n, s in sim.members.items() if n != subject]
        if all((node := m.node(subject)) is not None and node.incarnation >= new for m in others):
            return sim.now - t0
    return None


def test_gossip_model_agrees_with_the_simulation_within_a_factor_of_two() -> None:
    # Tolerance: the simulated median time for a broadcast to reach all 15 other members lies within
    # [0.5×, 2×] of the model's Monte Carlo median (per-member tick phases, retransmit limit), and below
    # the synchronous-rounds mean field and Serf's model (both conservative: no per-member phases, no
    # piggyback on probes). bench/RESULTS.md shows the same ordering at 30 to 1,000 members.
    sim = Simulation(seed=4)
    sim.add_member("m0")
    for i in range(1, N):
        sim.add_member(f"m{i}", join=["m0"])
    sim.run_while(lambda: not sim.all_see_alive(), limit=120.0, step=0.5)
    assert sim.all_see_alive()
    sim.run_until(sim.now + 20.0)  # let the join broadcasts drain
    times = []
    for i in range(1, 9):
        t = _refute_spread(sim, f"m{i}")
        assert t is not None
        times.append(t)
        sim.run_until(sim.now + 3.0)
    simulated = statistics.median(times)
    # Small deltas: the queue never saturates, so the Monte Carlo gives every change the full limit.
    plan = plan_gossip(N, GossipSettings(), update_bytes=100, ring_state_bytes=10_000, seed=1, trials=300)
    assert plan.all_members_median_s is not None
    assert 0.5 * plan.all_members_median_s <= simulated <= 2.0 * plan.all_members_median_s
    assert simulated <= plan.serf_model_s


def test_monte_carlo_all_members_time_grows_with_the_cluster() -> None:
    small = [t for t in push_gossip_trials(10, transmit_limit=None, trials=200, seed=1, target=1.0) if t]
    large = [t for t in push_gossip_trials(300, transmit_limit=None, trials=100, seed=1, target=1.0) if t]
    assert statistics.median(small) < statistics.median(large)


def test_unsaturated_bandwidth_is_changes_times_retransmits_times_bytes() -> None:
    s = GossipSettings(heartbeat_period=10.0, retransmit_mult=3)
    plan = plan_gossip(100, s, update_bytes=100, ring_state_bytes=0, trials=0)
    assert plan.retransmit_limit == retransmit_limit(100, 3) == 9
    assert plan.ring_changes_per_s == 10.0
    assert plan.deltas_per_packet == (1400 - 2) // 103 == 13
    assert plan.delta_slots_per_s == 3 * 13 / 0.2 + 2 * ((1400 - 2 - 40) // 103) / 5.0
    assert plan.offered_deltas_per_s == 90.0 and plan.gossip_utilisation < 1
    assert plan.gossip_bytes_per_s == plan.offered_bytes_per_s == 10.0 * 9 * 100
    assert plan.own_sends == plan.forwarded_sends == 9
    assert plan.gossip_ceiling_bytes_per_s == 3 * 1400 / 0.2
    assert plan.heal_within_s == 30.0 * 3  # push/pull stretched: ceil(log2(100) - 5) + 1 = 3
    assert (
        plan.total_bytes_per_s
        == plan.gossip_bytes_per_s + plan.probe_bytes_per_s + plan.push_pull_bytes_per_s
    )


def test_saturated_gossip_is_capped_at_capacity_and_sends_each_change_fewer_times() -> None:
    # dskit defaults, 50 members, a 738 B heartbeat delta: one delta per 1,400 B packet, so 15 gossip
    # slots per second plus 0.4 on probes; 10 changes/s × limit 8 = 80 offered.
    s = GossipSettings()
    plan = plan_gossip(50, s, update_bytes=738, ring_state_bytes=33_624, trials=20)
    assert plan.deltas_per_packet == 1 and plan.delta_slots_per_s == 15.4
    assert plan.offered_deltas_per_s == 80.0
    assert round(plan.gossip_utilisation, 3) == round(80 / 15.4, 3)
    assert plan.gossip_bytes_per_s == 15.4 * 738 == plan.gossip_capacity_bytes_per_s
    assert plan.own_sends == 8 and round(plan.forwarded_sends, 6) == round((15.4 * 5 - 8) / 49, 6)
    assert 0.2 < plan.gossip_miss_share < 0.5
    assert plan.heartbeat_lag_p99_s == 15.0  # three heartbeats behind at worst for 99% of copies
    # A delta larger than a packet never goes by gossip: only push/pull carries the ring.
    big = plan_gossip(50, s, update_bytes=1500, ring_state_bytes=60_000, trials=0)
    assert deltas_per_packet(s, 1500) == 0 and delta_slots_per_s(s, 1500) == 0
    assert big.gossip_bytes_per_s == 0 and big.gossip_miss_share == 1.0
    assert big.to_dict()["gossip_utilisation"] is None


def test_ring_deltas_carry_the_whole_instance_tokens_included() -> None:
    desc = build_ring_desc(50, 3, 128, 1)
    heartbeat, token_change, state = gossip_sizes(desc)
    assert heartbeat > 128 * 4  # 128 random uint32 tokens as protobuf varints; snappy cannot shrink them
    assert abs(heartbeat - token_change) <= 8  # a heartbeat's delta is the same record as a join's
    assert 50 * heartbeat * 0.85 < state < 50 * heartbeat * 1.05


def test_bandwidth_model_matches_real_kv_stores_heartbeating_through_the_simulation() -> None:
    # Seeded and on the simulation's virtual clock: 20 members with real KV stores and lifecyclers
    # (128 tokens, heartbeat every 5 s, dskit's memberlist settings) for 30 simulated seconds. The
    # default settings saturate at 20 members (32 deltas/s offered, 15.4 slots). Tolerances: every
    # bandwidth figure within 3% of the model, sends per heartbeat within 3%, the mean heartbeat lag
    # within 2x and its p99 within one heartbeat period (the lag is sampled once a second).
    n, s = 20, GossipSettings()
    sim = simulate_ring_gossip(n, s, seconds=30.0, seed=1)
    plan = plan_gossip(n, s, round(sim.delta_bytes), round(sim.push_pull_state_bytes) - n * 66, seed=1)
    assert plan.gossip_utilisation > 1
    sent = min(plan.offered_deltas_per_s, plan.delta_slots_per_s)

    def close(model: float, simulated: float, tolerance: float = 0.03) -> bool:
        return abs(model - simulated) <= tolerance * simulated

    assert close(sent, sim.deltas_sent_per_s)
    assert close(plan.gossip_bytes_per_s, sim.delta_bytes_per_s)
    assert close(plan.gossip_bytes_per_s + plan.probe_bytes_per_s, sim.udp_bytes_per_s)
    assert close(plan.push_pull_bytes_per_s, sim.push_pull_bytes_per_s)
    assert close(plan.total_bytes_per_s, sim.total_bytes_per_s)
    assert close((plan.own_sends + (n - 1) * plan.forwarded_sends) / n, sim.transmits_per_change)
    assert sim.queue_mean <= 1.2 * n  # invalidation keeps about one delta per instance queued
    assert 0.5 * sim.heartbeat_lag_mean_s <= plan.heartbeat_lag_mean_s <= 2 * sim.heartbeat_lag_mean_s
    assert abs(plan.heartbeat_lag_p99_s - sim.heartbeat_lag_p99_s) <= s.heartbeat_period


def test_unsaturated_cluster_sends_every_change_the_full_limit_in_the_simulation() -> None:
    n, s = 12, GossipSettings(heartbeat_period=15.0)
    sim = simulate_ring_gossip(n, s, seconds=30.0, seed=1)
    plan = plan_gossip(n, s, round(sim.delta_bytes), 0, trials=0)
    assert plan.gossip_utilisation < 1
    assert abs(plan.offered_deltas_per_s - sim.deltas_sent_per_s) <= 0.03 * sim.deltas_sent_per_s
    assert sim.transmits_per_change == plan.retransmit_limit
