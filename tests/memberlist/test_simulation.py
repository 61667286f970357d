# The SWIM core under a deterministic simulation: many members on a virtual clock over a seeded
# lossy network. Convergence, failure detection within the suspicion bounds, no false death for a
# slow member, refutation after a partition heals, graceful leave, determinism, hostile input.
from __future__ import annotations

import random

import pytest

from pyro_core.memberlist import wire
from pyro_core.memberlist.config import default_lan_config
from pyro_core.memberlist.simulation import Faults, Simulation
from pyro_core.memberlist.state import Memberlist, NodeStateType, SendPacket
from pyro_core.memberlist.suspicion import suspicion_timeout

S = NodeStateType


def cluster(n: int, seed: int = 1, faults: Faults | None = None) -> Simulation:
    sim = Simulation(seed=seed, faults=faults)
    sim.add_member("n0")
    for i in range(1, n):
        sim.add_member(f"n{i}", join=[f"n{sim.rng.randrange(i)}"])
    return sim


def converge(sim: Simulation, limit: float) -> float:
    return sim.run_while(lambda: not sim.all_see_alive(), limit=sim.now + limit)


def test_members_join_through_one_seed_and_converge() -> None:
    sim = Simulation(seed=3)
    sim.add_member("seed")
    for i in range(9):
        sim.add_member(f"m{i}", join=["seed"])
    converge(sim, 10)
    assert sim.all_see_alive()
    assert all(s.member.num_members() == 10 for s in sim.members.values())


@pytest.mark.parametrize(("n", "loss"), [(30, 0.0), (100, 0.10)])
def test_cluster_converges_over_a_lossy_duplicating_network(n: int, loss: float) -> None:
    sim = cluster(n, seed=n, faults=Faults(loss=loss, duplicate=0.05))
    converge(sim, 60)
    assert sim.all_see_alive()


def test_killed_member_is_declared_dead_within_the_suspicion_bounds() -> None:
    sim = cluster(20, seed=5)
    converge(sim, 20)
    sim.run_until(sim.now + 5)
    cfg = default_lan_config("x")
    n = 20
    min_timeout = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
    max_timeout = cfg.suspicion_max_timeout_mult * min_timeout
    killed_at = sim.now
    sim.kill("n7")
    first_suspect = sim.run_while(lambda: sim.fraction_seeing("n7", [S.SUSPECT, S.DEAD]) == 0, killed_at + 60)
    dead_somewhere = sim.run_while(lambda: sim.fraction_seeing("n7", [S.DEAD]) == 0, killed_at + 120)
    everywhere = sim.run_while(lambda: sim.fraction_seeing("n7", [S.DEAD]) < 1.0, killed_at + 120)
    # Detection: a probe cycle (probe interval plus a full probe) to suspect, then between the
    # shortest (all confirmations) and longest (none) suspicion timeouts to declare it dead.
    assert first_suspect - killed_at <= 3 * cfg.probe_interval
    assert min_timeout - 0.01 <= dead_somewhere - first_suspect <= max_timeout + cfg.probe_interval
    assert everywhere - killed_at <= 3 * cfg.probe_interval + max_timeout + 2


def test_slow_but_alive_member_is_not_declared_dead() -> None:
    sim = cluster(15, seed=6)
    converge(sim, 20)
    sim.run_until(sim.now + 3)
    # A stall shorter than the minimum suspicion timeout: it may be suspected, then it refutes.
    cfg = default_lan_config("x")
    stall = suspicion_timeout(cfg.suspicion_mult, 15, cfg.probe_interval) * 0.8
    sim.slow_down("n3", until=sim.now + stall)
    end = sim.now + 30
    saw_dead = False
    while sim.now < end:
        sim.run_until(sim.now + 0.1)
        saw_dead = saw_dead or sim.fraction_seeing("n3", [S.DEAD]) > 0
    assert not saw_dead
    assert sim.all_see_alive()
    assert sim.members["n3"].member.local_node.incarnation >= 1


def test_partitioned_members_refute_and_rejoin_after_heal() -> None:
    cfg = lambda name: default_lan_config(name, push_pull_interval=10.0)  # noqa: E731
    sim = Simulation(seed=7, config_factory=cfg)
    names = [f"n{i}" for i in range(10)]
    sim.add_member(names[0])
    for i, name in enumerate(names[1:], start=1):
        sim.add_member(name, join=[names[i - 1]])
    converge(sim, 20)
    left, right = names[:5], names[5:]
    sim.partition(left, right)
    sim.run_while(lambda: not all(sim.view(a, b) == S.DEAD for a in left for b in right), sim.now + 120)
    assert all(sim.view(a, b) == S.DEAD for a in left for b in right)
    incarnations = {n: sim.members[n].member.local_node.incarnation for n in names}
    sim.heal()
    converge(sim, 120)
    assert sim.all_see_alive()
    assert any(sim.members[n].member.local_node.incarnation > incarnations[n] for n in names)  # refuted


