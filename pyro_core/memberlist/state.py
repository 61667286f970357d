# The SWIM core of memberlist, sans-I/O: membership, failure detection and dissemination.
# Owns: the node-state rules (alive / suspect / dead / left with incarnations, refutation, reclaim,
# push/pull merge), the probe cycle (ping, indirect pings with nacks, TCP fallback, the buddy
# system, Lifeguard awareness), suspicion timers, gossip and push/pull scheduling, join and leave.
# Everything that happens is a method call with ``now``; everything to do comes out of
# ``take_outputs()`` (packets to send, streams to open) and ``take_events()`` (membership changes).
# ``next_deadline()`` says when ``handle_timer(now)`` must run next. Randomness is a seeded
# ``random.Random``. Must not know: sockets, tasks, clocks, DNS — the trio shell moves those.
from __future__ import annotations

import ipaddress
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from pyro_core.memberlist import wire
from pyro_core.memberlist.awareness import Awareness
from pyro_core.memberlist.config import PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, Config
from pyro_core.memberlist.queue import TransmitLimitedQueue
from pyro_core.memberlist.security import Keyring
from pyro_core.memberlist.suspicion import Suspicion, suspicion_timeout

Address = tuple[str, int]  # (ip or host, port)
log = logging.getLogger("pyro_core.memberlist")

MAX_RELAYS = 1024  # indirect pings relayed at once; more are dropped (they would amplify a flood)
COMPOUND_HEADER_OVERHEAD = 2  # compound type byte + part count
COMPOUND_OVERHEAD = 2  # per part: its u16 length
USER_MSG_OVERHEAD = 1
META_MAX_SIZE = 512


class NodeStateType(IntEnum):
    """memberlist's node states (pushNodeState.State on the wire)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(slots=True)
class NodeState:
    """What this member knows of one node (memberlist nodeState)."""

    name: str
    addr: bytes  # 4 or 16 bytes
    port: int
    meta: bytes
    incarnation: int
    state: NodeStateType
    state_change: float
    vsn: bytes = bytes([PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, 2, 0, 0, 0])

    @property
    def address(self) -> Address:
        return (
            (str(ipaddress.ip_address(self.addr)), self.port)
            if len(self.addr) in (4, 16)
            else ("", self.port)
        )

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) > 1 else 0

    def dead_or_left(self) -> bool:
        return self.state in (NodeStateType.DEAD, NodeStateType.LEFT)


# -- outputs and events ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendPacket:
    """Send ``data`` as one datagram (or one dskit TCP packet) to ``addr``."""

    addr: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class OpenPushPull:
    """Open a stream to ``addr``, send ``Memberlist.push_pull_request(join)``, read the reply and hand it
    to ``merge_remote_state``; report a failure with ``push_pull_failed``."""

    addr: Address
    join: bool


@dataclass(frozen=True, slots=True)
class TcpPing:
    """The TCP fallback of a failed probe: ping ``addr`` over a stream before ``deadline``; report with
    ``tcp_ping_result(seq_no, ok, now)``."""

    addr: Address
    seq_no: int
    node: str
    deadline: float
    data: bytes  # the encoded ping message


Output = SendPacket | OpenPushPull | TcpPing


@dataclass(frozen=True, slots=True)
class MemberEvent:
    kind: str  # "join", "leave", "update"
    node: str
    address: Address
    meta: bytes
    state: NodeStateType


class Delegate(Protocol):
    """Hooks for what rides on the gossip (memberlist Delegate): dskit's KV store implements it."""

    def node_meta(self, limit: int) -> bytes: ...
    def notify_msg(self, payload: bytes) -> None: ...
    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]: ...
    def local_state(self, join: bool) -> bytes: ...
    def merge_remote_state(self, data: bytes, join: bool) -> None: ...


class _NodeBroadcast:
    """A queued alive/suspect/dead message about one node: a newer one about the same node replaces it."""

    __slots__ = ("_msg", "_name", "_notify")

    def __init__(self, name: str, msg: bytes, notify: Callable[[], None] | None = None) -> None:
        self._name = name
        self._msg = msg
        self._notify = notify

    def name(self) -> str:  # a named broadcast: a newer one about the same node replaces it
        return self._name

    def message(self) -> bytes:
        return self._msg

    def invalidates(self, other: object) -> bool:
        return isinstance(other, _NodeBroadcast) and other._name == self._name

    def finished(self) -> None:
        if self._notify is not None:
            self._notify()


