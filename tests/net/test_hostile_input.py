# Hostile input over real sockets: random datagrams, truncated and oversized packets, garbage and
# stalled TCP streams, bad dskit framing — a running member keeps working, its state is intact,
# and the rejects are counted.
from __future__ import annotations

import contextlib
import random
import socket

import trio

from pyro_core.memberlist.config import default_local_config
from pyro_core.net.dskit_tcp import DskitTCPTransport
from pyro_core.net.node import MemberlistNode
from pyro_core.net.udp import NetTransport


async def _garbage_stream(addr: tuple[str, int], data: bytes, close: bool = True) -> None:
    try:
        stream = await trio.open_tcp_stream(*addr)
    except OSError:
        return
    try:
        await stream.send_all(data)
        if not close:
            await trio.sleep(0.3)  # a peer that stalls mid-message
    except (trio.BrokenResourceError, OSError):
        pass
    finally:
        await stream.aclose()


def test_udp_member_survives_hostile_packets_and_streams() -> None:
    async def main() -> None:
        rng = random.Random(7)
        async with trio.open_nursery() as nursery:
            a = MemberlistNode(default_local_config("a", tcp_timeout=0.5), NetTransport("127.0.0.1", 0))
            b = MemberlistNode(default_local_config("b", tcp_timeout=0.5), NetTransport("127.0.0.1", 0))
            await nursery.start(a.run)
            await nursery.start(b.run)
            await b.join([a.address])
            udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1400))) for _ in range(300)]
            payloads += [
                b"\x07\xff",
                b"\x09\x81\xa4Algo\x00",
                b"\x0c\x00\x00\x00\x00",
                b"\xf4\xff",
                b"\x00" * 65000,
            ]
            for data in payloads:
                await udp.sendto(data, a.address)
            for data in payloads[:40]:
                await _garbage_stream(a.address, data)
            await _garbage_stream(a.address, b"\x06\x85", close=False)  # a push/pull that never finishes
            await trio.sleep(1)
            assert a.core is not None and b.core is not None
            assert a.core.stats.bad_packets >= 250
            assert a.stream_errors >= 20
            assert {n.name for n in a.core.members()} == {"a", "b"}
            await b.join([a.address])  # still serving
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_dskit_member_survives_bad_framing() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            transport = DskitTCPTransport("127.0.0.1", 0, packet_write_timeout=0.5)
            a = MemberlistNode(default_local_config("a"), transport)
            b = MemberlistNode(default_local_config("b"), DskitTCPTransport("127.0.0.1", 0))
            await nursery.start(a.run)
            await nursery.start(b.run)
            for data in [
                b"\x07",
                b"\x01",
                b"\x01\xff" + b"x" * 10,
                b"\x01\x03abc" + b"\x00" * 20,
                b"",
                b"\x02\xff\xff",
            ]:
                await _garbage_stream(a.address, data)
            await trio.sleep(1)
            assert transport.bad_connections + transport.digest_mismatches >= 3
            await b.join([a.address])
            with trio.move_on_after(10):
                while a.core is None or a.core.num_members() != 2:
                    await trio.sleep(0.05)
            assert a.core is not None and a.core.num_members() == 2
            nursery.cancel_scope.cancel()

    trio.run(main)


def _packet(msg: object) -> bytes:
    from pyro_core.memberlist import wire

    return wire.encode_packet(wire.encode_message(msg))  # type: ignore[arg-type]


def test_an_unrefutable_accusation_wraps_the_incarnation_like_go_and_the_node_lives() -> None:
    from pyro_core.memberlist import wire

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = MemberlistNode(default_local_config("a"), NetTransport("127.0.0.1", 0))
            b = MemberlistNode(default_local_config("b"), NetTransport("127.0.0.1", 0))
            await nursery.start(a.run)
            await nursery.start(b.run)
            udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for msg in (
                wire.Suspect(incarnation=0xFFFFFFFF, node="a", from_="evil"),
                wire.Dead(incarnation=0xFFFFFFFF, node="a", from_="evil"),
                wire.Alive(incarnation=0xFFFFFFFF, node="a", addr=b"\x7f\0\0\x09", port=1, vsn=bytes([1, 5, 2, 0, 0, 0])),
            ):
                await udp.sendto(_packet(msg), a.address)
            await trio.sleep(0.5)
            assert a.core is not None
            assert a.core.local_node.incarnation <= 0xFFFFFFFF  # Go's uint32 arithmetic
            a.core.push_pull_request(False)  # still encodable
            await b.join([a.address])  # and still serving
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_an_indirect_ping_flood_is_capped_and_does_not_stall_the_node() -> None:
    from pyro_core.memberlist import wire
    from pyro_core.memberlist.state import MAX_RELAYS

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = MemberlistNode(default_local_config("a"), NetTransport("127.0.0.1", 0))
            b = MemberlistNode(default_local_config("b"), NetTransport("127.0.0.1", 0))
            await nursery.start(a.run)
            await nursery.start(b.run)
            udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(3 * MAX_RELAYS):
                req = wire.IndirectPing(seq_no=i, target=b"\x7f\0\0\x01", port=9, node="x", nack=True)
                await udp.sendto(_packet(req), a.address)
            await trio.sleep(0.3)
            assert a.core is not None
            assert len(a.core._relays) <= MAX_RELAYS
            assert a.core.stats.messages.get("relay_dropped", 0) > 0
            await b.join([a.address])
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_acks_aimed_at_a_blackhole_never_pile_up_tasks_or_sockets() -> None:
    from pyro_core.memberlist import wire
    from pyro_core.net.node import SEND_QUEUE, SENDERS

    async def main() -> None:
        hole = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await hole.bind(("127.0.0.1", 0))
        hole.listen(1)  # never accepts: dials to it hang until their timeout
        hole_port = hole.getsockname()[1]
        async with trio.open_nursery() as nursery:
            transport = DskitTCPTransport("127.0.0.1", 0)
            a = MemberlistNode(default_local_config("a"), transport)
            await nursery.start(a.run)
            evil = DskitTCPTransport("127.0.0.1", 0, advertise=("127.0.0.1", 1))  # sends only
            for i in range(SEND_QUEUE + 300):
                ping = wire.Ping(seq_no=i, node="", source_addr=b"\x7f\0\0\x01", source_port=hole_port)
                with contextlib.suppress(OSError):
                    await evil.send_packet(a.address, wire.encode_packet(wire.encode_message(ping)))
            await trio.sleep(0.5)
            assert a._nursery is not None
            assert len(a._nursery.child_tasks) <= SENDERS + 8  # senders, driver, transport: not one per ack
            assert a.dropped_packets > 0
            nursery.cancel_scope.cancel()
        hole.close()

    trio.run(main)