def test_graceful_leave_is_seen_as_left_not_dead() -> None:
    sim = cluster(8, seed=8)
    converge(sim, 20)
    leaver = sim.members["n4"].member
    leaver.leave(sim.now)
    sim._after(sim.members["n4"])
    sim.run_while(lambda: not leaver.leave_done, sim.now + 20)
    assert leaver.leave_done
    sim.kill("n4")
    sim.run_while(lambda: sim.fraction_seeing("n4", [S.LEFT]) < 1.0, sim.now + 30)
    assert sim.fraction_seeing("n4", [S.LEFT]) == 1.0


def test_the_same_seed_gives_the_same_history() -> None:
    def history(seed: int) -> list[tuple[str, str, str]]:
        sim = cluster(12, seed=seed, faults=Faults(loss=0.05))
        sim.run_until(10)
        sim.kill("n3")
        sim.run_until(40)
        return [(s.name, e.kind, e.node) for s in sim.members.values() for e in s.events]

    assert history(11) == history(11)
    assert history(11) != history(12)


def test_a_false_suspicion_about_myself_is_refuted_with_a_higher_incarnation() -> None:
    me = Memberlist(default_lan_config("me"), addr="127.0.0.1", port=7946, now=0, rng=random.Random(1))
    other = Memberlist(default_lan_config("other"), addr="127.0.0.2", port=7946, now=0, rng=random.Random(2))
    me.merge_remote_state(wire.decode_push_pull(other.push_pull_request(True)).states, b"", True, 0.1)
    before = me.local_node.incarnation
    packet = wire.encode_packet(
        wire.encode_message(wire.Suspect(incarnation=before, node="me", from_="other"))
    )
    me.receive_packet(packet, ("127.0.0.2", 7946), 1.0)
    assert me.local_node.state == S.ALIVE and me.local_node.incarnation == before + 1
    assert me.stats.refutes == 1


def test_probing_a_suspect_member_sends_the_suspicion_along_buddy_system() -> None:
    me = Memberlist(default_lan_config("me"), addr="127.0.0.1", port=7946, now=0, rng=random.Random(1))
    other = Memberlist(default_lan_config("other"), addr="127.0.0.2", port=7946, now=0, rng=random.Random(2))
    me.merge_remote_state(wire.decode_push_pull(other.push_pull_request(True)).states, b"", True, 0.0)
    me.receive_packet(
        wire.encode_packet(wire.encode_message(wire.Suspect(incarnation=1, node="other", from_="x"))),
        ("127.0.0.3", 7946),
        0.1,
    )
    me.take_outputs()
    now = 0.2
    while True:  # run until the probe of "other" goes out
        now = max(now, me.next_deadline())
        me.handle_timer(now)
        pings = [o for o in me.take_outputs() if isinstance(o, SendPacket) and o.addr == ("127.0.0.2", 7946)]
        if pings:
            break
    msgs = wire.decode_packet(pings[0].data)
    assert any(isinstance(m, wire.Ping) for m in msgs)
    assert any(isinstance(m, wire.Suspect) and m.node == "other" for m in msgs)


def test_hostile_packets_are_counted_and_change_nothing() -> None:
    sim = cluster(5, seed=9)
    converge(sim, 10)
    target = sim.members["n2"].member
    before = [(n.name, n.state, n.incarnation) for n in target.all_nodes()]
    rng = random.Random(4)
    valid = wire.encode_packet(
        wire.encode_message(wire.Alive(incarnation=9, node="x", addr=b"\x7f\0\0\x09", port=1))
    )
    junk = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(300)]
    junk += [valid[:i] for i in range(len(valid))] + [b"\x07\xff" + b"\x00" * 3, b"\xf4\x05abc", b"\x0c" * 9]
    bad_before = target.stats.bad_packets
    for data in junk:
        target.receive_packet(data, ("10.9.9.9", 1), sim.now)
    assert [(n.name, n.state, n.incarnation) for n in target.all_nodes()] == before
    assert target.stats.bad_packets - bad_before >= len(junk) - 10  # a few random buffers may decode


def test_incompatible_protocol_versions_are_refused_on_push_pull() -> None:
    me = Memberlist(default_lan_config("me"), addr="127.0.0.1", port=7946, now=0, rng=random.Random(1))
    alien = wire.PushNodeState(
        name="alien",
        addr=b"\x7f\0\0\x05",
        port=1,
        meta=b"",
        incarnation=1,
        state=0,
        vsn=bytes([6, 7, 6, 0, 0, 0]),
    )
    with pytest.raises(ValueError, match="incompatible"):
        me.merge_remote_state([alien], b"", False, 1.0)
    assert me.node("alien") is None


def test_alive_with_an_impossible_protocol_range_is_ignored() -> None:
    me = Memberlist(default_lan_config("me"), addr="127.0.0.1", port=7946, now=0, rng=random.Random(1))
    for vsn in (bytes([0, 5, 2, 0, 0, 0]), bytes([3, 2, 2, 0, 0, 0]), bytes([1, 0, 1, 0, 0, 0])):
        msg = wire.Alive(incarnation=1, node="bad", addr=b"\x7f\0\0\x05", port=1, vsn=vsn)
        me.receive_packet(wire.encode_packet(wire.encode_message(msg)), ("127.0.0.5", 1), 1.0)
    assert me.node("bad") is None


