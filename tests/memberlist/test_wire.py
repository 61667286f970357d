# Tests of pyro_core.memberlist.wire: memberlist's wire format, sans-I/O.
# Owns: golden bytes written by hand from the msgpack spec (so Go field names, key order, raw strings,
# nil slices and integer widths are checked independently of the encoder), hypothesis round trips of
# every message, "only WireError ever escapes" on random and truncated input, compound / CRC / label /
# encryption / compression pipelines in every combination, incremental stream decoding fed in any
# chunking, dskit's TCP packet framing, and byte-for-byte interop with Go through
# tests/interop/memberlist_wire (built here against Debian's memberlist 0.2.2 and go-msgpack 0.5.5;
# a missing toolchain fails the interop tests, it does not skip them).
from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import random
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from gobuild import build_go_program
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_core.memberlist import wire
from pyro_core.memberlist.security import Keyring
from pyro_core.memberlist.wire import (
    Ack,
    Alive,
    Compress,
    Dead,
    Err,
    IndirectPing,
    MessageType,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    PushPullHeader,
    StreamDecoder,
    Suspect,
    UserMessage,
    UserMsgHeader,
    WireError,
)

VSN = bytes([1, 5, 2, 0, 0, 0])
LOCALHOST = bytes([127, 0, 0, 1])
KEY16, KEY24, KEY32 = bytes(range(16)), bytes(range(100, 124)), bytes(range(200, 232))


# -- msgpack by hand (spec: fixmap 0x80|n, fixstr 0xa0|n, str16 0xda, uint8 0xcc, uint16 0xcd,
# uint32 0xce, nil 0xc0, false 0xc2, true 0xc3; positive fixint 0x00-0x7f) -------------------------
def fixmap(n: int) -> bytes:
    assert n < 16
    return bytes([0x80 | n])


