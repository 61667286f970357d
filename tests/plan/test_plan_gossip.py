# The gossip plan's model against the deterministic SWIM simulation, and its bandwidth arithmetic.
from __future__ import annotations

import statistics

from pyro_core.memberlist import wire
from pyro_core.memberlist.simulation import Simulation
from pyro_core.plan.gossip import GossipSettings, plan_gossip, push_gossip_trials, retransmit_limit

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
    plan = plan_gossip(N, GossipSettings(), update_bytes=700, ring_state_bytes=10_000, seed=1, trials=300)
    assert plan.all_members_median_s is not None
    assert 0.5 * plan.all_members_median_s <= simulated <= 2.0 * plan.all_members_median_s
    assert simulated <= plan.serf_model_s


def test_monte_carlo_all_members_time_grows_with_the_cluster() -> None:
    small = [t for t in push_gossip_trials(10, transmit_limit=None, trials=200, seed=1, target=1.0) if t]
    large = [t for t in push_gossip_trials(300, transmit_limit=None, trials=100, seed=1, target=1.0) if t]
    assert statistics.median(small) < statistics.median(large)


def test_gossip_bandwidth_is_changes_times_retransmits_times_bytes() -> None:
    s = GossipSettings(heartbeat_period=10.0, retransmit_mult=3)
    plan = plan_gossip(100, s, update_bytes=500, ring_state_bytes=0, trials=0)
    assert plan.retransmit_limit == retransmit_limit(100, 3) == 9
    assert plan.ring_changes_per_s == 10.0
    assert plan.gossip_bytes_per_s == 10.0 * 9 * 500
    assert plan.gossip_ceiling_bytes_per_s == 3 * 1400 / 0.2
    assert plan.heal_within_s == 30.0 * 3  # push/pull stretched: ceil(log2(100) - 5) + 1 = 3
    assert (
        plan.total_bytes_per_s
        == plan.gossip_bytes_per_s + plan.probe_bytes_per_s + plan.push_pull_bytes_per_s
    )
