# dskit's memberlist transport (kv/memberlist/tcp_transport.go): TCP only, optional TLS.
# Owns: a connection per packet ([1][addr len][ip:port][payload][md5]) and per stream ([2] then a
# memberlist stream), the TLS settings of the -memberlist.tls-* flags, and the accept loop.
# This is what Pyroscope nodes speak with each other. Must not know: message formats, SWIM rules.
from __future__ import annotations

import ssl
from dataclasses import dataclass

import trio

from pyro_core.memberlist import wire
from pyro_core.net.transport import (
    Address,
    PacketHandler,
    StreamHandler,
    Transport,
    TransportError,
    close_quietly,
    format_address,
    parse_address,
)

MAX_PACKET_BYTES = 10 * 2**20  # a packet connection longer than this is cut (protects memory)
MAX_CONNECTIONS = 256  # inbound connections handled at once; more are closed at once


@dataclass(frozen=True)
class TLSConfig:
    """The -memberlist.tls-* flags."""

    enabled: bool = False
    cert_path: str = ""
    key_path: str = ""
    ca_path: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        if self.ca_path:
            ctx.load_verify_locations(self.ca_path)
            ctx.verify_mode = ssl.CERT_REQUIRED  # peers are members too: mutual TLS
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.ca_path:
            ctx.load_verify_locations(self.ca_path)
        if self.cert_path and self.key_path:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class DskitTCPTransport(Transport):
    """TCP-only transport of dskit's memberlist KV, with TLS when configured."""

    def __init__(
        self,
        bind_addr: str = "0.0.0.0",
        bind_port: int = 7946,
        advertise: Address | None = None,
        tls: TLSConfig | None = None,
        packet_dial_timeout: float = 2.0,
        packet_write_timeout: float = 5.0,
    ) -> None:
        self.bind_addr = bind_addr
        self.bind_port = bind_port
        self._advertise = advertise
        self.tls = tls or TLSConfig()
        self.packet_dial_timeout = packet_dial_timeout
        self.packet_write_timeout = packet_write_timeout
        self._bound: Address | None = None
        self._client_ctx = self.tls.client_context() if self.tls.enabled else None
        self.digest_mismatches = 0
        self.bad_connections = 0
        self.refused_connections = 0
        self._connections = trio.CapacityLimiter(MAX_CONNECTIONS)

    @property
    def local_address(self) -> Address:
        if self._advertise is not None:
            return self._advertise
        if self._bound is None:
            raise RuntimeError("the transport is not serving yet")
        return self._bound

    async def serve(
        self,
        on_packet: PacketHandler,
        on_stream: StreamHandler,
        *,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.bind_port, host=self.bind_addr)
        listener = listeners[0]
        for extra in listeners[1:]:
            await extra.aclose()
        host, port = listener.socket.getsockname()[:2]
        self._bound = (self.bind_addr if self.bind_addr not in ("0.0.0.0", "::", "") else host, port)
        server_ctx = self.tls.server_context() if self.tls.enabled else None
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.local_address)
                while True:
                    try:
                        sock_stream = await listener.accept()
                    except OSError:
                        await trio.sleep(0.01)
                        continue
                    peer = sock_stream.socket.getpeername()
                    nursery.start_soon(
                        self._handle, sock_stream, (peer[0], peer[1]), on_packet, on_stream, server_ctx
                    )
        finally:
            await listener.aclose()

    async def _handle(
        self,
        sock_stream: trio.SocketStream,
        peer: Address,
        on_packet: PacketHandler,
        on_stream: StreamHandler,
        server_ctx: ssl.SSLContext | None,
    ) -> None:
        if self._connections.available_tokens == 0:
            self.refused_connections += 1
            await close_quietly(sock_stream)
            return
        async with self._connections:
            await self._handle_connection(sock_stream, peer, on_packet, on_stream, server_ctx)

    async def _handle_connection(
        self,
        sock_stream: trio.SocketStream,
        peer: Address,
        on_packet: PacketHandler,
        on_stream: StreamHandler,
        server_ctx: ssl.SSLContext | None,
    ) -> None:
        stream: trio.abc.Stream = sock_stream
        try:
            if server_ctx is not None:
                tls_stream = trio.SSLStream(sock_stream, server_ctx, server_side=True)
                with trio.fail_after(self.packet_write_timeout):
                    await tls_stream.do_handshake()
                stream = tls_stream
            with trio.fail_after(self.packet_write_timeout):
                first = await stream.receive_some(1)
            if not first:
                return
            if first[0] == wire.DskitConnectionType.STREAM:
                await on_stream(_Prefixed(stream, b""), peer)
                return
            if first[0] != wire.DskitConnectionType.PACKET:
                self.bad_connections += 1
                return
            data = bytearray(first)
            with trio.fail_after(self.packet_write_timeout):
                while len(data) <= MAX_PACKET_BYTES:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    data += chunk
            if len(data) > MAX_PACKET_BYTES:
                self.bad_connections += 1
                return
            try:
                packet = wire.decode_dskit_packet(bytes(data))
            except wire.WireError:
                self.bad_connections += 1
                return
            if not packet.digest_ok:
                self.digest_mismatches += 1  # dskit logs it and still delivers
            try:
                from_addr = parse_address(packet.from_addr)
            except ValueError:
                from_addr = peer
            on_packet(packet.payload, from_addr)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
            self.bad_connections += 1
        except Exception:  # whatever a handler raises must not reach the accept loop's nursery
            self.bad_connections += 1
        finally:
            await close_quietly(stream)

    async def _connect(self, addr: Address, timeout: float) -> trio.abc.Stream:
        try:
            with trio.fail_after(timeout):
                sock_stream = await trio.open_tcp_stream(addr[0], addr[1])
                if self._client_ctx is None:
                    return sock_stream
                tls_stream = trio.SSLStream(
                    sock_stream, self._client_ctx, server_hostname=self.tls.server_name or addr[0]
                )
                await tls_stream.do_handshake()
                return tls_stream
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise TransportError(f"tcp dial to {format_address(addr)} failed: {exc}") from exc

    async def send_packet(self, addr: Address, data: bytes) -> None:
        stream = await self._connect(addr, self.packet_dial_timeout)
        try:
            with trio.fail_after(self.packet_write_timeout):
                await stream.send_all(wire.encode_dskit_packet(format_address(self.local_address), data))
        except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            raise TransportError(f"packet to {format_address(addr)} failed: {exc}") from exc
        finally:
            await close_quietly(stream)

    async def dial(self, addr: Address, timeout: float) -> trio.abc.Stream:
        stream = await self._connect(addr, timeout)
        try:
            await stream.send_all(bytes([wire.DskitConnectionType.STREAM]))
        except (trio.BrokenResourceError, OSError) as exc:
            await close_quietly(stream)
            raise TransportError(f"stream to {format_address(addr)} failed: {exc}") from exc
        return stream


class _Prefixed(trio.abc.Stream):
    """A stream with some bytes already read put back in front."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self.prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix, b""
            return out
        return bytes(await self.inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.inner, trio.abc.HalfCloseableStream):
            await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()