def raw(s: bytes | str) -> bytes:
    """A legacy raw string: fixstr below 32 bytes, else str16 (go-msgpack never writes str8)."""
    b = s.encode() if isinstance(s, str) else s
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def uint(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return b"\xcc" + bytes([n])
    if n < 0x10000:
        return b"\xcd" + struct.pack(">H", n)
    return b"\xce" + struct.pack(">I", n)


NIL, FALSE, TRUE = b"\xc0", b"\xc2", b"\xc3"


GOLDEN: list[tuple[Any, bytes]] = [
    (Ping(seq_no=1, node="a"), b"\x00" + fixmap(2) + raw("Node") + raw("a") + raw("SeqNo") + b"\x01"),
    (
        Ping(seq_no=300, node="target", source_addr=LOCALHOST, source_port=7946, source_node="me"),
        b"\x00"
        + fixmap(5)
        + raw("Node") + raw("target")
        + raw("SeqNo") + b"\xcd\x01\x2c"
        + raw("SourceAddr") + raw(LOCALHOST)
        + raw("SourceNode") + raw("me")
        + raw("SourcePort") + b"\xcd\x1f\x0a",
    ),
    (
        IndirectPing(seq_no=7, target=LOCALHOST, port=7946, node="n1", nack=True),
        b"\x01"
        + fixmap(5)
        + raw("Nack") + TRUE
        + raw("Node") + raw("n1")
        + raw("Port") + b"\xcd\x1f\x0a"
        + raw("SeqNo") + b"\x07"
        + raw("Target") + raw(LOCALHOST),
    ),
    (
        IndirectPing(seq_no=0, target=b"", port=0, node="", source_addr=b"\x0a\x00\x00\x01", source_port=1,
                     source_node="s"),
        b"\x01"
        + fixmap(8)
        + raw("Nack") + FALSE
        + raw("Node") + raw("")
        + raw("Port") + b"\x00"
        + raw("SeqNo") + b"\x00"
        + raw("SourceAddr") + raw(b"\x0a\x00\x00\x01")
        + raw("SourceNode") + raw("s")
        + raw("SourcePort") + b"\x01"
        + raw("Target") + NIL,
    ),
    (Ack(seq_no=70000), b"\x02" + fixmap(2) + raw("Payload") + NIL + raw("SeqNo") + b"\xce\x00\x01\x11\x70"),
    (Ack(seq_no=2**32 - 1, payload=b"pong"),
     b"\x02" + fixmap(2) + raw("Payload") + raw("pong") + raw("SeqNo") + b"\xce\xff\xff\xff\xff"),
    (Nack(seq_no=255), b"\x0b" + fixmap(1) + raw("SeqNo") + b"\xcc\xff"),
    (Err(error="boom"), b"\x0d" + fixmap(1) + raw("Error") + raw("boom")),
    (
        Suspect(incarnation=128, node="victim", from_="accuser"),
        b"\x03" + fixmap(3) + raw("From") + raw("accuser") + raw("Incarnation") + b"\xcc\x80"
        + raw("Node") + raw("victim"),
    ),
    (
        Alive(incarnation=5, node="node-1", addr=LOCALHOST, port=7946, vsn=VSN),
        b"\x04"
        + fixmap(6)
        + raw("Addr") + raw(LOCALHOST)
        + raw("Incarnation") + b"\x05"
        + raw("Meta") + NIL
        + raw("Node") + raw("node-1")
        + raw("Port") + b"\xcd\x1f\x0a"
        + raw("Vsn") + raw(VSN),
    ),
    (
        Alive(incarnation=1, node="x" * 40, addr=bytes(16), port=65535, meta=b"m" * 33, vsn=b""),
        b"\x04"
        + fixmap(6)
        + raw("Addr") + raw(bytes(16))
        + raw("Incarnation") + b"\x01"
        + raw("Meta") + b"\xda\x00\x21" + b"m" * 33
        + raw("Node") + b"\xda\x00\x28" + b"x" * 40
        + raw("Port") + b"\xcd\xff\xff"
        + raw("Vsn") + NIL,
    ),
    (
        Dead(incarnation=65536, node="gone", from_="gone"),
        b"\x05" + fixmap(3) + raw("From") + raw("gone") + raw("Incarnation") + b"\xce\x00\x01\x00\x00"
        + raw("Node") + raw("gone"),
    ),
    (
        PushPullHeader(nodes=2, user_state_len=40, join=True),
        b"\x06" + fixmap(3) + raw("Join") + TRUE + raw("Nodes") + b"\x02" + raw("UserStateLen") + b"\x28",
    ),
    (
        PushPullHeader(nodes=-1, user_state_len=-200, join=False),  # Go int: negative widths too
        b"\x06" + fixmap(3) + raw("Join") + FALSE + raw("Nodes") + b"\xff" + raw("UserStateLen") + b"\xd1\xff\x38",
    ),
    (Compress(algo=0, buf=b"xyz"), b"\x09" + fixmap(2) + raw("Algo") + b"\x00" + raw("Buf") + raw("xyz")),
    (UserMessage(b"\x00hello"), b"\x08\x00hello"),
]  # fmt: skip

GOLDEN_BODIES: list[tuple[Any, bytes]] = [
    (
        PushNodeState(name="n", addr=LOCALHOST, port=7946, meta=b"", incarnation=3, state=1, vsn=VSN),
        fixmap(7)
        + raw("Addr") + raw(LOCALHOST)
        + raw("Incarnation") + b"\x03"
        + raw("Meta") + NIL
        + raw("Name") + raw("n")
        + raw("Port") + b"\xcd\x1f\x0a"
        + raw("State") + b"\x01"
        + raw("Vsn") + raw(VSN),
    ),
    (UserMsgHeader(user_msg_len=5), fixmap(1) + raw("UserMsgLen") + b"\x05"),
]  # fmt: skip


@pytest.mark.parametrize(("msg", "expected"), GOLDEN, ids=lambda x: type(x).__name__)
def test_encoding_matches_hand_written_msgpack(msg: Any, expected: bytes) -> None:
    assert wire.encode_message(msg) == expected
    assert wire.decode_message(expected) == msg


@pytest.mark.parametrize(("msg", "expected"), GOLDEN_BODIES, ids=lambda x: type(x).__name__)
def test_typeless_structs_match_hand_written_msgpack(msg: Any, expected: bytes) -> None:
    assert wire.encode_body(msg) == expected
    assert wire.decode_body(type(msg), expected + b"tail", 0) == (msg, len(expected))
    with pytest.raises(TypeError):
        wire.encode_message(msg)


def test_message_type_values_are_the_protocol() -> None:
    assert [(t.name, int(t)) for t in MessageType] == [
        ("PING", 0), ("INDIRECT_PING", 1), ("ACK", 2), ("SUSPECT", 3), ("ALIVE", 4), ("DEAD", 5),
        ("PUSH_PULL", 6), ("COMPOUND", 7), ("USER", 8), ("COMPRESS", 9), ("ENCRYPT", 10), ("NACK", 11),
        ("HAS_CRC", 12), ("ERR", 13), ("HAS_LABEL", 244),
    ]  # fmt: skip


# -- decoding is liberal where go-msgpack is ------------------------------------------------------------
def packed(obj: Any, **kw: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=kw.pop("use_bin_type", False), **kw)


def test_decode_accepts_any_key_order_and_ignores_unknown_keys() -> None:
    body = {b"Vsn": VSN, b"Port": 7946, b"Extra": [1, {b"x": None}], b"Node": b"n", b"Addr": LOCALHOST,
            b"Incarnation": 9, b"Meta": b"mm", b"Future": 1.5}  # fmt: skip
    assert wire.decode_message(b"\x04" + packed(body)) == Alive(9, "n", LOCALHOST, 7946, b"mm", VSN)


@pytest.mark.parametrize(
    "encoded_seq",
    [b"\x07", b"\xcc\x07", b"\xcd\x00\x07", b"\xce\x00\x00\x00\x07", b"\xcf" + (7).to_bytes(8, "big"),
     b"\xd0\x07", b"\xd1\x00\x07", b"\xd2\x00\x00\x00\x07", b"\xd3" + (7).to_bytes(8, "big")],
)  # fmt: skip
def test_decode_accepts_every_integer_width(encoded_seq: bytes) -> None:
    data = b"\x0b" + fixmap(1) + raw("SeqNo") + encoded_seq
    assert wire.decode_message(data) == Nack(7)


def test_decode_accepts_str8_bin_nil_array_form_bool_ints_and_trailing_bytes() -> None:
    # str8 / bin8 for strings and bytes (msgpack's new spec)
    data = b"\x00" + packed({"SeqNo": 1, "Node": "n" * 40, "SourceAddr": LOCALHOST}, use_bin_type=True)
    assert wire.decode_message(data) == Ping(1, "n" * 40, LOCALHOST)
    # nil anywhere decodes to Go's zero value; a nil struct is all zeros
    assert wire.decode_message(b"\x04" + packed({"Node": None, "Addr": None, "Port": None})) == Alive(
        0, "", b"", 0, b"", b""
    )
    assert wire.decode_message(b"\x02\xc0") == Ack(0)
    # array form, in Go source order; extra elements ignored
    assert wire.decode_message(b"\x03" + packed([4, "n", "f", "extra"])) == Suspect(4, "n", "f")
    # go-msgpack reads fixint 0/1 as a bool
    assert wire.decode_message(b"\x06" + packed({"Join": 1, "Nodes": 0})) == PushPullHeader(0, 0, True)
    # bytes after the object are ignored, as memberlist's decode() does
    assert wire.decode_message(wire.encode_message(Nack(3)) + b"\xc1garbage") == Nack(3)


def test_names_are_go_byte_strings_and_round_trip_any_bytes() -> None:
    name = b"\xff\xfe caf\xc3\xa9 \xed\xa0\x80"
    data = b"\x05" + packed({"Incarnation": 1, "Node": name, "From": "x"})
    msg = wire.decode_message(data)
    assert isinstance(msg, Dead)
    assert msg.node.encode("utf-8", "surrogateescape") == name
    assert wire.encode_message(msg) == wire.encode_message(wire.decode_message(wire.encode_message(msg)))
    assert wire.decode_message(wire.encode_message(msg)) == msg
    assert wire.decode_message(wire.encode_message(Dead(1, "nöde-ü ✓", "x"))).node == "nöde-ü ✓"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "missing message type byte"),
        (b"\x0e\x80", "unknown message type 14"),
        (b"\xc8\x80", "unknown message type 200"),
        (b"\x07\x00", "framing"),
        (b"\x0c\x00\x00\x00\x00", "framing"),
        (b"\x0a\x80", "framing"),
        (b"\xf4\x80", "framing"),
        (b"\x00", "truncated"),
        (b"\x00\x82\xa4Node", "truncated"),
        (b"\x00\xc1", "invalid msgpack"),
        (b"\x00\x05", "expected a msgpack map"),
        (b"\x00" + packed({"SeqNo": "1"}), "expected an integer"),
        (b"\x00" + packed({"SeqNo": 2**32}), "overflows"),
        (b"\x00" + packed({"SeqNo": -1}), "overflows"),
        (b"\x00" + packed({"SeqNo": True}), "expected an integer"),
        (b"\x00" + packed({"SeqNo": 1.0}), "expected an integer"),
        (b"\x00" + packed({"SourcePort": 65536}), "overflows"),
        (b"\x09" + packed({"Algo": 256}), "overflows"),
        (b"\x00" + packed({"Node": 5}), "expected a string"),
        (b"\x00" + packed({"SourceAddr": [1]}), "expected bytes"),
        (b"\x01" + packed({"Nack": 2}), "expected a bool"),
        (b"\x06" + packed({"Nodes": 2**63}), "overflows"),
        (b"\x00" + packed({5: 1}), "is not a string"),
        (b"\x00" + packed({(1, 2): 1}), "is not a string"),
        (b"\x00\x81\x81\xa1a\x01\x01", "malformed msgpack"),  # a map as a map key: unhashable
    ],
)
def test_malformed_messages_raise_wire_error_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.decode_message(data)


@pytest.mark.parametrize(
    "msg",
    [Ping(-1, "a"), Ping(2**32, "a"), Ping(1, 5), Ping(1, "a", source_port=65536), Ack(True),  # type: ignore[arg-type]
     Alive(1, "n", "addr", 1), IndirectPing(1, b"", 1, "n", nack=1), Compress(256, b""),  # type: ignore[arg-type]
     PushPullHeader(2**63, 0, False), Dead(1, "\ud800", "x")],
)  # fmt: skip
def test_unencodable_values_raise_wire_error(msg: Any) -> None:
    with pytest.raises(WireError):
        wire.encode_message(msg)


