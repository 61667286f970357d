# Benchmarks of the memberlist wire codec beside its peers, via pytest-benchmark (not tests: nothing
# here asserts on wall-clock time).
# Owns: the "wire" groups — pyro_core.memberlist.wire's encode and decode rates, each next to a peer
# measured in the same run. Every pair is its own table (``benchmark.group`` = "wire-..."; the
# marker's "wire" only shows when the group is not set): a round's work is described in
# ``extra_info`` with the keys bench/report.py reads (``label``, ``ops``, ``unit``, ``impl``,
# ``baseline`` marks the pair's peer), so the report prints pyro-core's throughput as a ratio of the
# peer's.
#   - encode_message / decode_message of 1,000 Alive and 1,000 Ping messages; peer: plain
#     ``msgpack.packb`` / ``unpackb`` of the equivalent dicts (Go field names as keys, values already
#     as the wire holds them), so the ratio is what the Go-compatible field handling costs (field
#     sorting, nil for empty []byte, omitempty, type and range checks, building the dataclass).
#   - make_compound + encode_packet, and decode_packet, of a compound of 10 Alive messages with LZW
#     compression (compress=True); peer: the same packet without compression.
#   - encode_push_pull / decode_push_pull of 100 node states (no user state); peers: msgpack packing
#     the header and the 100 state dicts, and a msgpack Unpacker reading them back as dicts.
#   - StreamDecoder fed that push/pull in 1,400-byte chunks (how a connection delivers it); peer: the
#     whole message in one feed.
# Run: python -m pytest bench/test_bench_wire.py --benchmark-only
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from pyro_core.memberlist import wire

N_MESSAGES = 1_000  # messages per round in the message benchmarks
N_COMPOUND = 10  # Alive messages in the compound packet
N_STATES = 100  # node states in the push/pull
CHUNK = 1_400  # bytes per StreamDecoder.feed in the chunked benchmark
VSN = bytes((1, 5, 2, 0, 0, 0))  # [pmin, pmax, pcur, dmin, dmax, dcur] as memberlist sends it
PORT = 7946


# -- helpers (extra_info conventions of bench/test_bench_ring.py, read by bench/report.py) ----------
def run(
    benchmark: Any,
    fn: Callable[[], object],
    *,
    group: str,
    label: str,
    ops: int,
    unit: str,
    peer: bool = False,
    **extra: Any,
) -> None:
    """Time ``fn`` in the pair's table ``group``; ``peer`` marks the pair's baseline."""
    benchmark.group = group
    benchmark.extra_info.update(
        {
            "label": label,
            "ops": ops,
            "unit": unit,
            "impl": "peer" if peer else "pyro-core",
            "baseline": peer,
            **extra,
        }
    )
    benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    median = stats.stats.median
    benchmark.extra_info["ns_per_op"] = median / ops * 1e9
    benchmark.extra_info["ops_per_s"] = ops / median if median > 0 else float("inf")