@dataclass(slots=True)
class _Probe:
    seq_no: int
    target: str
    sent: float
    timeout_at: float  # end of the direct wait: start indirect pings and the TCP fallback
    deadline: float  # end of the whole probe (probe interval scaled by awareness)
    indirect_started: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    tcp_contacted: bool = False


@dataclass(slots=True)
class _Relay:
    """An indirect ping we are doing for another member."""

    requester_seq: int
    reply_to: Address
    expires: float
    nack_at: float | None


@dataclass(slots=True)
class Stats:
    packets_received: int = 0
    packets_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    bad_packets: int = 0
    probes: int = 0
    failed_probes: int = 0
    refutes: int = 0
    messages: dict[str, int] = field(default_factory=dict)


class Memberlist:
    """One member's view of the cluster and the protocol that keeps it current."""

    def __init__(
        self,
        config: Config,
        *,
        addr: str,
        port: int,
        now: float,
        rng: random.Random,
        meta: bytes = b"",
        delegate: Delegate | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.config = config
        self.rng = rng
        self.delegate = delegate
        self.keyring = keyring
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.stats = Stats()
        self._outputs: list[Output] = []
        self._events: list[MemberEvent] = []
        self._nodes: list[NodeState] = []  # probe order
        self._node_map: dict[str, NodeState] = {}
        self._by_address: dict[Address, NodeState] = {}  # for packets sent to an address, not a node
        self._suspicions: dict[str, Suspicion] = {}
        self._relays: dict[int, _Relay] = {}
        self._probe: _Probe | None = None
        self._probe_index = 0
        self._seq_no = 0
        self._incarnation = 0
        self._left = False
        self._leave_done = False
        self._broadcasts = TransmitLimitedQueue(config.retransmit_mult, lambda: max(1, len(self._nodes)))
        # First ticks are staggered at random within their interval, as memberlist does.
        self._next_probe = now + rng.random() * config.probe_interval
        self._next_gossip = now + rng.random() * config.gossip_interval
        self._next_push_pull = (
            now + rng.random() * config.push_pull_interval if config.push_pull_interval > 0 else math.inf
        )
        ip = ipaddress.ip_address(addr)
        vsn = bytes(
            [
                PROTOCOL_VERSION_MIN,
                PROTOCOL_VERSION_MAX,
                config.protocol_version,
                config.delegate_protocol_min,
                config.delegate_protocol_max,
                config.delegate_protocol_version,
            ]
        )
        if delegate is not None:
            meta = delegate.node_meta(META_MAX_SIZE)
        if len(meta) > META_MAX_SIZE:
            raise ValueError(f"node meta is {len(meta)} bytes; the limit is {META_MAX_SIZE}")
        self._vsn = vsn
        # Register ourselves as alive (memberlist setAlive, a bootstrap alive).
        self._alive(
            wire.Alive(
                incarnation=self._next_incarnation(),
                node=config.name,
                addr=ip.packed,
                port=port,
                meta=meta,
                vsn=vsn,
            ),
            now,
            bootstrap=True,
        )

    # -- public views -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def local_node(self) -> NodeState:
        return self._node_map[self.config.name]

    def members(self) -> list[NodeState]:
        """Every node not dead or left (memberlist Members)."""
        return [n for n in self._nodes if not n.dead_or_left()]

    def all_nodes(self) -> list[NodeState]:
        return list(self._nodes)

    def node(self, name: str) -> NodeState | None:
        return self._node_map.get(name)

    def num_members(self) -> int:
        return len(self.members())

    def health_score(self) -> int:
        return self.awareness.get_health_score()

    @property
    def has_left(self) -> bool:
        return self._left

    @property
    def leave_done(self) -> bool:
        """True once the leave broadcast has gone out as often as it will (or nobody is left to tell)."""
        return self._leave_done

    def take_outputs(self) -> list[Output]:
        out, self._outputs = self._outputs, []
        return out

    def take_events(self) -> list[MemberEvent]:
        out, self._events = self._events, []
        return out

    # -- time ---------------------------------------------------------------------------------------
    def next_deadline(self) -> float:
        times = [self._next_gossip, self._next_push_pull]
        if not self._left:
            times.append(self._next_probe)
        if self._probe is not None:
            times.append(self._probe.deadline if self._probe.indirect_started else self._probe.timeout_at)
        times.extend(s.deadline() for s in self._suspicions.values())
        if self._relays:  # they all last probe_timeout: the oldest is due first
            first = next(iter(self._relays.values()))
            times.append(first.expires if first.nack_at is None else min(first.nack_at, first.expires))
        return min(times)

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now``: probe steps, suspicion timeouts, relays, gossip, push/pull."""
        probe = self._probe
        if probe is not None:
            if not probe.indirect_started and now >= probe.timeout_at:
                self._start_indirect_probe(probe, now)
            if probe.indirect_started and now >= probe.deadline:
                self._finish_failed_probe(probe, now)
        for seq, relay in list(self._relays.items()):
            if relay.nack_at is None and now < relay.expires:
                break  # the rest are younger
            if relay.nack_at is not None and now >= relay.nack_at:
                self._send(relay.reply_to, wire.encode_message(wire.Nack(seq_no=relay.requester_seq)))
                relay.nack_at = None
            if now >= relay.expires:
                del self._relays[seq]
            else:
                break
        for name, suspicion in list(self._suspicions.items()):
            if now >= suspicion.deadline():
                self._suspicion_expired(name, suspicion, now)
        if not self._left and self._probe is None and now >= self._next_probe:
            self._next_probe = now + self.config.probe_interval
            self._probe_next(now)
        if now >= self._next_gossip:
            self._next_gossip = now + self.config.gossip_interval
            self._gossip(now)
        if now >= self._next_push_pull:
            self._next_push_pull = now + self._push_pull_interval()
            self._push_pull_random(now)

    def _push_pull_interval(self) -> float:
        """PushPullInterval, stretched for large clusters (memberlist pushPullScale)."""
        n = len(self._nodes)
        interval = self.config.push_pull_interval
        if n <= 32:
            return interval
        return interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)

    # -- probing ------------------------------------------------------------------------------------
    def _probe_next(self, now: float) -> None:
        checked = 0
        while checked < len(self._nodes):
            if self._probe_index >= len(self._nodes):
                self._reset_nodes(now)
                self._probe_index = 0
                checked += 1
                continue
            node = self._nodes[self._probe_index]
            self._probe_index += 1
            if node.name == self.config.name or node.dead_or_left():
                checked += 1
                continue
            self._probe_node(node, now)
            return

    def _probe_node(self, node: NodeState, now: float) -> None:
        interval = self.awareness.scale_timeout(self.config.probe_interval)
        self.stats.probes += 1
        ping = self._make_ping(node.name)
        self._probe = _Probe(
            seq_no=ping.seq_no,
            target=node.name,
            sent=now,
            timeout_at=now + self.config.probe_timeout,
            deadline=now + interval,
        )
        # The probe occupies the ticker: the next probe starts when this one has ended.
        self._next_probe = max(self._next_probe, now + interval)
        msg = wire.encode_message(ping)
        if node.state == NodeStateType.ALIVE:
            self._send_with_piggyback(node.address, msg, node)
        else:
            # The buddy system: tell a suspect node it is suspected so it can refute at once.
            suspect = wire.Suspect(incarnation=node.incarnation, node=node.name, from_=self.config.name)
            self._send_raw(node.address, wire.make_compound([msg, wire.encode_message(suspect)]), node)

    def _make_ping(self, target: str) -> wire.Ping:
        self._seq_no = (self._seq_no + 1) & 0xFFFFFFFF
        local = self.local_node
        return wire.Ping(
            seq_no=self._seq_no,
            node=target,
            source_addr=local.addr,
            source_port=local.port,
            source_node=self.config.name,
        )

    def _start_indirect_probe(self, probe: _Probe, now: float) -> None:
        probe.indirect_started = True
        target = self._node_map.get(probe.target)
        if target is None:
            return
        peers = self._k_random_nodes(
            self.config.indirect_checks,
            lambda n: n.name == self.config.name or n.name == probe.target or n.state != NodeStateType.ALIVE,
        )
        local = self.local_node
        for peer in peers:
            nack = peer.pmax >= 4
            probe.expected_nacks += nack
            req = wire.IndirectPing(
                seq_no=probe.seq_no,
                target=target.addr,
                port=target.port,
                node=target.name,
                nack=nack,
                source_addr=local.addr,
                source_port=local.port,
                source_node=self.config.name,
            )
            self._send_with_piggyback(peer.address, wire.encode_message(req), peer)
        if not self.config.disable_tcp_pings and target.pmax >= 3:
            ping = wire.Ping(
                seq_no=probe.seq_no,
                node=target.name,
                source_addr=local.addr,
                source_port=local.port,
                source_node=self.config.name,
            )
            self._outputs.append(
                TcpPing(target.address, probe.seq_no, target.name, probe.deadline, wire.encode_message(ping))
            )

    def tcp_ping_result(self, seq_no: int, ok: bool, now: float) -> None:
        """The shell's answer to a ``TcpPing``: did the node ack over TCP before the deadline?"""
        probe = self._probe
        if probe is not None and probe.seq_no == seq_no and ok and now <= probe.deadline:
            probe.tcp_contacted = True

    def _probe_succeeded(self) -> None:
        self._probe = None
        self.awareness.apply_delta(-1)

    def _finish_failed_probe(self, probe: _Probe, now: float) -> None:
        self._probe = None
        if probe.tcp_contacted:  # UDP failed but TCP worked: the network is odd, the node is fine
            self.awareness.apply_delta(-1)
            return
        self.stats.failed_probes += 1
        if probe.expected_nacks > 0:
            self.awareness.apply_delta(max(0, probe.expected_nacks - probe.nacks))
        else:
            self.awareness.apply_delta(1)
        node = self._node_map.get(probe.target)
        if node is not None:
            self._suspect(
                wire.Suspect(incarnation=node.incarnation, node=node.name, from_=self.config.name), now
            )

    # -- receiving packets ------------------------------------------------------------------------
    def receive_packet(self, data: bytes, from_addr: Address, now: float) -> None:
        """A datagram (or dskit TCP packet) arrived. Malformed ones are counted and dropped."""
        self.stats.packets_received += 1
        self.stats.bytes_received += len(data)
        try:
            messages = wire.decode_packet(
                data,
                label=self.config.label,
                keyring=self.keyring if self.config.gossip_verify_incoming else None,
                skip_inbound_label_check=self.config.skip_inbound_label_check,
            )
        except wire.WireError:
            self.stats.bad_packets += 1
            return
        for msg in messages:
            try:
                self._handle_message(msg, from_addr, now)
            except Exception:  # a handler bug must never take the node down: count and drop
                log.exception("memberlist: a %s message could not be handled", type(msg).__name__)
                self.stats.bad_packets += 1

    def _count(self, kind: str) -> None:
        self.stats.messages[kind] = self.stats.messages.get(kind, 0) + 1

    def _handle_message(self, msg: object, from_addr: Address, now: float) -> None:
        if isinstance(msg, wire.Ping):
            self._count("ping")
            if msg.node and msg.node != self.config.name:
                return  # a ping meant for a previous owner of this address
            reply_to = self._reply_address(msg.source_addr, msg.source_port, from_addr)
            self._send_with_piggyback(reply_to, wire.encode_message(wire.Ack(seq_no=msg.seq_no)), None)
        elif isinstance(msg, wire.IndirectPing):
            self._count("indirect_ping")
            self._relay_indirect_ping(msg, from_addr, now)
        elif isinstance(msg, wire.Ack):
            self._count("ack")
            self._handle_ack(msg.seq_no, now)
        elif isinstance(msg, wire.Nack):
            self._count("nack")
            if self._probe is not None and self._probe.seq_no == msg.seq_no:
                self._probe.nacks += 1
        elif isinstance(msg, wire.Alive):
            self._count("alive")
            self._alive(msg, now)
        elif isinstance(msg, wire.Suspect):
            self._count("suspect")
            self._suspect(msg, now)
        elif isinstance(msg, wire.Dead):
            self._count("dead")
            self._dead(msg, now)
        elif isinstance(msg, wire.UserMessage):
            self._count("user")
            if self.delegate is not None:
                self.delegate.notify_msg(msg.payload)
        else:
            self._count("other")

    @staticmethod
    def _reply_address(source_addr: bytes, source_port: int, from_addr: Address) -> Address:
        if len(source_addr) in (4, 16) and source_port:
            return (str(ipaddress.ip_address(source_addr)), source_port)
        return from_addr

    def _handle_ack(self, seq_no: int, now: float) -> None:
        probe = self._probe
        if probe is not None and probe.seq_no == seq_no:
            self._probe_succeeded()
            return
        relay = self._relays.pop(seq_no, None)
        if relay is not None:
            self._send(relay.reply_to, wire.encode_message(wire.Ack(seq_no=relay.requester_seq)))

    def _relay_indirect_ping(self, req: wire.IndirectPing, from_addr: Address, now: float) -> None:
        if len(req.target) not in (4, 16):
            return
        if len(self._relays) >= MAX_RELAYS:  # a flood of indirect pings: drop, do not amplify
            self._count("relay_dropped")
            return
        self._seq_no = (self._seq_no + 1) & 0xFFFFFFFF
        local = self.local_node
        ping = wire.Ping(
            seq_no=self._seq_no,
            node=req.node,
            source_addr=local.addr,
            source_port=local.port,
            source_node=self.config.name,
        )
        reply_to = self._reply_address(req.source_addr, req.source_port, from_addr)
        self._relays[self._seq_no] = _Relay(
            requester_seq=req.seq_no,
            reply_to=reply_to,
            expires=now + self.config.probe_timeout,
            nack_at=now + self.config.probe_timeout if req.nack else None,
        )
        target = (str(ipaddress.ip_address(req.target)), req.port)
        self._send_with_piggyback(target, wire.encode_message(ping), None)

    # -- node-state rules ---------------------------------------------------------------------------
    def _next_incarnation(self) -> int:
        self._incarnation = (self._incarnation + 1) & 0xFFFFFFFF  # Go's uint32 wraps
        return self._incarnation

    def _refute(self, me: NodeState, accused: int) -> None:
        inc = self._next_incarnation()
        if accused >= inc:
            self._incarnation = inc = (accused + 1) & 0xFFFFFFFF
        me.incarnation = inc
        self.awareness.apply_delta(1)
        self.stats.refutes += 1
        alive = wire.Alive(
            incarnation=inc, node=me.name, addr=me.addr, port=me.port, meta=me.meta, vsn=me.vsn
        )
        self._broadcast(me.name, wire.encode_message(alive))

    def _alive(self, a: wire.Alive, now: float, bootstrap: bool = False) -> None:
        if self._left and a.node == self.config.name:
            return
        if len(a.vsn) >= 3 and (a.vsn[0] == 0 or a.vsn[1] == 0 or a.vsn[0] > a.vsn[1]):
            return  # a protocol range no member can speak
        if len(a.addr) not in (4, 16):
            return
        state = self._node_map.get(a.node)
        updates_node = False
        if state is None:
            state = NodeState(
                name=a.node,
                addr=a.addr,
                port=a.port,
                meta=a.meta,
                incarnation=0,
                state=NodeStateType.DEAD,
                state_change=now,
                vsn=a.vsn if len(a.vsn) >= 6 else bytes(6),
            )
            self._node_map[a.node] = state
            self._by_address[state.address] = state
            # Insert at a random offset (memberlist randomOffset): keeps detection time low.
            n = len(self._nodes)
            self._nodes.append(state)
            offset = self.rng.randrange(n + 1) if n else 0
            self._nodes[offset], self._nodes[n] = self._nodes[n], self._nodes[offset]
        elif state.addr != a.addr or state.port != a.port:
            reclaim = self.config.dead_node_reclaim_time > 0 and (
                now - state.state_change > self.config.dead_node_reclaim_time
            )
            if state.state == NodeStateType.LEFT or (state.state == NodeStateType.DEAD and reclaim):
                updates_node = True
            else:
                self._count("conflict")
                return
        is_local = state.name == self.config.name
        if a.incarnation <= state.incarnation and not is_local and not updates_node:
            return
        if a.incarnation < state.incarnation and is_local:
            return
        self._suspicions.pop(a.node, None)
        old_state, old_meta = state.state, state.meta
        if not bootstrap and is_local:
            if a.incarnation == state.incarnation and a.meta == state.meta and a.vsn == state.vsn:
                return
            self._refute(state, a.incarnation)
            return
        self._broadcast(a.node, wire.encode_message(a))
        if len(a.vsn) >= 6:
            state.vsn = a.vsn
        state.incarnation = a.incarnation
        state.meta = a.meta
        if state.addr != a.addr or state.port != a.port:
            if self._by_address.get(state.address) is state:
                del self._by_address[state.address]
            state.addr = a.addr
            state.port = a.port
            self._by_address[state.address] = state
        if state.state != NodeStateType.ALIVE:
            state.state = NodeStateType.ALIVE
            state.state_change = now
        if old_state in (NodeStateType.DEAD, NodeStateType.LEFT):
            self._events.append(MemberEvent("join", state.name, state.address, state.meta, state.state))
        elif old_meta != state.meta:
            self._events.append(MemberEvent("update", state.name, state.address, state.meta, state.state))

    def _suspect(self, s: wire.Suspect, now: float) -> None:
        state = self._node_map.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return
        timer = self._suspicions.get(s.node)
        if timer is not None:
            if timer.confirm(s.from_, now):
                self._broadcast(s.node, wire.encode_message(s))
            return
        if state.state != NodeStateType.ALIVE:
            return
        if state.name == self.config.name:
            self._refute(state, s.incarnation)
            return
        self._broadcast(s.node, wire.encode_message(s))
        state.incarnation = s.incarnation
        state.state = NodeStateType.SUSPECT
        state.state_change = now
        # k independent confirmations are expected; none when the cluster is too small.
        k = self.config.suspicion_mult - 2
        n = len(self._nodes)
        if n - 2 < k:
            k = 0
        min_timeout = suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval)
        max_timeout = self.config.suspicion_max_timeout_mult * min_timeout
        self._suspicions[s.node] = Suspicion(s.from_, k, min_timeout, max_timeout, now)

    def _suspicion_expired(self, name: str, suspicion: Suspicion, now: float) -> None:
        self._suspicions.pop(name, None)
        state = self._node_map.get(name)
        if state is None or state.state != NodeStateType.SUSPECT:
            return
        self._dead(wire.Dead(incarnation=state.incarnation, node=name, from_=self.config.name), now)

    def _dead(self, d: wire.Dead, now: float) -> None:
        state = self._node_map.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        self._suspicions.pop(d.node, None)
        if state.dead_or_left():
            return
        if state.name == self.config.name:
            if not self._left:
                self._refute(state, d.incarnation)
                return
            self._broadcast(d.node, wire.encode_message(d), notify=self._leave_broadcast_done)
        else:
            self._broadcast(d.node, wire.encode_message(d))
        state.incarnation = d.incarnation
        state.state = NodeStateType.LEFT if d.node == d.from_ else NodeStateType.DEAD
        state.state_change = now
        self._events.append(MemberEvent("leave", state.name, state.address, state.meta, state.state))

    def _leave_broadcast_done(self) -> None:
        self._leave_done = True

    def _reset_nodes(self, now: float) -> None:
        """At each wrap of the probe list: forget nodes dead or left for longer than
        GossipToTheDeadTime, then shuffle (memberlist resetNodes)."""
        keep = []
        for node in self._nodes:
            expired = node.dead_or_left() and now - node.state_change > self.config.gossip_to_the_dead_time
            if expired and node.name != self.config.name:
                del self._node_map[node.name]
                if self._by_address.get(node.address) is node:
                    del self._by_address[node.address]
                continue
            keep.append(node)
        self._nodes = keep
        self.rng.shuffle(self._nodes)

    # -- gossip -------------------------------------------------------------------------------------
    def _k_random_nodes(self, k: int, exclude: Callable[[NodeState], bool]) -> list[NodeState]:
        """Up to k distinct random nodes not excluded (memberlist kRandomNodes: 3n random probes)."""
        n = len(self._nodes)
        picked: list[NodeState] = []
        for _ in range(3 * n):
            if len(picked) >= k:
                break
            node = self._nodes[self.rng.randrange(n)]
            if exclude(node) or any(p is node for p in picked):
                continue
            picked.append(node)
        return picked

    def _gossip(self, now: float) -> None:
        def exclude(n: NodeState) -> bool:
            if n.name == self.config.name:
                return True
            if n.state in (NodeStateType.ALIVE, NodeStateType.SUSPECT):
                return False
            if n.state == NodeStateType.DEAD:
                return now - n.state_change > self.config.gossip_to_the_dead_time
            return True

        targets = self._k_random_nodes(self.config.gossip_nodes, exclude)
        avail = self.config.udp_buffer_size - COMPOUND_HEADER_OVERHEAD - self._packet_overhead()
        for node in targets:
            msgs = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
            if not msgs:
                return
            if len(msgs) == 1:
                self._send_raw(node.address, msgs[0], node)
            else:
                for i in range(0, len(msgs), 255):
                    self._send_raw(node.address, wire.make_compound(msgs[i : i + 255]), node)

    def _push_pull_random(self, now: float) -> None:
        nodes = self._k_random_nodes(
            1, lambda n: n.name == self.config.name or n.state != NodeStateType.ALIVE
        )
        if nodes:
            self._outputs.append(OpenPushPull(nodes[0].address, join=False))

    def _broadcast(self, node: str, msg: bytes, notify: Callable[[], None] | None = None) -> None:
        self._broadcasts.queue_broadcast(_NodeBroadcast(node, msg, notify))

    def _get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        msgs = self._broadcasts.get_broadcasts(overhead, limit)
        if self.delegate is not None:
            used = sum(len(m) + overhead for m in msgs)
            avail = limit - used
            if avail > overhead + USER_MSG_OVERHEAD:
                for m in self.delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, avail):
                    msgs.append(bytes([wire.MessageType.USER]) + m)
        return msgs

    def queued_broadcasts(self) -> int:
        return self._broadcasts.num_queued()

    # -- sending --------------------------------------------------------------------------------------
    def _packet_overhead(self) -> int:
        overhead = 2 + len(self.config.label.encode()) if self.config.label else 0
        if self.keyring is not None and self.config.gossip_verify_outgoing:
            overhead += 1 + 12 + 16  # version byte, nonce, GCM tag
        return overhead

    def _send_with_piggyback(self, addr: Address, msg: bytes, node: NodeState | None) -> None:
        avail = self.config.udp_buffer_size - len(msg) - COMPOUND_HEADER_OVERHEAD - self._packet_overhead()
        extra = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
        if extra:
            msg = wire.make_compound([msg, *extra[:254]])
        self._send_raw(addr, msg, node)

    def _send_raw(self, addr: Address, msg: bytes, node: NodeState | None) -> None:
        if node is None:
            node = self._node_by_address(addr)
        data = wire.encode_packet(
            msg,
            label=self.config.label,
            keyring=self.keyring if self.config.gossip_verify_outgoing else None,
            crc=node is not None and node.pmax >= 5,
            compress=self.config.enable_compression,
        )
        self._send(addr, data, encoded=True)

    def _send(self, addr: Address, data: bytes, encoded: bool = False) -> None:
        if not encoded:
            self._send_raw(addr, data, None)
            return
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(data)
        self._outputs.append(SendPacket(addr, data))

    def _node_by_address(self, addr: Address) -> NodeState | None:
        return self._by_address.get(addr)

    def send_user_message(self, node: str, payload: bytes) -> None:
        """Send ``payload`` to one node's delegate over the packet path (memberlist SendBestEffort)."""
        target = self._node_map.get(node)
        if target is None:
            raise KeyError(f"unknown node {node!r}")
        self._send_raw(target.address, bytes([wire.MessageType.USER]) + payload, target)

    # -- push/pull, join, leave -----------------------------------------------------------------------
    def join(self, addresses: Sequence[Address]) -> None:
        """Ask the shell for a joining push/pull with each address (memberlist Join)."""
        for addr in addresses:
            self._outputs.append(OpenPushPull(addr, join=True))

    def push_pull_request(self, join: bool) -> bytes:
        """Our full state, encoded as the push/pull stream message (before label/encryption)."""
        states = [
            wire.PushNodeState(
                name=n.name,
                addr=n.addr,
                port=n.port,
                meta=n.meta,
                incarnation=n.incarnation,
                state=int(n.state),
                vsn=n.vsn,
            )
            for n in self._nodes
        ]
        user_state = self.delegate.local_state(join) if self.delegate is not None else b""
        return wire.encode_push_pull(states, user_state, join)

    def merge_remote_state(
        self, states: Sequence[wire.PushNodeState], user_state: bytes, join: bool, now: float
    ) -> None:
        """Merge a push/pull from a peer (memberlist mergeRemoteState). Raises ``ValueError`` when the
        peer's protocol versions cannot work with this cluster (nothing is merged then)."""
        self._verify_protocol(states)
        for r in states:
            if r.state == NodeStateType.ALIVE:
                self._alive(
                    wire.Alive(
                        incarnation=r.incarnation,
                        node=r.name,
                        addr=r.addr,
                        port=r.port,
                        meta=r.meta,
                        vsn=r.vsn,
                    ),
                    now,
                )
            elif r.state == NodeStateType.LEFT:
                self._dead(wire.Dead(incarnation=r.incarnation, node=r.name, from_=r.name), now)
            elif r.state in (NodeStateType.DEAD, NodeStateType.SUSPECT):
                # A remote "dead" only makes us suspect: we check for ourselves.
                self._suspect(
                    wire.Suspect(incarnation=r.incarnation, node=r.name, from_=self.config.name), now
                )
        if user_state and self.delegate is not None:
            self.delegate.merge_remote_state(user_state, join)

    def push_pull_failed(self, addr: Address, join: bool) -> None:
        """The shell could not complete a push/pull with ``addr`` (counted; gossip carries on)."""
        self._count("push_pull_failed")

    def _verify_protocol(self, remote: Sequence[wire.PushNodeState]) -> None:
        maxpmin = maxdmin = 0
        minpmax = mindmax = 255
        vsns = [r.vsn for r in remote if r.state == NodeStateType.ALIVE and len(r.vsn) >= 5]
        vsns += [n.vsn for n in self._nodes if n.state == NodeStateType.ALIVE]
        for v in vsns:
            if len(v) < 6:
                continue
            maxpmin, minpmax = max(maxpmin, v[0]), min(minpmax, v[1])
            maxdmin, mindmax = max(maxdmin, v[3]), min(mindmax, v[4])
        for name, v in [(r.name, r.vsn) for r in remote] + [(n.name, n.vsn) for n in self._nodes]:
            pcur = v[2] if len(v) >= 6 else 0
            dcur = v[5] if len(v) >= 6 else 0
            if not maxpmin <= pcur <= minpmax:
                raise ValueError(
                    f"node {name!r} protocol version ({pcur}) is incompatible: [{maxpmin}, {minpmax}]"
                )
            if not maxdmin <= dcur <= mindmax:
                raise ValueError(
                    f"node {name!r} delegate protocol version ({dcur}) is incompatible: "
                    f"[{maxdmin}, {mindmax}]"
                )

    def handle_stream_ping(self, ping: wire.Ping) -> bytes | None:
        """A TCP fallback ping from a peer: the ack to write back, or None if it is not for us."""
        if ping.node and ping.node != self.config.name:
            return None
        return wire.encode_message(wire.Ack(seq_no=ping.seq_no))

    def leave(self, now: float) -> None:
        """Leave gracefully: broadcast that we left (dead with From = ourselves). ``leave_done``
        turns true when that broadcast is finished; the shell waits for it or a timeout."""
        if self._left:
            return
        self._left = True
        me = self.local_node
        if len(self.members()) <= 1:
            self._leave_done = True  # nobody to tell
        self._dead(wire.Dead(incarnation=me.incarnation, node=me.name, from_=me.name), now)
