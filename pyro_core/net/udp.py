# memberlist's own transport (NetTransport): UDP for packets, TCP for streams, on the same port.
# Owns: binding both sockets (port 0 picks a port free for both), the UDP receive loop and the
# TCP accept loop. This is the transport a hashicorp/memberlist (Go) node speaks.
# Must not know: message formats or SWIM rules.
from __future__ import annotations

import errno
import socket

import trio

from pyro_core.net.transport import Address, PacketHandler, StreamHandler, Transport, TransportError

UDP_RECV_BUFFER = 65536  # memberlist's udpPacketBufSize


class NetTransport(Transport):
    """UDP packets + TCP streams on ``bind_addr:bind_port`` (memberlist NetTransport)."""

    def __init__(
        self, bind_addr: str = "0.0.0.0", bind_port: int = 7946, advertise: Address | None = None
    ) -> None:
        self.bind_addr = bind_addr
        self.bind_port = bind_port
        self._advertise = advertise
        self._udp: trio.socket.SocketType | None = None
        self._bound: Address | None = None

    @property
    def local_address(self) -> Address:
        if self._advertise is not None:
            return self._advertise
        if self._bound is None:
            raise RuntimeError("the transport is not serving yet")
        return self._bound

    async def _bind(self) -> tuple[trio.socket.SocketType, trio.SocketListener]:
        family = socket.AF_INET6 if ":" in self.bind_addr else socket.AF_INET
        for _ in range(10):  # port 0: find a port free for both TCP and UDP
            tcp = trio.socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                await tcp.bind((self.bind_addr, self.bind_port))
                port = tcp.getsockname()[1]
                udp = trio.socket.socket(family, socket.SOCK_DGRAM)
                try:
                    await udp.bind((self.bind_addr, port))
                except OSError as exc:
                    udp.close()
                    if self.bind_port == 0 and exc.errno == errno.EADDRINUSE:
                        tcp.close()
                        continue
                    raise
            except BaseException:
                tcp.close()
                raise
            tcp.listen(128)
            return udp, trio.SocketListener(tcp)
        raise OSError(errno.EADDRINUSE, "no port free for both TCP and UDP")

    async def serve(
        self,
        on_packet: PacketHandler,
        on_stream: StreamHandler,
        *,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        udp, listener = await self._bind()
        self._udp = udp
        host, port = udp.getsockname()[:2]
        self._bound = (self.bind_addr if self.bind_addr not in ("0.0.0.0", "::") else host, port)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._udp_loop, udp, on_packet)
                nursery.start_soon(self._accept_loop, listener, on_stream, nursery)
                task_status.started(self.local_address)
        finally:
            udp.close()
            await listener.aclose()

    @staticmethod
    async def _udp_loop(udp: trio.socket.SocketType, on_packet: PacketHandler) -> None:
        while True:
            try:
                data, addr = await udp.recvfrom(UDP_RECV_BUFFER)
            except OSError:  # e.g. ICMP port unreachable surfacing on Linux: keep serving
                continue
            if data:
                on_packet(data, (addr[0], addr[1]))

    @staticmethod
    async def _accept_loop(
        listener: trio.SocketListener, on_stream: StreamHandler, nursery: trio.Nursery
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError:
                await trio.sleep(0.01)
                continue
            peer = stream.socket.getpeername()
            nursery.start_soon(on_stream, stream, (peer[0], peer[1]))

    async def send_packet(self, addr: Address, data: bytes) -> None:
        if self._udp is None:
            raise TransportError("the transport is not serving")
        try:
            await self._udp.sendto(data, addr)
        except OSError as exc:
            raise TransportError(f"udp send to {addr[0]}:{addr[1]} failed: {exc}") from exc

    async def dial(self, addr: Address, timeout: float) -> trio.abc.Stream:
        try:
            with trio.fail_after(timeout):
                return await trio.open_tcp_stream(addr[0], addr[1])
        except (OSError, trio.TooSlowError) as exc:
            raise TransportError(f"tcp dial to {addr[0]}:{addr[1]} failed: {exc}") from exc