# -- hypothesis: every message type round-trips ---------------------------------------------------------
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
go_str = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))
blob = st.binary(max_size=70)

STRUCTS = {
    Ping: st.builds(Ping, u32, go_str, blob, u16, go_str),
    IndirectPing: st.builds(IndirectPing, u32, blob, u16, go_str, st.booleans(), blob, u16, go_str),
    Ack: st.builds(Ack, u32, blob),
    Nack: st.builds(Nack, u32),
    Err: st.builds(Err, go_str),
    Suspect: st.builds(Suspect, u32, go_str, go_str),
    Alive: st.builds(Alive, u32, go_str, blob, u16, blob, blob),
    Dead: st.builds(Dead, u32, go_str, go_str),
    PushPullHeader: st.builds(PushPullHeader, i64, i64, st.booleans()),
    Compress: st.builds(Compress, st.integers(0, 255), st.binary(max_size=300)),
    UserMessage: st.builds(UserMessage, st.binary(max_size=100)),
}
node_states = st.builds(PushNodeState, go_str, blob, u16, blob, u32, i64, blob)
any_message = st.one_of(*STRUCTS.values())


@pytest.mark.parametrize("cls", list(STRUCTS), ids=lambda c: c.__name__)
def test_every_message_type_round_trips(cls: type) -> None:
    @settings(max_examples=150, deadline=None)
    @given(STRUCTS[cls])
    def check(msg: Any) -> None:
        data = wire.encode_message(msg)
        assert data[0] == msg.TYPE
        assert wire.decode_message(data) == msg
        assert wire.encode_message(wire.decode_message(data)) == data

    check()


@settings(max_examples=150, deadline=None)
@given(node_states, st.integers(0, 2**63 - 1))
def test_typeless_structs_round_trip(state: PushNodeState, user_len: int) -> None:
    body = wire.encode_body(state)
    assert wire.decode_body(PushNodeState, body) == (state, len(body))
    header = wire.encode_body(UserMsgHeader(user_len))
    assert wire.decode_body(UserMsgHeader, header) == (UserMsgHeader(user_len), len(header))


@settings(max_examples=150, deadline=None)
@given(any_message, st.randoms(use_true_random=False))
def test_decoding_accepts_keys_in_any_order(msg: Any, rnd: random.Random) -> None:
    if isinstance(msg, UserMessage):
        return
    data = wire.encode_message(msg)
    fields = list(msgpack.unpackb(data[1:], raw=True).items())
    rnd.shuffle(fields)
    assert wire.decode_message(data[:1] + packed(dict(fields))) == msg


# -- only WireError ever escapes ------------------------------------------------------------------------
RING = Keyring([KEY16, KEY32])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_wire_error(data: bytes) -> None:
    for candidate in (data, bytes([data[0] % 14]) + data[1:] if data else data):
        for fn in (
            wire.decode_message,
            wire.decode_packet,
            lambda d: wire.decode_packet(d, keyring=RING, label="l"),
            lambda d: wire.decode_packet(d, strict=False),
            wire.split_compound,
            wire.strip_label,
            wire.strip_crc,
            wire.decompress_payload,
            wire.decode_dskit_packet,
            wire.decode_push_pull,
        ):
            with contextlib.suppress(WireError):
                fn(candidate)
        for kwargs in ({}, {"keyring": RING}, {"label": "l"}, {"label_header": False}):
            dec = StreamDecoder(**kwargs)  # type: ignore[arg-type]
            try:
                dec.feed(candidate)
                dec.feed_eof()
            except WireError:
                pass


def valid_packets() -> list[bytes]:
    msgs = [wire.encode_message(m) for m, _ in GOLDEN if not isinstance(m, Err | PushPullHeader | Compress)]
    compound = wire.make_compound(msgs)
    out = [
        *msgs,
        compound,
        wire.compress_payload(compound),
        wire.make_compound([wire.compress_payload(compound)]),
    ]
    out += [wire.encode_packet(compound, label=label, keyring=ring, crc=crc, compress=True)
            for label, ring, crc in itertools.product(["", "lab"], [None, RING], [False, True])]  # fmt: skip
    return out


def test_every_truncation_of_a_packet_raises_wire_error_or_keeps_complete_parts() -> None:
    for packet in valid_packets():
        for cut in range(len(packet)):
            for kw in ({}, {"label": "lab"}, {"keyring": RING}, {"label": "lab", "keyring": RING}):
                try:
                    msgs = wire.decode_packet(packet[:cut], **kw)  # type: ignore[arg-type]
                except WireError:
                    continue
                assert msgs == [] or all(m.TYPE in range(14) for m in msgs)


def test_every_truncation_of_a_message_raises_wire_error() -> None:
    for msg, data in GOLDEN:
        if isinstance(msg, UserMessage):
            continue
        for cut in range(len(data)):
            with pytest.raises(WireError):
                wire.decode_message(data[:cut])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(valid_packets()), st.integers(0, 10_000), st.integers(0, 255))
def test_corrupted_packets_only_raise_wire_error(packet: bytes, where: int, byte: int) -> None:
    data = bytearray(packet)
    data[where % len(data)] = byte
    for kw in ({}, {"label": "lab"}, {"keyring": RING}, {"label": "lab", "keyring": RING}):
        with contextlib.suppress(WireError):
            wire.decode_packet(bytes(data), **kw)  # type: ignore[arg-type]


# -- compound -------------------------------------------------------------------------------------------
def test_compound_with_zero_one_and_255_parts() -> None:
    assert wire.make_compound([]) == b"\x07\x00"
    assert wire.split_compound(b"\x07\x00") == ([], 0)
    ping = wire.encode_message(Ping(1, "a"))
    one = wire.make_compound([ping])
    assert one == b"\x07\x01" + struct.pack(">H", len(ping)) + ping
    assert wire.split_compound(one) == ([ping], 0)
    parts = [wire.encode_message(Nack(i)) for i in range(255)]
    many = wire.make_compound(parts)
    assert many[:2] == b"\x07\xff"
    assert wire.split_compound(many) == (parts, 0)
    assert wire.decode_packet(many) == [Nack(i) for i in range(255)]
    with pytest.raises(WireError, match="at most 255"):
        wire.make_compound([ping] * 256)
    with pytest.raises(WireError, match="65535"):
        wire.make_compound([bytes(65536)])
    assert wire.split_compound(wire.make_compound([b"", bytes(65535)])) == ([b"", bytes(65535)], 0)


def test_compound_with_a_cut_tail_keeps_the_complete_parts() -> None:
    parts = [wire.encode_message(Nack(i)) for i in range(5)]
    data = wire.make_compound(parts)
    assert wire.split_compound(data[:-1]) == (parts[:4], 1)
    cut_into_third = 2 + 10 + sum(map(len, parts[:2])) + 1
    assert wire.split_compound(data[:cut_into_third]) == (parts[:2], 3)
    assert wire.split_compound(data[:12]) == ([], 5)
    assert wire.decode_packet(data[:-1]) == [Nack(0), Nack(1), Nack(2), Nack(3)]
    with pytest.raises(WireError, match="length slice"):
        wire.split_compound(data[:11])
    with pytest.raises(WireError, match="missing compound length"):
        wire.split_compound(b"\x07")
    with pytest.raises(WireError, match="not a compound"):
        wire.split_compound(b"\x08\x00")