def addr(i: int) -> bytes:
    return bytes((10, 0, i // 250, i % 250 + 1))


def node(i: int) -> str:
    return f"ingester-{i:03d}"


# -- workloads ---------------------------------------------------------------------------------------
def alive_messages() -> list[wire.Alive]:
    return [wire.Alive(1_000 + i, node(i % 500), addr(i % 500), PORT, b"", VSN) for i in range(N_MESSAGES)]


def ping_messages() -> list[wire.Ping]:
    return [
        wire.Ping(40_000 + i, node((i + 1) % 500), addr(i % 500), PORT, node(i % 500))
        for i in range(N_MESSAGES)
    ]


def alive_dict(m: wire.Alive) -> dict[bytes, object]:
    """What the peer packs: the Alive map exactly as it goes on the wire (keys sorted, nil Meta)."""
    return {
        b"Addr": m.addr,
        b"Incarnation": m.incarnation,
        b"Meta": m.meta or None,
        b"Node": m.node.encode(),
        b"Port": m.port,
        b"Vsn": m.vsn,
    }


def ping_dict(m: wire.Ping) -> dict[bytes, object]:
    return {
        b"Node": m.node.encode(),
        b"SeqNo": m.seq_no,
        b"SourceAddr": m.source_addr,
        b"SourceNode": m.source_node.encode(),
        b"SourcePort": m.source_port,
    }


def state_dict(s: wire.PushNodeState) -> dict[bytes, object]:
    return {
        b"Addr": s.addr,
        b"Incarnation": s.incarnation,
        b"Meta": s.meta or None,
        b"Name": s.name.encode(),
        b"Port": s.port,
        b"State": s.state,
        b"Vsn": s.vsn,
    }


def push_states() -> list[wire.PushNodeState]:
    return [wire.PushNodeState(node(i), addr(i), PORT, b"", 10 + i, 0, VSN) for i in range(N_STATES)]


def compound_of_alives() -> bytes:
    return wire.make_compound([wire.encode_message(m) for m in alive_messages()[:N_COMPOUND]])


# -- messages: encode_message / decode_message vs msgpack --------------------------------------------
MESSAGES: dict[str, tuple[Callable[[], list[Any]], Callable[[Any], dict[bytes, object]]]] = {
    "Alive": (alive_messages, alive_dict),
    "Ping": (ping_messages, ping_dict),
}


@pytest.mark.benchmark(group="wire")
@pytest.mark.parametrize("who", ["msgpack", "pyro-core"])
@pytest.mark.parametrize("kind", list(MESSAGES))
def test_encode_message(benchmark: Any, kind: str, who: str) -> None:
    build, as_dict = MESSAGES[kind]
    msgs = build()
    type_byte = bytes([type(msgs[0]).TYPE])
    dicts = [as_dict(m) for m in msgs]
    packb = msgpack.packb
    encode = wire.encode_message
    # Same bytes on both sides: the peer does the packing alone, nothing of the field handling.
    assert all(
        type_byte + packb(d, use_bin_type=False) == encode(m) for d, m in zip(dicts, msgs, strict=True)
    )

    def pyro() -> None:
        for m in msgs:
            encode(m)

    def peer() -> None:
        for d in dicts:
            type_byte + packb(d, use_bin_type=False)

    run(
        benchmark,
        peer if who == "msgpack" else pyro,
        group=f"wire-encode {kind}",
        label=f"msgpack.packb(dict) {kind}" if who == "msgpack" else f"wire.encode_message({kind})",
        ops=len(msgs),
        unit="message",
        peer=who == "msgpack",
        bytes=len(encode(msgs[0])),
    )


@pytest.mark.benchmark(group="wire")
@pytest.mark.parametrize("who", ["msgpack", "pyro-core"])
@pytest.mark.parametrize("kind", list(MESSAGES))
def test_decode_message(benchmark: Any, kind: str, who: str) -> None:
    build, as_dict = MESSAGES[kind]
    msgs = build()
    datas = [wire.encode_message(m) for m in msgs]
    unpackb = msgpack.unpackb
    decode = wire.decode_message
    assert [decode(d) for d in datas] == msgs
    assert [unpackb(d[1:], raw=True) for d in datas] == [as_dict(m) for m in msgs]

    def pyro() -> None:
        for d in datas:
            decode(d)

    def peer() -> None:
        for d in datas:
            unpackb(d[1:], raw=True)

    run(
        benchmark,
        peer if who == "msgpack" else pyro,
        group=f"wire-decode {kind}",
        label=f"msgpack.unpackb {kind} (dict)" if who == "msgpack" else f"wire.decode_message({kind})",
        ops=len(datas),
        unit="message",
        peer=who == "msgpack",
        bytes=len(datas[0]),
    )


# -- packets: a compound of 10 Alive messages, with and without LZW ----------------------------------
@pytest.mark.benchmark(group="wire")
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "lzw"])
def test_encode_packet(benchmark: Any, compress: bool) -> None:
    parts = [wire.encode_message(m) for m in alive_messages()[:N_COMPOUND]]
    make_compound, encode_packet = wire.make_compound, wire.encode_packet
    packet = encode_packet(make_compound(parts), compress=compress)
    assert packet[0] == (wire.MessageType.COMPRESS if compress else wire.MessageType.COMPOUND)
    run(
        benchmark,
        lambda: encode_packet(make_compound(parts), compress=compress),
        group=f"wire-encode-packet compound of {N_COMPOUND} Alive",
        label=f"make_compound + encode_packet({'compress=True' if compress else 'no compression'})",
        ops=1,
        unit="packet",
        peer=not compress,
        bytes=len(packet),
    )