def test_retransmit_limit_and_push_pull_scale_follow_memberlist() -> None:
    sim = cluster(40, seed=10)
    member = sim.members["n0"].member
    converge(sim, 30)
    # 40 nodes: push/pull stretched by ceil(log2(40) - 5) + 1 = 2
    assert member._push_pull_interval() == pytest.approx(member.config.push_pull_interval * 2)
    # each broadcast goes out retransmit_mult × ceil(log10(n + 1)) = 4 × 2 times, then retires
    from pyro_core.memberlist.queue import retransmit_limit

    assert retransmit_limit(member.config.retransmit_mult, len(member.all_nodes())) == 8
    member._broadcast("probe-node", b"x" * 10)
    sent = 0
    while member.queued_broadcasts():
        sent += len([m for m in member._get_broadcasts(2, 1400) if m == b"x" * 10])
    assert sent == 8


def test_dead_node_name_is_reclaimed_by_a_new_address_only_after_the_reclaim_time() -> None:
    cfg = default_lan_config("me", dead_node_reclaim_time=10.0)
    me = Memberlist(cfg, addr="127.0.0.1", port=7946, now=0, rng=random.Random(1))

    def alive(addr: bytes, inc: int, now: float) -> None:
        msg = wire.Alive(incarnation=inc, node="other", addr=addr, port=7946, vsn=bytes([1, 5, 2, 0, 0, 0]))
        me.receive_packet(wire.encode_packet(wire.encode_message(msg)), ("127.0.0.9", 7946), now)

    alive(b"\x7f\x00\x00\x02", 1, 1.0)
    me.receive_packet(
        wire.encode_packet(wire.encode_message(wire.Dead(incarnation=1, node="other", from_="me"))),
        ("127.0.0.9", 7946),
        2.0,
    )
    assert me.node("other").state == S.DEAD
    alive(b"\x7f\x00\x00\x03", 2, 5.0)  # a new address too soon: a conflict, ignored
    assert me.node("other").addr == b"\x7f\x00\x00\x02" and me.stats.messages.get("conflict") == 1
    alive(b"\x7f\x00\x00\x03", 2, 20.0)  # after the reclaim time: the name moves
    assert me.node("other").addr == b"\x7f\x00\x00\x03" and me.node("other").state == S.ALIVE


def test_hundred_members_converge_on_a_ring_change_and_detect_a_crash() -> None:
    from pyro_core.kv.store import RING_DESC_CODEC, KVStore
    from pyro_core.ring.model import InstanceDesc, RingDesc

    epoch = 1_700_000_000.0
    holder: dict[str, Simulation] = {}
    stores: dict[str, KVStore[RingDesc]] = {}

    def make_store(name: str) -> KVStore[RingDesc]:
        store: KVStore[RingDesc] = KVStore(
            [RING_DESC_CODEC],
            retransmit_mult=4,
            num_members=lambda: max(1, len(holder["sim"].members)),
            clock=lambda: epoch + holder["sim"].now,
        )
        stores[name] = store
        return store

    sim = Simulation(seed=21, faults=Faults(loss=0.02), delegate_factory=make_store)
    holder["sim"] = sim
    sim.add_member("n0")
    for i in range(1, 100):
        sim.add_member(f"n{i}", join=[f"n{sim.rng.randrange(i)}"])
    converge(sim, 60)
    assert sim.all_see_alive()

    def add_instance(desc: RingDesc | None) -> tuple[RingDesc, bool]:
        desc = desc or RingDesc()
        desc.instances["ingester-x"] = InstanceDesc(
            id="ingester-x", tokens=[1, 2, 3], timestamp=int(epoch + sim.now)
        )
        return desc, True

    changed_at = sim.now
    assert stores["n17"].cas("collectors/ring", add_instance, epoch + sim.now).ok
    sim.touch("n17")
    sim.run_while(
        lambda: (
            not all(
                (d := s.get("collectors/ring")) is not None and "ingester-x" in d for s in stores.values()
            )
        ),
        sim.now + 30,
    )
    assert all("ingester-x" in (s.get("collectors/ring") or RingDesc()) for s in stores.values())
    assert sim.now - changed_at < 5  # gossip, not a 30 s push/pull, carried it

    killed_at = sim.now
    sim.kill("n42")
    cfg = default_lan_config("x")
    max_timeout = cfg.suspicion_max_timeout_mult * suspicion_timeout(
        cfg.suspicion_mult, 100, cfg.probe_interval
    )
    sim.run_while(
        lambda: sim.fraction_seeing("n42", [S.DEAD]) < 1.0,
        killed_at + 3 * cfg.probe_interval + max_timeout + 5,
    )
    assert sim.fraction_seeing("n42", [S.DEAD]) == 1.0