def test_bad_part_in_compound_raises_unless_lenient() -> None:
    good = wire.encode_message(Nack(1))
    for bad in (b"", b"\x0e", b"\x0b\xc1", b"\x0d" + wire.encode_message(Err("x"))[1:], b"\x06\x80"):
        data = wire.make_compound([good, bad, good])
        with pytest.raises(WireError):
            wire.decode_packet(data)
        assert wire.decode_packet(data, strict=False) == [Nack(1), Nack(1)]


# -- CRC and label --------------------------------------------------------------------------------------
def test_crc_header_layout_and_mismatch() -> None:
    msg = wire.encode_message(Ping(9, "n"))
    data = wire.add_crc(msg)
    assert data == b"\x0c" + struct.pack(">I", zlib.crc32(msg)) + msg
    assert wire.add_crc(b"123456789")[1:5] == bytes.fromhex("cbf43926")  # the CRC-32/IEEE check value
    assert wire.strip_crc(data) == msg
    assert wire.decode_packet(data) == [Ping(9, "n")]
    bad = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(WireError, match="checksum"):
        wire.strip_crc(bad)
    with pytest.raises(WireError, match="checksum"):
        wire.decode_packet(bad)
    with pytest.raises(WireError, match="no CRC header"):
        wire.strip_crc(msg)
    # shorter than a CRC header: memberlist treats [12] as a (unsupported) message type
    with pytest.raises(WireError, match=r"framing|not valid"):
        wire.decode_packet(b"\x0c\x00\x00")


def test_label_header_layout_and_errors() -> None:
    assert wire.add_label(b"x", "") == b"x"
    assert wire.add_label(b"x", "prod") == b"\xf4\x04prodx"
    assert wire.strip_label(b"\xf4\x04prodx") == ("prod", b"x")
    assert wire.strip_label(b"x") == ("", b"x")
    assert wire.strip_label(b"") == ("", b"")
    long = "l" * 255
    assert wire.strip_label(wire.add_label(b"", long)) == (long, b"")
    with pytest.raises(WireError, match="too long"):
        wire.add_label(b"", "l" * 256)
    with pytest.raises(WireError, match="too long"):
        wire.add_label(b"", "é" * 128)  # 256 bytes
    with pytest.raises(WireError, match="empty"):
        wire.strip_label(b"\xf4\x00x")
    for cut in (b"\xf4", b"\xf4\x04pro"):
        with pytest.raises(WireError, match="truncated"):
            wire.strip_label(cut)


def test_label_checks_on_receive() -> None:
    msg = wire.encode_message(Nack(1))
    labelled = wire.encode_packet(msg, label="prod")
    assert wire.decode_packet(labelled, label="prod") == [Nack(1)]
    with pytest.raises(WireError, match="unacceptable label 'prod'"):
        wire.decode_packet(labelled, label="dev")
    with pytest.raises(WireError, match="unacceptable label 'prod'"):
        wire.decode_packet(labelled)
    with pytest.raises(WireError, match="unacceptable label ''"):
        wire.decode_packet(msg, label="prod")
    # skip_inbound_label_check: unlabelled packets are taken as carrying our label, labelled ones refused
    assert wire.decode_packet(msg, label="prod", skip_inbound_label_check=True) == [Nack(1)]
    with pytest.raises(WireError, match="double"):
        wire.decode_packet(labelled, label="prod", skip_inbound_label_check=True)
    # the label is the AAD of the encryption, so the check also holds under skip_inbound_label_check
    sealed = wire.encode_packet(msg, label="prod", keyring=RING)
    assert wire.decode_packet(sealed[6:], label="prod", keyring=RING, skip_inbound_label_check=True) == [
        Nack(1)
    ]
    with pytest.raises(WireError, match="decrypt"):
        wire.decode_packet(sealed[6:], label="dev", keyring=RING, skip_inbound_label_check=True)


