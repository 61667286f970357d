# The trio shell of a memberlist member: runs the sans-I/O SWIM core over a Transport.
# Owns: time (trio's clock into ``handle_timer``), moving packets and streams between the transport
# and the core, the stream side of push/pull, TCP fallback pings and user messages, join and leave.
# Must not know: SWIM rules (pyro_core.memberlist.state) or byte layouts (pyro_core.memberlist.wire).
from __future__ import annotations

import logging
import random
import socket
from collections.abc import Callable, Sequence

import trio

from pyro_core.memberlist import wire
from pyro_core.memberlist.config import Config
from pyro_core.memberlist.security import Keyring
from pyro_core.memberlist.state import (
    Delegate,
    MemberEvent,
    Memberlist,
    OpenPushPull,
    SendPacket,
    TcpPing,
)
from pyro_core.net.transport import Address, Transport, TransportError, close_quietly, format_address

log = logging.getLogger("pyro_core.memberlist")

STREAM_ERRORS = (
    TransportError,
    wire.WireError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


def default_advertise_ip() -> str:
    """The address to advertise when bound to every interface (memberlist picks a private IP):
    this host's name resolved, else loopback."""
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return ip


SEND_QUEUE = 1024  # packets waiting for a sender; more are dropped (and counted), never blocking
SENDERS = 8  # concurrent packet sends (dskit's TCP transport dials one connection per packet)
MAX_STREAMS_IN = 128  # concurrent inbound streams (memberlist allows 128 push/pulls at once)
MAX_STREAMS_OUT = 32  # concurrent outbound push/pulls and TCP pings


class JoinError(RuntimeError):
    """No address given to ``join`` answered a push/pull."""


class MemberlistNode:
    """One member: ``async with trio.open_nursery() as n: await n.start(node.run)``."""

    def __init__(
        self,
        config: Config,
        transport: Transport,
        *,
        delegate: Delegate | None = None,
        seed: int | None = None,
        on_event: Callable[[MemberEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.delegate = delegate
        self.keyring = Keyring(list(config.secret_keys)) if config.secret_keys else None
        self.rng = random.Random(seed)
        self.on_event = on_event
        self.core: Memberlist | None = None
        self._nursery: trio.Nursery | None = None
        self._wakeup = trio.Event()
        self.stream_errors = 0
        self.dropped_packets = 0  # outbound packets dropped because the send queue was full
        self.dropped_streams = 0  # streams refused or not opened because too many were in flight
        self.handler_errors = 0  # exceptions caught at task boundaries (a bug, logged)
        self._send_in, self._send_out = trio.open_memory_channel[tuple[Address, bytes]](SEND_QUEUE)
        self._streams_in = trio.CapacityLimiter(MAX_STREAMS_IN)
        self._streams_out = trio.CapacityLimiter(MAX_STREAMS_OUT)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            bound = await nursery.start(self.transport.serve, self._on_packet, self._on_stream)
            host = self.config.advertise_addr or bound[0]
            port = self.config.advertise_port or bound[1]
            if host in ("0.0.0.0", "::", ""):
                host = default_advertise_ip()
            self.core = Memberlist(
                self.config,
                addr=host,
                port=port,
                now=trio.current_time(),
                rng=random.Random(self.rng.getrandbits(64)),
                delegate=self.delegate,
                keyring=self.keyring,
            )
            for _ in range(SENDERS):
                nursery.start_soon(self._sender)
            nursery.start_soon(self._drive)
            log.info("memberlist %s listening on %s", self.config.name, format_address((host, port)))
            task_status.started((host, port))

    @property
    def address(self) -> Address:
        core = self._core()
        return core.local_node.address

    def _core(self) -> Memberlist:
        if self.core is None:
            raise RuntimeError("the node is not running")
        return self.core

    def wake(self) -> None:
        """Something changed the core: flush its outputs and re-arm the timer now."""
        self._wakeup.set()

    async def _drive(self) -> None:
        core = self._core()
        while True:
            self._flush()
            with trio.move_on_at(core.next_deadline()):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = trio.current_time()
            if now >= core.next_deadline():
                core.handle_timer(now)

    def _flush(self) -> None:
        core = self._core()
        assert self._nursery is not None
        for out in core.take_outputs():
            if isinstance(out, SendPacket):
                try:
                    self._send_in.send_nowait((out.addr, out.data))
                except trio.WouldBlock:
                    self.dropped_packets += 1  # like UDP under load: gossip and probes cope with loss
            elif self._streams_out.available_tokens == 0:
                self.dropped_streams += 1
                if isinstance(out, TcpPing):
                    core.tcp_ping_result(out.seq_no, False, trio.current_time())
                else:
                    core.push_pull_failed(out.addr, out.join)
            elif isinstance(out, OpenPushPull):
                self._nursery.start_soon(self._push_pull, out.addr, out.join)
            elif isinstance(out, TcpPing):
                self._nursery.start_soon(self._tcp_ping, out)
        for event in core.take_events():
            log.debug("member %s: %s (%s)", event.kind, event.node, format_address(event.address))
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    self.handler_errors += 1
                    log.exception("an on_event callback failed")

    # -- packets ------------------------------------------------------------------------------------
    def _on_packet(self, data: bytes, from_addr: Address) -> None:
        if self.core is None:
            return
        try:
            self.core.receive_packet(data, from_addr, trio.current_time())
        except Exception:  # never let one packet take the transport's receive loop down
            self.handler_errors += 1
            log.exception("a packet from %s could not be handled", format_address(from_addr))
        self.wake()

    async def _sender(self) -> None:
        async for addr, data in self._send_out:
            try:
                await self.transport.send_packet(addr, data)
            except TransportError as exc:
                log.debug("packet to %s failed: %s", format_address(addr), exc)

    # -- streams ------------------------------------------------------------------------------------
    def _decoder(self, *, reply: bool) -> wire.StreamDecoder:
        return wire.StreamDecoder(
            label=self.config.label,
            keyring=self.keyring,
            skip_inbound_label_check=self.config.skip_inbound_label_check,
            verify_incoming=self.config.gossip_verify_incoming,
            label_header=not reply,
        )

    def _frame(self, payload: bytes, *, reply: bool) -> bytes:
        return wire.encode_stream(
            payload,
            label=self.config.label,
            keyring=self.keyring if self.config.gossip_verify_outgoing else None,
            compress=self.config.enable_compression,
            label_header=not reply,
        )

    async def _read_one(self, stream: trio.abc.Stream, decoder: wire.StreamDecoder) -> wire.StreamMessage:
        with trio.fail_after(self.config.tcp_timeout):
            while True:
                chunk = await stream.receive_some(65536)
                msgs = decoder.feed(bytes(chunk)) if chunk else decoder.feed_eof()
                if msgs:
                    return msgs[0]

    async def _on_stream(self, stream: trio.abc.Stream, peer: Address) -> None:
        core = self.core
        if core is None or self._streams_in.available_tokens == 0:
            self.dropped_streams += core is not None
            await close_quietly(stream)
            return
        async with self._streams_in:
            await self._serve_stream(core, stream, peer)

    async def _serve_stream(self, core: Memberlist, stream: trio.abc.Stream, peer: Address) -> None:
        try:
            msg = await self._read_one(stream, self._decoder(reply=False))
            if isinstance(msg, wire.PushPull):
                reply = self._frame(core.push_pull_request(msg.join), reply=True)
                with trio.fail_after(self.config.tcp_timeout):
                    await stream.send_all(reply)
                try:
                    core.merge_remote_state(msg.states, msg.user_state, msg.join, trio.current_time())
                except ValueError as exc:
                    log.warning("push/pull from %s refused: %s", format_address(peer), exc)
            elif isinstance(msg, wire.Ping):
                ack = core.handle_stream_ping(msg)
                if ack is not None:
                    with trio.fail_after(self.config.tcp_timeout):
                        await stream.send_all(self._frame(ack, reply=True))
            elif isinstance(msg, wire.UserMessage):
                if self.delegate is not None:
                    self.delegate.notify_msg(msg.payload)
            else:
                log.debug("unexpected stream message %r from %s", type(msg).__name__, format_address(peer))
        except STREAM_ERRORS as exc:
            self.stream_errors += 1
            log.debug("stream from %s failed: %s", format_address(peer), exc)
        except Exception:  # a handler bug: log it, keep serving
            self.handler_errors += 1
            log.exception("a stream from %s could not be handled", format_address(peer))
        finally:
            await close_quietly(stream)
            self.wake()

    async def _exchange(self, addr: Address, payload: bytes) -> wire.StreamMessage:
        stream = await self.transport.dial(addr, self.config.tcp_timeout)
        try:
            with trio.fail_after(self.config.tcp_timeout):
                await stream.send_all(self._frame(payload, reply=False))
            return await self._read_one(stream, self._decoder(reply=True))
        finally:
            await close_quietly(stream)

    async def _push_pull(self, addr: Address, join: bool) -> bool:
        async with self._streams_out:
            return await self._push_pull_now(addr, join)

    async def _push_pull_now(self, addr: Address, join: bool) -> bool:
        core = self._core()
        try:
            reply = await self._exchange(addr, core.push_pull_request(join))
            if not isinstance(reply, wire.PushPull):
                raise wire.WireError(f"expected a push/pull reply, got {type(reply).__name__}")
            core.merge_remote_state(reply.states, reply.user_state, join, trio.current_time())
            return True
        except (*STREAM_ERRORS, ValueError) as exc:
            log.warning("push/pull with %s failed: %s", format_address(addr), exc)
            core.push_pull_failed(addr, join)
            return False
        finally:
            self.wake()

    async def _tcp_ping(self, out: TcpPing) -> None:
        core = self._core()
        ok = False
        try:
            async with self._streams_out:
                with trio.move_on_at(out.deadline):
                    reply = await self._exchange(out.addr, out.data)
                    ok = isinstance(reply, wire.Ack) and reply.seq_no == out.seq_no
        except STREAM_ERRORS as exc:
            log.debug("tcp ping to %s failed: %s", format_address(out.addr), exc)
        core.tcp_ping_result(out.seq_no, ok, trio.current_time())
        self.wake()

    # -- the public operations -----------------------------------------------------------------------
    async def join(self, addresses: Sequence[Address]) -> int:
        """Push/pull with every address at once; return how many answered (JoinError if none)."""
        results: list[bool] = []

        async def one(addr: Address) -> None:
            results.append(await self._push_pull(addr, True))

        async with trio.open_nursery() as nursery:
            for addr in addresses:
                nursery.start_soon(one, addr)
        joined = sum(results)
        if addresses and not joined:
            raise JoinError(f"could not join any of {', '.join(format_address(a) for a in addresses)}")
        return joined

    async def leave(self, timeout: float = 5.0) -> bool:
        """Broadcast that we leave and wait until it went out (or ``timeout``); True if it did."""
        core = self._core()
        core.leave(trio.current_time())
        self.wake()
        with trio.move_on_after(timeout):
            while not core.leave_done:
                await trio.sleep(0.05)
        return core.leave_done

    async def send_user_message(self, node: str, payload: bytes) -> None:
        """A user message over a stream (memberlist SendReliable)."""
        target = self._core().node(node)
        if target is None:
            raise KeyError(f"unknown node {node!r}")
        stream = await self.transport.dial(target.address, self.config.tcp_timeout)
        try:
            with trio.fail_after(self.config.tcp_timeout):
                await stream.send_all(self._frame(wire.encode_stream_user_message(payload), reply=False))
        finally:
            await stream.aclose()
