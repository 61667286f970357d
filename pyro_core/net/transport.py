# The transport interface between a memberlist node and the network, and an in-memory network.
# Owns: what a transport must do (send a packet, dial a stream, serve inbound packets and streams,
# say which address it is bound to) and MemoryNetwork, a loopback fabric for tests that can drop
# packets and refuse connections. Must not know: the SWIM rules or the wire format of messages.
from __future__ import annotations

import abc
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
import trio.testing

Address = tuple[str, int]
PacketHandler = Callable[[bytes, Address], None]  # data, from address
StreamHandler = Callable[[trio.abc.Stream, Address], Awaitable[None]]  # an accepted stream


class TransportError(OSError):
    """A packet or stream could not be delivered (refused, timed out, closed)."""


async def close_quietly(stream: trio.abc.AsyncResource) -> None:
    """Close a stream within a second, even while cancelled, ignoring a peer that already went."""
    quiet = contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError)
    with trio.CancelScope(shield=True), trio.move_on_after(1), quiet:
        await stream.aclose()


def format_address(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, default_port: int | None = None) -> Address:
    """``host:port``, ``[v6]:port`` or (with a default port) a bare host."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            return host, _port(rest[1:], text)
        if default_port is None:
            raise ValueError(f"address {text!r} has no port")
        return host, default_port
    host, sep, port = text.rpartition(":")
    if sep and host and ":" not in host:
        return host, _port(port, text)
    if default_port is None or not text:
        raise ValueError(f"address {text!r} is not host:port")
    return text, default_port


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"bad port in {whole!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {whole!r}")
    return port


class Transport(abc.ABC):
    """Moves memberlist packets and streams. ``serve`` runs until cancelled."""

    @property
    @abc.abstractmethod
    def local_address(self) -> Address:
        """The (ip, port) this transport is reachable at (after ``serve`` has started)."""

    @abc.abstractmethod
    async def serve(
        self,
        on_packet: PacketHandler,
        on_stream: StreamHandler,
        *,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Bind, report the bound address through ``task_status.started``, then deliver inbound
        packets to ``on_packet`` and spawn ``on_stream`` for each inbound stream."""

    @abc.abstractmethod
    async def send_packet(self, addr: Address, data: bytes) -> None:
        """Send one packet; raise TransportError when it certainly did not leave."""

    @abc.abstractmethod
    async def dial(self, addr: Address, timeout: float) -> trio.abc.Stream:
        """Open a stream to a peer, ready for a memberlist stream message."""


# -- an in-memory network --------------------------------------------------------------------------
@dataclass
class _Endpoint:
    on_packet: PacketHandler
    on_stream: StreamHandler
    nursery: trio.Nursery


class MemoryNetwork:
    """A fabric of MemoryTransports: packets and streams between them without sockets.

    ``loss`` drops that share of packets (seeded); ``block(a, b)`` cuts a link both ways.
    """

    def __init__(self, seed: int = 0, loss: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self._endpoints: dict[Address, _Endpoint] = {}
        self._blocked: set[frozenset[Address]] = set()
        self._next_port = 7946

    def transport(self, host: str | None = None) -> MemoryTransport:
        self._next_port += 1
        return MemoryTransport(self, (host or "127.0.0.1", self._next_port))

    def block(self, a: Address, b: Address) -> None:
        self._blocked.add(frozenset((a, b)))

    def unblock_all(self) -> None:
        self._blocked.clear()

    def _reachable(self, src: Address, dst: Address) -> _Endpoint | None:
        if frozenset((src, dst)) in self._blocked:
            return None
        return self._endpoints.get(dst)


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self.network = network
        self._address = address

    @property
    def local_address(self) -> Address:
        return self._address

    async def serve(
        self,
        on_packet: PacketHandler,
        on_stream: StreamHandler,
        *,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self.network._endpoints[self._address] = _Endpoint(on_packet, on_stream, nursery)
            try:
                task_status.started(self._address)
                await trio.sleep_forever()
            finally:
                self.network._endpoints.pop(self._address, None)

    async def send_packet(self, addr: Address, data: bytes) -> None:
        dst = self.network._reachable(self._address, addr)
        if dst is None or self.network.rng.random() < self.network.loss:
            return  # like UDP: lost silently
        dst.on_packet(bytes(data), self._address)
        await trio.lowlevel.checkpoint()

    async def dial(self, addr: Address, timeout: float) -> trio.abc.Stream:
        dst = self.network._reachable(self._address, addr)
        if dst is None:
            await trio.sleep(min(timeout, 0.01))
            raise TransportError(f"connection to {format_address(addr)} refused")
        ours, theirs = trio.testing.memory_stream_pair()
        dst.nursery.start_soon(dst.on_stream, theirs, self._address)
        return ours