# -- compression ----------------------------------------------------------------------------------------
@pytest.fixture
def lzw_impl(impl: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a test with the compiled and with the pure LZW kernel."""
    monkeypatch.setattr(wire, "_lzw", lambda: impl.lzw)
    return impl


def test_compress_payload_layout_and_round_trip(lzw_impl: Any) -> None:
    payload = wire.encode_message(Alive(1, "node" * 10, LOCALHOST, 7946, b"meta" * 20, VSN))
    data = wire.compress_payload(payload)
    assert data[0] == MessageType.COMPRESS
    fields = msgpack.unpackb(data[1:], raw=True)
    assert list(fields) == [b"Algo", b"Buf"] and fields[b"Algo"] == 0
    assert fields[b"Buf"] == lzw_impl.lzw.compress(payload)
    assert wire.decompress_payload(data) == payload
    for bad in (wire.encode_message(Compress(1, fields[b"Buf"])), wire.encode_message(Compress(0, b"\xff\xff")),
                wire.encode_message(Compress(0, fields[b"Buf"][:-2])), b"\x08", b""):  # fmt: skip
        with pytest.raises(WireError):
            wire.decompress_payload(bad)


def test_decompression_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_DECOMPRESSED_BYTES", 1000)
    bomb = wire.compress_payload(b"\x08" + bytes(5000))
    with pytest.raises(WireError, match=r"max_size|limit"):
        wire.decode_packet(bomb)


def test_packet_compression_only_when_smaller(lzw_impl: Any) -> None:
    tiny = wire.encode_message(Nack(1))
    assert wire.encode_packet(tiny, compress=True) == tiny
    big = wire.encode_message(Alive(1, "n" * 100, LOCALHOST, 1, b"m" * 200, VSN))
    out = wire.encode_packet(big, compress=True)
    assert out[0] == MessageType.COMPRESS and len(out) < len(big)


def test_compression_survives_lzw_table_resets(lzw_impl: Any) -> None:
    """Payloads long enough that the LZW writer clears its table (every 3838 codes) several times."""
    rnd = random.Random(5)
    for payload in (
        b"\x08" + rnd.randbytes(20_000),
        b"\x08" + b"".join(rnd.choice([b"ab", b"cd", b"\x00"]) for _ in range(40_000)),
    ):
        assert wire.decompress_payload(wire.compress_payload(payload)) == payload
        assert wire.decode_packet(wire.compress_payload(payload)) == [UserMessage(payload[1:])]
    push_pull = wire.encode_push_pull(STATES, rnd.randbytes(30_000), False)
    assert feed_whole(StreamDecoder(), wire.encode_stream(push_pull, compress=True)) == [
        wire.decode_push_pull(push_pull)
    ]


def test_nested_compress_and_compound(lzw_impl: Any) -> None:
    a, b, c = Nack(1), Ping(2, "p" * 30), UserMessage(b"u" * 50)
    inner = wire.make_compound([wire.encode_message(b), wire.compress_payload(wire.encode_message(c))])
    outer = wire.compress_payload(wire.make_compound([wire.encode_message(a), wire.compress_payload(inner)]))
    assert wire.decode_packet(outer) == [a, b, c]
    assert wire.decode_packet(wire.encode_packet(outer, label="x", keyring=RING, crc=True), label="x",
                              keyring=RING) == [a, b, c]  # fmt: skip
    deep = wire.encode_message(a)
    for _ in range(40):
        deep = wire.make_compound([deep])
    with pytest.raises(WireError, match="nested"):
        wire.decode_packet(deep)
    with pytest.raises(WireError, match=r"empty|missing"):
        wire.decode_packet(wire.compress_payload(b""))


# -- the packet pipeline in every combination -----------------------------------------------------------
PIPELINE_MESSAGES = [
    Ping(1, "target", LOCALHOST, 7946, "me"),
    IndirectPing(2, LOCALHOST, 7946, "t", True, LOCALHOST, 7947, "me"),
    Ack(3, b"payload"),
    Nack(4),
    Suspect(5, "n", "me"),
    Alive(6, "n", LOCALHOST, 7946, b"meta", VSN),
    Dead(7, "n", "n"),
    UserMessage(b"user message " * 5),
]


@pytest.mark.parametrize("label", ["", "cluster-a"])
@pytest.mark.parametrize("keys", [None, [KEY16], [KEY24, KEY16], [KEY32]])
@pytest.mark.parametrize("crc", [False, True])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("vsn", [0, 1])
def test_packet_pipeline_round_trips(
    label: str, keys: list[bytes] | None, crc: bool, compress: bool, vsn: int, lzw_impl: Any
) -> None:
    keyring = Keyring(keys) if keys else None
    compound = wire.make_compound([wire.encode_message(m) for m in PIPELINE_MESSAGES])
    for message in (compound, wire.encode_message(PIPELINE_MESSAGES[5])):
        data = wire.encode_packet(message, label=label, keyring=keyring, crc=crc, compress=compress,
                                  encryption_version=vsn)  # fmt: skip
        expected = PIPELINE_MESSAGES if message is compound else [PIPELINE_MESSAGES[5]]
        assert wire.decode_packet(data, label=label, keyring=keyring) == expected
        if keyring is not None:
            # receivers holding the key as a secondary decrypt too; strangers do not
            other = Keyring([KEY24 if keys != [KEY24, KEY16] else KEY32, *keys])
            assert wire.decode_packet(data, label=label, keyring=other) == expected
            with pytest.raises(WireError, match="decrypt"):
                wire.decode_packet(data, label=label, keyring=Keyring([bytes(32)]))


def test_packet_layers_are_in_memberlists_order(lzw_impl: Any) -> None:
    msg = wire.encode_message(Alive(1, "n" * 100, LOCALHOST, 1, b"m" * 200, VSN))
    nonce = bytes(range(12))
    data = wire.encode_packet(msg, label="L", keyring=RING, crc=True, compress=True, nonce=nonce)
    compressed = wire.compress_payload(msg)
    with_crc = wire.add_crc(compressed)
    assert data == b"\xf4\x01L" + RING.encrypt(with_crc, b"L", nonce=nonce)


def test_verify_incoming_off_accepts_plaintext() -> None:
    msg = wire.encode_message(Nack(5))
    with pytest.raises(WireError, match="decrypt"):
        wire.decode_packet(msg, keyring=RING)
    assert wire.decode_packet(msg, keyring=RING, verify_incoming=False) == [Nack(5)]
    assert wire.decode_packet(wire.encode_packet(msg, keyring=RING), keyring=RING, verify_incoming=False) == [
        Nack(5)
    ]


def test_stream_only_types_are_refused_in_packets() -> None:
    for msg in (Err("x"), PushPullHeader(0, 0, False)):
        with pytest.raises(WireError, match="not valid in a packet"):
            wire.decode_packet(wire.encode_message(msg))


# -- streams --------------------------------------------------------------------------------------------
STATES = [
    PushNodeState("a", LOCALHOST, 7946, b"", 1, 0, VSN),
    PushNodeState("b" * 40, bytes(16), 7947, b"meta", 2**32 - 1, 3, VSN),
    PushNodeState("c", b"\x0a\x00\x00\x03", 1, b"m" * 100, 7, 1, b""),
]


def feed_whole(decoder: StreamDecoder, data: bytes) -> list[Any]:
    return decoder.feed(data) or decoder.feed_eof()


def feed_bytewise(decoder: StreamDecoder, data: bytes) -> list[Any]:
    out: list[Any] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    return out or decoder.feed_eof()


def feed_random_chunks(decoder: StreamDecoder, data: bytes, seed: int) -> list[Any]:
    rnd, out, pos = random.Random(seed), [], 0
    while pos < len(data):
        n = rnd.randint(0, 40)
        out += decoder.feed(data[pos : pos + n])
        pos += n
    return out or decoder.feed_eof()


STREAM_PAYLOADS: list[tuple[bytes, Any]] = [
    (
        wire.encode_push_pull(STATES, b"user state \x00\xff" * 7, True),
        PushPull(True, tuple(STATES), b"user state \x00\xff" * 7),
    ),
    (wire.encode_push_pull([], b"", False), PushPull(False, (), b"")),
    (wire.encode_push_pull(STATES[:1], b"", False), PushPull(False, (STATES[0],), b"")),
    (wire.encode_message(Ping(5, "n", LOCALHOST, 1, "me")), Ping(5, "n", LOCALHOST, 1, "me")),
    (wire.encode_message(Ack(5)), Ack(5)),
    (wire.encode_message(Err("remote error")), Err("remote error")),
    (wire.encode_stream_user_message(b"hello user"), UserMessage(b"hello user")),
    (wire.encode_stream_user_message(b""), UserMessage(b"")),
]


def test_push_pull_layout() -> None:
    data = wire.encode_push_pull(STATES[:2], b"US", True)
    expected = (
        b"\x06" + wire.encode_body(PushPullHeader(2, 2, True))
        + wire.encode_body(STATES[0]) + wire.encode_body(STATES[1]) + b"US"
    )  # fmt: skip
    assert data == expected
    assert wire.decode_push_pull(data) == PushPull(True, tuple(STATES[:2]), b"US")
    assert wire.encode_stream_user_message(b"abc") == b"\x08" + fixmap(1) + raw("UserMsgLen") + b"\x03abc"


@pytest.mark.parametrize("label", ["", "cluster-a"])
@pytest.mark.parametrize("keys", [None, [KEY16], [KEY32, KEY24]])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("vsn", [0, 1])
def test_streams_round_trip_in_any_chunking(
    label: str, keys: list[bytes] | None, compress: bool, vsn: int, lzw_impl: Any
) -> None:
    keyring = Keyring(keys) if keys else None
    for payload, expected in STREAM_PAYLOADS:
        for label_header in (True, False):
            data = wire.encode_stream(payload, label=label, keyring=keyring, compress=compress,
                                      label_header=label_header, encryption_version=vsn)  # fmt: skip
            if not label_header or not label:
                assert data[0] != MessageType.HAS_LABEL
            results = []
            for feeder in (feed_whole, feed_bytewise, lambda d, x: feed_random_chunks(d, x, len(x))):
                dec = StreamDecoder(label=label, keyring=keyring, label_header=label_header)
                results.append(feeder(dec, data))
                assert dec.done and dec.stream_label == label
            assert results == [[expected]] * 3
            # bytes after the message are ignored; the decoder is done
            dec = StreamDecoder(label=label, keyring=keyring, label_header=label_header)
            assert dec.feed(data + b"\x00junk") == [expected]
            assert dec.feed(b"more") == [] and dec.feed_eof() == []


def test_stream_compression_is_unconditional_and_encryption_layout(lzw_impl: Any) -> None:
    payload = wire.encode_message(Ack(1))
    compressed = wire.encode_stream(payload, compress=True)
    assert compressed == wire.compress_payload(payload)  # even though it is larger
    nonce = bytes(12)
    sealed = wire.encode_stream(payload, label="L", keyring=RING, nonce=nonce)
    prefix = b"\x0a" + struct.pack(">I", 1 + 12 + len(payload) + 16)
    assert sealed == b"\xf4\x01L" + prefix + RING.encrypt(payload, prefix + b"L", nonce=nonce)
    reply = wire.encode_stream(payload, label="L", keyring=RING, nonce=nonce, label_header=False)
    assert reply == sealed[3:]
    sealed0 = wire.encode_stream(payload, keyring=RING, encryption_version=0)
    assert struct.unpack(">I", sealed0[1:5])[0] == len(sealed0) - 5 == 1 + 12 + 16 + 16 + 16


def test_every_truncation_of_a_stream_waits_then_fails_at_eof(lzw_impl: Any) -> None:
    for payload, _ in STREAM_PAYLOADS[:4] + STREAM_PAYLOADS[6:7]:
        for kw in ({}, {"compress": True}, {"keyring": RING, "label": "l"}):
            data = wire.encode_stream(payload, **kw)  # type: ignore[arg-type]
            for cut in range(len(data)):
                dec = StreamDecoder(label=kw.get("label", ""), keyring=kw.get("keyring"))  # type: ignore[arg-type]
                assert dec.feed(data[:cut]) == []
                with pytest.raises(WireError):
                    dec.feed_eof()
                with pytest.raises(WireError, match="already failed"):
                    dec.feed(data[cut:])


def test_stream_errors() -> None:
    pp = wire.encode_push_pull(STATES, b"", False)

    def fails(data: bytes, match: str, **kw: Any) -> None:
        for feeder in (feed_whole, feed_bytewise):
            with pytest.raises(WireError, match=match):
                feeder(StreamDecoder(**kw), data)

    fails(wire.encode_stream(pp, keyring=RING), "encryption is not configured")
    fails(pp, "not encrypted", keyring=RING)
    fails(wire.encode_stream(pp, keyring=RING), "decrypt", keyring=Keyring([KEY24]))
    reply = wire.encode_stream(pp, keyring=RING, label="a", label_header=False)
    fails(reply, "decrypt", keyring=RING, label="b", label_header=False)  # the label is in the AAD
    fails(
        wire.encode_stream(pp, keyring=RING, label="a"),
        "not encrypted",
        keyring=RING,
        label="a",
        label_header=False,
    )
    fails(wire.encode_stream(pp, label="a"), "unacceptable label 'a'", label="b")
    fails(wire.encode_stream(pp, label="a"), "unacceptable label 'a'")
    fails(pp, "unacceptable label ''", label="b")
    fails(wire.encode_stream(pp, label="a"), "double", label="a", skip_inbound_label_check=True)
    fails(b"\xf4\x00", "empty", label="a")
    fails(b"\x0a" + struct.pack(">I", wire.MAX_PUSH_STATE_BYTES + 1), "larger than limit", keyring=RING)
    header = wire.encode_message(PushPullHeader(0, wire.MAX_PUSH_STATE_BYTES + 1, False))
    fails(header, "user state length")
    fails(wire.encode_message(PushPullHeader(-1, 0, False)), "number of nodes")
    fails(wire.encode_message(PushPullHeader(wire.MAX_PUSH_STATE_NODES + 1, 0, False)), "number of nodes")
    fails(b"\x08" + wire.encode_body(UserMsgHeader(wire.MAX_USER_MSG_BYTES + 1)), "user message length")
    fails(b"\x08" + wire.encode_body(UserMsgHeader(-1)), "user message length")
    for bad_type in (MessageType.ALIVE, MessageType.COMPOUND, MessageType.NACK, MessageType.HAS_CRC):
        fails(bytes([bad_type]) + b"\x80", "not valid on a stream")
    fails(b"\x0e", "unknown message type")
    fails(b"", "before any message")
    fails(wire.encode_stream(b"", keyring=RING), "empty", keyring=RING)
    fails(pp[:-3], "truncated")
    # the user-state limit is configurable downwards
    with pytest.raises(WireError, match="user state length"):
        feed_whole(StreamDecoder(max_user_state=10), wire.encode_push_pull([], bytes(11), False))


def test_compressed_stream_errors(lzw_impl: Any) -> None:
    with pytest.raises(WireError, match="empty"):
        feed_whole(StreamDecoder(), wire.compress_payload(b""))
    with pytest.raises(WireError, match="not valid on a stream"):  # memberlist decompresses only once
        feed_whole(StreamDecoder(), wire.compress_payload(wire.compress_payload(wire.encode_message(Ack(1)))))
    with pytest.raises(WireError, match="decompress"):
        feed_whole(StreamDecoder(), wire.encode_message(Compress(0, b"\xff\xff\xff")))


def test_large_push_pull_streams_in_chunks() -> None:
    states = [
        PushNodeState(f"node-{i}", LOCALHOST, 7946 + i, b"m" * (i % 50), i, i % 4, VSN) for i in range(2000)
    ]
    user = os.urandom(3 * 2**20)
    data = wire.encode_stream(wire.encode_push_pull(states, user, False), keyring=RING)
    dec = StreamDecoder(keyring=RING)
    out: list[Any] = []
    for pos in range(0, len(data), 65536):
        out += dec.feed(data[pos : pos + 65536])
    assert out == [PushPull(False, tuple(states), user)]
    plain = wire.encode_push_pull(states, user, True)
    dec = StreamDecoder()
    out = []
    for pos in range(0, len(plain), 4096):
        out += dec.feed(plain[pos : pos + 4096])
    assert out == [PushPull(True, tuple(states), user)]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(node_states, max_size=5),
    st.binary(max_size=200),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_push_pull_round_trips_in_random_chunks(states: list[PushNodeState], user: bytes, join: bool,
                                                rnd: random.Random) -> None:  # fmt: skip
    data = wire.encode_push_pull(states, user, join)
    assert feed_random_chunks(StreamDecoder(), data, rnd.randrange(2**32)) == [
        PushPull(join, tuple(states), user)
    ]


# -- dskit TCP transport framing ------------------------------------------------------------------------
def test_dskit_packet_framing() -> None:
    payload = wire.encode_message(Ping(1, "n"))
    data = wire.encode_dskit_packet("10.0.0.1:7946", payload)
    assert data == b"\x01\x0d10.0.0.1:7946" + payload + hashlib.md5(payload).digest()
    assert wire.decode_dskit_packet(data) == wire.DskitPacket("10.0.0.1:7946", payload, True)
    bad = data[:-1] + bytes([data[-1] ^ 0xFF])
    assert wire.decode_dskit_packet(bad) == wire.DskitPacket("10.0.0.1:7946", payload, False)
    assert wire.decode_dskit_packet(b"\x01\x00" + hashlib.md5(b"").digest()) == wire.DskitPacket(
        "", b"", True
    )
    assert wire.DskitConnectionType.PACKET == 1 and wire.DskitConnectionType.STREAM == 2
    for bad_data, match in ((b"", "empty"), (b"\x02", "stream"), (b"\x03", "unknown"), (b"\x01", "address length"),
                            (b"\x01\x05ab", "address"), (b"\x01\x00" + bytes(15), "not enough")):  # fmt: skip
        with pytest.raises(WireError, match=match):
            wire.decode_dskit_packet(bad_data)
    with pytest.raises(WireError, match="too long"):
        wire.encode_dskit_packet("a" * 256, b"")


# -- interop with Go (memberlist 0.2.2 + go-msgpack 0.5.5 from Debian) ----------------------------------
GO_PEER_DIR = Path(__file__).resolve().parents[1] / "interop" / "memberlist_wire"
GO_APT_PACKAGES = "golang-go golang-github-hashicorp-memberlist-dev"
GO_PATH = "/usr/share/gocode"


@pytest.fixture(scope="session")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tests/interop/memberlist_wire against Debian's Go packages (GOPATH mode, no network)."""
    return build_go_program(tmp_path_factory, "memberlist_wire", GO_APT_PACKAGES)


def run_go(binary: Path, mode: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stdin = "".join(json.dumps(r) + "\n" for r in requests).encode()
    result = subprocess.run([str(binary), mode], input=stdin, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == len(requests)
    return answers


# The Go names, written out again here so the encoder's own table is not what is tested.
GO_FIELDS: dict[type, tuple[str, list[tuple[str, str]]]] = {
    Ping: ("ping", [("SeqNo", "seq_no"), ("Node", "node"), ("SourceAddr", "source_addr"),
                    ("SourcePort", "source_port"), ("SourceNode", "source_node")]),
    IndirectPing: ("indirectPingReq", [("SeqNo", "seq_no"), ("Target", "target"), ("Port", "port"),
                                       ("Node", "node"), ("Nack", "nack"), ("SourceAddr", "source_addr"),
                                       ("SourcePort", "source_port"), ("SourceNode", "source_node")]),
    Ack: ("ackResp", [("SeqNo", "seq_no"), ("Payload", "payload")]),
    Nack: ("nackResp", [("SeqNo", "seq_no")]),
    Err: ("errResp", [("Error", "error")]),
    Suspect: ("suspect", [("Incarnation", "incarnation"), ("Node", "node"), ("From", "from_")]),
    Alive: ("alive", [("Incarnation", "incarnation"), ("Node", "node"), ("Addr", "addr"), ("Port", "port"),
                      ("Meta", "meta"), ("Vsn", "vsn")]),
    Dead: ("dead", [("Incarnation", "incarnation"), ("Node", "node"), ("From", "from_")]),
    PushPullHeader: ("pushPullHeader", [("Nodes", "nodes"), ("UserStateLen", "user_state_len"), ("Join", "join")]),
    PushNodeState: ("pushNodeState", [("Name", "name"), ("Addr", "addr"), ("Port", "port"), ("Meta", "meta"),
                                      ("Incarnation", "incarnation"), ("State", "state"), ("Vsn", "vsn")]),
    UserMsgHeader: ("userMsgHeader", [("UserMsgLen", "user_msg_len")]),
    Compress: ("compress", [("Algo", "algo"), ("Buf", "buf")]),
}  # fmt: skip
KIND_TO_CLASS = {kind: cls for cls, (kind, _) in GO_FIELDS.items()}


def to_go(msg: Any) -> dict[str, Any]:
    """A message as the JSON of the Go struct: []byte as base64, empty []byte as nil (null)."""
    out: dict[str, Any] = {}
    for go_name, attr in GO_FIELDS[type(msg)][1]:
        value = getattr(msg, attr)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode() if value else None
        out[go_name] = value
    return out


def from_go(kind: str, value: dict[str, Any]) -> Any:
    cls = KIND_TO_CLASS[kind]
    kwargs = {}
    for go_name, attr in GO_FIELDS[cls][1]:
        v = value[go_name]
        if attr in ("source_addr", "target", "payload", "addr", "meta", "vsn", "buf"):
            v = base64.b64decode(v) if v else b""
        kwargs[attr] = v
    return cls(**kwargs)


def go_msg(msg: Any) -> dict[str, Any]:
    if isinstance(msg, UserMessage):
        return {"type": 8, "kind": "user", "value": base64.b64encode(msg.payload).decode()}
    return {"type": int(msg.TYPE), "kind": GO_FIELDS[type(msg)][0], "value": to_go(msg)}


def from_go_msg(m: dict[str, Any]) -> Any:
    if m["kind"] == "user":
        return UserMessage(base64.b64decode(m["value"] or ""))
    return from_go(m["kind"], m["value"])


EDGE_U32 = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32 - 1]
EDGE_INT = [*EDGE_U32, 2**32, 2**62, 2**63 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**63)]


def random_messages(seed: int, count: int) -> list[Any]:
    """Valid-UTF-8 names (Go's JSON cannot carry other bytes) and edge-case integers."""
    rnd = random.Random(seed)

    def u(bits: int) -> int:
        return rnd.choice([v for v in EDGE_U32 if v < 2**bits] + [rnd.randrange(2**bits)])

    def i() -> int:
        return rnd.choice([*EDGE_INT, rnd.randrange(-(2**63), 2**63)])

    def s() -> str:
        return rnd.choice(["", "node-1", "x" * 31, "y" * 32, "z" * 300, "nöde ✓", "\u0000ctl", "名前" * 20])

    def b() -> bytes:
        return rnd.choice([b"", LOCALHOST, bytes(16), os.urandom(rnd.randrange(1, 70)), os.urandom(300)])

    makers = [
        lambda: Ping(u(32), s(), b(), u(16), s()),
        lambda: IndirectPing(u(32), b(), u(16), s(), rnd.random() < 0.5, b(), u(16), s()),
        lambda: Ack(u(32), b()),
        lambda: Nack(u(32)),
        lambda: Err(s()),
        lambda: Suspect(u(32), s(), s()),
        lambda: Alive(u(32), s(), b(), u(16), b(), rnd.choice([VSN, b""])),
        lambda: Dead(u(32), s(), s()),
        lambda: PushPullHeader(i(), i(), rnd.random() < 0.5),
        lambda: PushNodeState(s(), b(), u(16), b(), u(32), i(), VSN),
        lambda: UserMsgHeader(i()),
        lambda: Compress(u(8), b()),
    ]
    return [maker() for maker in makers for _ in range(count)]


def test_go_encodes_every_struct_byte_for_byte_like_us_and_decodes_ours(go_peer: Path) -> None:
    msgs = [m for m, _ in GOLDEN + GOLDEN_BODIES if not isinstance(m, UserMessage)] + random_messages(1, 40)
    bodies = [wire.encode_body(m) for m in msgs]
    requests = [
        {"kind": GO_FIELDS[type(m)][0], "value": to_go(m), "py": body.hex()}
        for m, body in zip(msgs, bodies, strict=True)
    ]
    answers = run_go(go_peer, "structs", requests)
    for msg, body, answer in zip(msgs, bodies, answers, strict=True):
        assert not answer.get("err"), (msg, answer)
        assert bytes.fromhex(answer["go"]) == body, msg  # Go → bytes == Python → bytes
        assert from_go(GO_FIELDS[type(msg)][0], answer["decoded"]) == msg  # Python bytes → Go → same values
        assert wire.decode_body(type(msg), bytes.fromhex(answer["go"]))[0] == msg  # Go bytes → Python


PACKET_CASES: list[dict[str, Any]] = [
    {"label": label, "keys": keys, "crc": crc, "compress": compress, "vsn": vsn}
    for label in ("", "cluster-a")
    for keys in ([], [KEY16], [KEY24, KEY32], [KEY32])
    for crc in (False, True)
    for compress in (False, True)
    for vsn in (0, 1)
    if keys or vsn == 1
]


def test_go_and_python_packets_interoperate(go_peer: Path) -> None:
    batches = [PIPELINE_MESSAGES, [PIPELINE_MESSAGES[5]], [UserMessage(b"")], [Nack(i) for i in range(255)],
               random_messages(7, 1)[:8]]  # fmt: skip
    batches[4] = [m for m in batches[4] if not isinstance(m, Err)]
    go_requests: list[dict[str, Any]] = []
    py_requests: list[dict[str, Any]] = []
    expected: list[Any] = []
    py_packets: list[bytes] = []
    for case in PACKET_CASES:
        keyring = Keyring(case["keys"]) if case["keys"] else None
        keys_b64 = [base64.b64encode(k).decode() for k in case["keys"]]
        for batch in batches:
            go_requests.append({"msgs": [go_msg(m) for m in batch], **case, "keys": keys_b64})
            encoded = [wire.encode_message(m) for m in batch]
            message = encoded[0] if len(encoded) == 1 else wire.make_compound(encoded)
            packet = wire.encode_packet(message, label=case["label"], keyring=keyring, crc=case["crc"],
                                        compress=case["compress"], encryption_version=case["vsn"])  # fmt: skip
            py_packets.append(packet)
            py_requests.append({"packet": packet.hex(), "label": case["label"], "keys": keys_b64})
            expected.append((batch, case, keyring))
    go_packets = run_go(go_peer, "pack", go_requests)
    go_decoded = run_go(go_peer, "unpack", py_requests)
    for (batch, case, keyring), go_packet, py_packet, decoded in zip(expected, go_packets, py_packets, go_decoded,
                                                                    strict=True):  # fmt: skip
        assert not go_packet.get("err") and not decoded.get("err"), (case, go_packet, decoded)
        data = bytes.fromhex(go_packet["packet"])
        if keyring is None:
            assert data == py_packet, case  # same bytes, LZW included
        assert wire.decode_packet(data, label=case["label"], keyring=keyring) == batch, case
        assert [from_go_msg(m) for m in decoded["msgs"]] == batch, case


STREAM_CASES: list[dict[str, Any]] = [
    {"label": label, "keys": keys, "compress": compress, "vsn": vsn, "label_header": label_header}
    for label in ("", "cluster-a")
    for keys in ([], [KEY16], [KEY32, KEY24])
    for compress in (False, True)
    for vsn in (0, 1)
    for label_header in (True, False)
    if keys or vsn == 1
]


def test_go_and_python_streams_interoperate(go_peer: Path) -> None:
    user_state = os.urandom(5000)
    stream_msgs: list[tuple[dict[str, Any], bytes, Any]] = [
        ({"msg": {"type": 6, "kind": "pushPullHeader", "value": True},
          "nodes": [to_go(s) for s in STATES], "user": base64.b64encode(user_state).decode()},
         wire.encode_push_pull(STATES, user_state, True), PushPull(True, tuple(STATES), user_state)),
        ({"msg": {"type": 6, "kind": "pushPullHeader", "value": False}, "nodes": [], "user": None},
         wire.encode_push_pull([], b"", False), PushPull(False, (), b"")),
        ({"msg": {"type": 8, "kind": "user", "value": None}, "user": base64.b64encode(b"hi there").decode()},
         wire.encode_stream_user_message(b"hi there"), UserMessage(b"hi there")),
        ({"msg": go_msg(Ping(9, "n", LOCALHOST, 7946, "me"))}, wire.encode_message(Ping(9, "n", LOCALHOST, 7946, "me")),
         Ping(9, "n", LOCALHOST, 7946, "me")),
        ({"msg": go_msg(Ack(9))}, wire.encode_message(Ack(9)), Ack(9)),
        ({"msg": go_msg(Err("remote failure"))}, wire.encode_message(Err("remote failure")), Err("remote failure")),
    ]  # fmt: skip
    go_requests: list[dict[str, Any]] = []
    py_requests: list[dict[str, Any]] = []
    expected: list[Any] = []
    for case in STREAM_CASES:
        keyring = Keyring(case["keys"]) if case["keys"] else None
        keys_b64 = [base64.b64encode(k).decode() for k in case["keys"]]
        for go_req, payload, result in stream_msgs:
            go_requests.append({**go_req, **case, "keys": keys_b64})
            data = wire.encode_stream(payload, label=case["label"], keyring=keyring, compress=case["compress"],
                                      label_header=case["label_header"], encryption_version=case["vsn"])  # fmt: skip
            py_requests.append({"stream": data.hex(), **case, "keys": keys_b64})
            expected.append((case, keyring, data, result))
    go_streams = run_go(go_peer, "stream-pack", go_requests)
    go_decoded = run_go(go_peer, "stream-unpack", py_requests)
    for (case, keyring, py_data, result), go_stream, decoded in zip(
        expected, go_streams, go_decoded, strict=True
    ):
        assert not go_stream.get("err") and not decoded.get("err"), (case, go_stream, decoded)
        data = bytes.fromhex(go_stream["stream"])
        if keyring is None:
            assert data == py_data, case
        for feeder in (feed_whole, feed_bytewise):
            dec = StreamDecoder(label=case["label"], keyring=keyring, label_header=case["label_header"])
            assert feeder(dec, data) == [result], case
        # what Go read from our bytes
        msg = decoded["msg"]
        user = base64.b64decode(decoded.get("user") or "")
        if isinstance(result, PushPull):
            header = from_go("pushPullHeader", msg["value"])
            nodes = tuple(from_go("pushNodeState", n) for n in decoded.get("nodes") or [])
            assert PushPull(header.join, nodes, user) == result, case
        elif isinstance(result, UserMessage):
            assert UserMessage(user) == result, case
        else:
            assert from_go_msg(msg) == result, case


def test_go_rejects_what_we_reject(go_peer: Path) -> None:
    """A few malformed inputs both sides must refuse (wrong key, bad CRC, label mismatch)."""
    msg = wire.encode_message(Nack(1))
    k16 = base64.b64encode(KEY16).decode()
    cases = [
        ({"packet": wire.encode_packet(msg, keyring=Keyring([KEY24])).hex(), "keys": [k16]}, {"keyring": Keyring([KEY16])}),
        ({"packet": (wire.add_crc(msg)[:-1] + b"\x00").hex()}, {}),
        ({"packet": wire.encode_packet(msg, label="a").hex(), "label": "b"}, {"label": "b"}),
    ]  # fmt: skip
    answers = run_go(go_peer, "unpack", [c for c, _ in cases])
    for (request, kw), answer in zip(cases, answers, strict=True):
        assert answer.get("err"), request
        with pytest.raises(WireError):
            wire.decode_packet(bytes.fromhex(request["packet"]), **kw)