@pytest.mark.benchmark(group="wire")
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "lzw"])
def test_decode_packet(benchmark: Any, compress: bool) -> None:
    compound = compound_of_alives()
    packet = wire.encode_packet(compound, compress=compress)
    decode_packet = wire.decode_packet
    assert decode_packet(packet) == alive_messages()[:N_COMPOUND]
    run(
        benchmark,
        lambda: decode_packet(packet),
        group=f"wire-decode-packet compound of {N_COMPOUND} Alive",
        label=f"decode_packet ({'LZW-compressed' if compress else 'no compression'}, {len(packet)} B)",
        ops=1,
        unit="packet",
        peer=not compress,
        bytes=len(packet),
        uncompressed_bytes=len(compound),
    )


# -- push/pull: 100 node states -----------------------------------------------------------------------
def _peer_pack_push_pull(header: dict[bytes, object], dicts: list[dict[bytes, object]]) -> bytes:
    packer = msgpack.Packer(use_bin_type=False)
    out = bytearray(b"\x06")
    out += packer.pack(header)
    for d in dicts:
        out += packer.pack(d)
    return bytes(out)


def _peer_unpack_push_pull(data: bytes) -> list[object]:
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(memoryview(data)[1:])
    return list(unpacker)


@pytest.mark.benchmark(group="wire")
@pytest.mark.parametrize("who", ["msgpack", "pyro-core"])
def test_encode_push_pull(benchmark: Any, who: str) -> None:
    states = push_states()
    dicts = [state_dict(s) for s in states]
    header: dict[bytes, object] = {b"Join": False, b"Nodes": len(states), b"UserStateLen": 0}
    data = wire.encode_push_pull(states, b"", False)
    assert _peer_pack_push_pull(header, dicts) == data
    fn = (
        (lambda: _peer_pack_push_pull(header, dicts))
        if who == "msgpack"
        else (lambda: wire.encode_push_pull(states, b"", False))
    )
    run(
        benchmark,
        fn,
        group=f"wire-encode-push-pull {N_STATES} node states",
        label="msgpack Packer: header + 100 state dicts" if who == "msgpack" else "wire.encode_push_pull",
        ops=1,
        unit="push/pull",
        peer=who == "msgpack",
        bytes=len(data),
    )


@pytest.mark.benchmark(group="wire")
@pytest.mark.parametrize("who", ["msgpack", "pyro-core"])
def test_decode_push_pull(benchmark: Any, who: str) -> None:
    states = push_states()
    data = wire.encode_push_pull(states, b"", False)
    assert wire.decode_push_pull(data).states == tuple(states)
    assert len(_peer_unpack_push_pull(data)) == 1 + len(states)
    fn = (lambda: _peer_unpack_push_pull(data)) if who == "msgpack" else (lambda: wire.decode_push_pull(data))
    run(
        benchmark,
        fn,
        group=f"wire-decode-push-pull {N_STATES} node states",
        label="msgpack Unpacker: header + 100 dicts" if who == "msgpack" else "wire.decode_push_pull",
        ops=1,
        unit="push/pull",
        peer=who == "msgpack",
        bytes=len(data),
    )


@pytest.mark.benchmark(group="wire")
@pytest.mark.parametrize("chunked", [False, True], ids=["one-feed", "chunked"])
def test_stream_decoder(benchmark: Any, chunked: bool) -> None:
    states = push_states()
    data = wire.encode_push_pull(states, b"", False)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] if chunked else [data]
    Decoder = wire.StreamDecoder

    def feed_all() -> wire.StreamMessage:
        decoder = Decoder(label_header=False)
        for chunk in chunks:
            out = decoder.feed(chunk)
            if out:
                return out[0]
        raise AssertionError("the push/pull did not complete")

    result = feed_all()
    assert isinstance(result, wire.PushPull) and result.states == tuple(states)
    run(
        benchmark,
        feed_all,
        group=f"wire-stream-decoder push/pull of {N_STATES} node states",
        label=(
            f"StreamDecoder, {len(chunks)} feeds of {CHUNK:,} B"
            if chunked
            else f"StreamDecoder, one feed of {len(data):,} B"
        ),
        ops=1,
        unit="push/pull",
        peer=not chunked,
        bytes=len(data),
        chunks=len(chunks),
    )
