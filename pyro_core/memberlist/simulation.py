# A deterministic simulation of many SWIM members on one virtual clock over a seeded lossy network.
# Owns: the event loop of the simulation (packet deliveries, stream exchanges, member timers), the
# network's faults (loss, duplication, delay, partitions, killed members) and convergence probes.
# Used by the tests (convergence, detection, refutation) and the capacity-planning model.
# Must not know: real sockets or clocks: it drives pyro_core.memberlist.state.Memberlist directly.
from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyro_core.memberlist import wire
from pyro_core.memberlist.config import Config, default_lan_config
from pyro_core.memberlist.state import (
    Address,
    Delegate,
    MemberEvent,
    Memberlist,
    NodeStateType,
    OpenPushPull,
    SendPacket,
    TcpPing,
)


@dataclass
class Faults:
    """What the network does to traffic. Probabilities are per packet."""

    loss: float = 0.0
    duplicate: float = 0.0
    min_delay: float = 0.0005
    max_delay: float = 0.002


@dataclass
class SimMember:
    name: str
    address: Address
    member: Memberlist
    alive: bool = True
    slow_until: float = 0.0  # while now < slow_until, the member processes nothing (overloaded)
    events: list[MemberEvent] = field(default_factory=list)


class Simulation:
    """N members, one virtual clock. ``run_until(t)`` advances time event by event."""

    def __init__(
        self,
        seed: int = 0,
        faults: Faults | None = None,
        config_factory: Callable[[str], Config] | None = None,
        delegate_factory: Callable[[str], Delegate] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.now = 0.0
        self.config_factory = config_factory or (lambda name: default_lan_config(name))
        self.delegate_factory = delegate_factory
        self.delegates: dict[str, Delegate] = {}
        self.members: dict[str, SimMember] = {}
        self.by_address: dict[Address, SimMember] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cut: set[frozenset[str]] = set()  # pairs of member names that cannot reach each other
        self.delivered = 0
        self.dropped = 0

    # -- building ------------------------------------------------------------------------------------
    def add_member(self, name: str, join: Iterable[str] = (), config: Config | None = None) -> SimMember:
        index = len(self.members) + 1
        delegate = self.delegate_factory(name) if self.delegate_factory is not None else None
        if delegate is not None:
            self.delegates[name] = delegate
        address = (f"127.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}", 7946)
        member = Memberlist(
            config or self.config_factory(name),
            addr=address[0],
            port=address[1],
            now=self.now,
            rng=random.Random(self.rng.getrandbits(64)),
            delegate=delegate,
        )
        sim = SimMember(name, address, member)
        self.members[name] = sim
        self.by_address[address] = sim
        targets = [self.members[j].address for j in join]
        if targets:
            member.join(targets)
        self._after(sim)
        return sim

    def touch(self, name: str) -> None:
        """Something outside the loop (e.g. a KV change) touched a member: ship its outputs now."""
        self._after(self.members[name])

    def kill(self, name: str) -> None:
        """The member stops dead: no more timers, packets to it vanish (kill -9)."""
        self.members[name].alive = False

    def slow_down(self, name: str, until: float) -> None:
        """The member stalls (GC pause, overload) and drops everything until ``until``."""
        self.members[name].slow_until = until

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        for a in group_a:
            for b in group_b:
                self._cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self._cut.clear()

    def reachable(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self._cut

    # -- the event loop ------------------------------------------------------------------------------
    def _schedule(self, at: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), fn))

    def _after(self, sim: SimMember) -> None:
        """After anything touched a member: ship its outputs and schedule its next timer."""
        if not sim.alive:
            return
        sim.events.extend(sim.member.take_events())
        for out in sim.member.take_outputs():
            if isinstance(out, SendPacket):
                self._send_packet(sim, out)
            elif isinstance(out, OpenPushPull):
                self._push_pull(sim, out)
            elif isinstance(out, TcpPing):
                self._tcp_ping(sim, out)
        deadline = sim.member.next_deadline()
        self._schedule(max(deadline, self.now), self._timer_call(sim, deadline))

    def _timer_call(self, sim: SimMember, deadline: float) -> Callable[[], None]:
        return lambda: self._timer(sim, deadline)

    def _timer(self, sim: SimMember, deadline: float) -> None:
        if not sim.alive or sim.member.next_deadline() != deadline:
            return  # stale: a newer timer was scheduled
        if self.now >= sim.slow_until:
            sim.member.handle_timer(self.now)
        else:
            self._schedule(sim.slow_until, lambda: self._timer_retry(sim))
            return
        self._after(sim)

    def _timer_retry(self, sim: SimMember) -> None:
        if sim.alive:
            sim.member.handle_timer(self.now)
            self._after(sim)

    def _delay(self) -> float:
        return self.rng.uniform(self.faults.min_delay, self.faults.max_delay)

    def _send_packet(self, src: SimMember, out: SendPacket) -> None:
        dst = self.by_address.get(out.addr)
        if dst is None or not self.reachable(src.name, dst.name) or self.rng.random() < self.faults.loss:
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        for _ in range(copies):
            self._schedule(self.now + self._delay(), self._delivery(dst, out.data, src.address))

    def _delivery(self, dst: SimMember, data: bytes, from_addr: Address) -> Callable[[], None]:
        return lambda: self._deliver(dst, data, from_addr)

    def _deliver(self, dst: SimMember, data: bytes, from_addr: Address) -> None:
        if not dst.alive or self.now < dst.slow_until:
            self.dropped += 1
            return
        self.delivered += 1
        dst.member.receive_packet(data, from_addr, self.now)
        self._after(dst)

    def _push_pull(self, src: SimMember, out: OpenPushPull) -> None:
        dst = self.by_address.get(out.addr)
        delay = 2 * self._delay()

        def exchange() -> None:
            if not src.alive:
                return
            if (
                dst is None
                or not dst.alive
                or self.now < dst.slow_until
                or not self.reachable(src.name, dst.name)
            ):
                src.member.push_pull_failed(out.addr, out.join)
                self._after(src)
                return
            request = src.member.push_pull_request(out.join)
            reply = dst.member.push_pull_request(out.join)
            try:
                theirs = wire.decode_push_pull(request)
                ours = wire.decode_push_pull(reply)
                dst.member.merge_remote_state(theirs.states, theirs.user_state, theirs.join, self.now)
                src.member.merge_remote_state(ours.states, ours.user_state, out.join, self.now)
            except ValueError:
                src.member.push_pull_failed(out.addr, out.join)
            self._after(dst)
            self._after(src)

        self._schedule(self.now + delay, exchange)

    def _tcp_ping(self, src: SimMember, out: TcpPing) -> None:
        dst = self.by_address.get(out.addr)
        ok = (
            dst is not None
            and dst.alive
            and self.now >= dst.slow_until
            and self.reachable(src.name, dst.name)
        )
        at = self.now + 2 * self._delay()

        def answer() -> None:
            if src.alive:
                src.member.tcp_ping_result(out.seq_no, ok and at <= out.deadline, self.now)
                self._after(src)

        self._schedule(min(at, out.deadline), answer)

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            at, _, fn = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            fn()
        self.now = max(self.now, t)

    def run_while(self, condition: Callable[[], bool], limit: float, step: float = 0.05) -> float:
        """Advance until ``condition()`` is false or ``limit`` is reached; return the time."""
        while condition() and self.now < limit:
            self.run_until(self.now + step)
        return self.now

    # -- views ------------------------------------------------------------------------------------------
    def view(self, observer: str, subject: str) -> NodeStateType | None:
        node = self.members[observer].member.node(subject)
        return node.state if node is not None else None

    def all_see_alive(self, names: Iterable[str] | None = None) -> bool:
        """Every live member sees every listed member (default: every live member) as alive."""
        live = [s for s in self.members.values() if s.alive]
        subjects = list(names) if names is not None else [s.name for s in live]
        return all(self.view(o.name, n) == NodeStateType.ALIVE for o in live for n in subjects)

    def fraction_seeing(self, subject: str, states: Iterable[NodeStateType]) -> float:
        wanted = set(states)
        live = [s for s in self.members.values() if s.alive and s.name != subject]
        if not live:
            return 1.0
        return sum(1 for s in live if self.view(s.name, subject) in wanted) / len(live)
