# memberlist's wire format, sans-I/O: bytes in, message objects out, and back.
# Owns: the message-type byte enum, the message structs and their msgpack encoding (maps keyed by the
# Go field name, byte-sorted as go-msgpack 0.5.5 writes them, legacy raw strings, nil for empty
# []byte), the packet pipeline (compound, compress, CRC, encryption, label) and the stream framing
# (push/pull, user messages, the encrypted stream envelope), plus dskit's TCP packet framing.
# Must not know: sockets, clocks, randomness (except the nonce the keyring draws), node state rules.
# Callers hand in complete packets, or feed a StreamDecoder the chunks a connection delivers.
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, ClassVar, TypeAlias, cast

import msgpack

from pyro_core import _impl
from pyro_core.memberlist.security import DecryptError, Keyring, encrypted_length

__all__ = [
    "COMPOUND_MAX_PARTS",
    "LABEL_MAX_SIZE",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_PUSH_STATE_BYTES",
    "MAX_PUSH_STATE_NODES",
    "MAX_USER_MSG_BYTES",
    "META_MAX_SIZE",
    "Ack",
    "Alive",
    "Compress",
    "Dead",
    "DskitConnectionType",
    "DskitPacket",
    "Err",
    "IndirectPing",
    "Message",
    "MessageType",
    "Nack",
    "Ping",
    "PushNodeState",
    "PushPull",
    "PushPullHeader",
    "StreamDecoder",
    "StreamMessage",
    "Suspect",
    "UserMessage",
    "UserMsgHeader",
    "WireError",
    "add_crc",
    "add_label",
    "compress_payload",
    "decode_body",
    "decode_dskit_packet",
    "decode_message",
    "decode_packet",
    "decode_push_pull",
    "decompress_payload",
    "encode_body",
    "encode_dskit_packet",
    "encode_message",
    "encode_packet",
    "encode_push_pull",
    "encode_stream",
    "encode_stream_user_message",
    "make_compound",
    "split_compound",
    "strip_crc",
    "strip_label",
]


class WireError(ValueError):
    """Bytes that are not a valid memberlist message, packet or stream (or a value that cannot be sent)."""


class MessageType(IntEnum):
    """The first byte of every message. WARNING: ONLY APPEND; the values are the protocol."""

    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10  # streams only
    NACK = 11
    HAS_CRC = 12
    ERR = 13
    # Deliberately high, so it cannot be mistaken for an encryption version byte or a message type.
    HAS_LABEL = 244


META_MAX_SIZE = 512  # node meta limit (enforced by the state layer, not here)
LABEL_MAX_SIZE = 255
COMPOUND_MAX_PARTS = 255
MAX_PUSH_STATE_BYTES = 20 * 1024 * 1024  # user state of one push/pull, and one encrypted stream block
MAX_PUSH_STATE_NODES = 1024 * 1024
MAX_USER_MSG_BYTES = 20 * 1024 * 1024
MAX_DECOMPRESSED_BYTES = 2 * MAX_PUSH_STATE_BYTES
LZW_ALGO = 0
_MAX_NESTING = 16  # compress/compound levels accepted in one packet (memberlist itself never nests > 2)

_U8 = 1 << 8
_U16 = 1 << 16
_U32 = 1 << 32
_I64 = 1 << 63


# --- message structs --------------------------------------------------------------------------------


class _Kind(Enum):
    U8 = "uint8"
    U16 = "uint16"
    U32 = "uint32"
    INT = "int"  # Go int: 64-bit signed
    BOOL = "bool"
    STR = "string"
    BYTES = "[]byte"


@dataclass(frozen=True, slots=True)
class _Field:
    go: bytes  # the Go field name: the map key on the wire
    attr: str  # the Python attribute
    kind: _Kind
    omitempty: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    """A direct probe. ``node`` names the intended target ("" = anyone); Source* say where to reply."""

    TYPE: ClassVar[MessageType] = MessageType.PING
    seq_no: int
    node: str
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """Ask a peer to probe ``target:port`` (``node``) for us; ``nack`` asks for a nack on timeout."""

    TYPE: ClassVar[MessageType] = MessageType.INDIRECT_PING
    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool = False
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    TYPE: ClassVar[MessageType] = MessageType.ACK
    seq_no: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Nack:
    TYPE: ClassVar[MessageType] = MessageType.NACK
    seq_no: int


@dataclass(frozen=True, slots=True)
class Err:
    """A stream's error reply."""

    TYPE: ClassVar[MessageType] = MessageType.ERR
    error: str


@dataclass(frozen=True, slots=True)
class Suspect:
    TYPE: ClassVar[MessageType] = MessageType.SUSPECT
    incarnation: int
    node: str
    from_: str


@dataclass(frozen=True, slots=True)
class Alive:
    """``vsn`` = [pmin, pmax, pcur, dmin, dmax, dcur]."""

    TYPE: ClassVar[MessageType] = MessageType.ALIVE
    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes = b""
    vsn: bytes = bytes(6)


@dataclass(frozen=True, slots=True)
class Dead:
    """``from_ == node`` means the node left."""

    TYPE: ClassVar[MessageType] = MessageType.DEAD
    incarnation: int
    node: str
    from_: str


@dataclass(frozen=True, slots=True)
class PushPullHeader:
    TYPE: ClassVar[MessageType] = MessageType.PUSH_PULL
    nodes: int
    user_state_len: int
    join: bool


@dataclass(frozen=True, slots=True)
class PushNodeState:
    """One member in a push/pull; ``state`` 0 alive, 1 suspect, 2 dead, 3 left. No type byte."""

    TYPE: ClassVar[None] = None
    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: int
    vsn: bytes


@dataclass(frozen=True, slots=True)
class UserMsgHeader:
    """Precedes a user message's raw bytes on a stream. No type byte of its own (it follows [8])."""

    TYPE: ClassVar[None] = None
    user_msg_len: int


@dataclass(frozen=True, slots=True)
class Compress:
    TYPE: ClassVar[MessageType] = MessageType.COMPRESS
    algo: int
    buf: bytes


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A delegate's message: in a packet ``[8] + payload``; on a stream ``[8]`` + header + payload."""

    TYPE: ClassVar[MessageType] = MessageType.USER
    payload: bytes


@dataclass(frozen=True, slots=True)
class PushPull:
    """A complete push/pull read off a stream: the header's join flag, the members, the user state."""

    join: bool
    states: tuple[PushNodeState, ...]
    user_state: bytes


_Struct: TypeAlias = (
    Ping
    | IndirectPing
    | Ack
    | Nack
    | Err
    | Suspect
    | Alive
    | Dead
    | PushPullHeader
    | PushNodeState
    | UserMsgHeader
    | Compress
)
Message: TypeAlias = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | UserMessage
"""What a packet can carry once unwrapped."""
_Typed: TypeAlias = (
    Ping | IndirectPing | Ack | Nack | Err | Suspect | Alive | Dead | PushPullHeader | Compress | UserMessage
)
"""Everything with a type byte of its own: what encode_message takes and decode_message returns."""
StreamMessage: TypeAlias = PushPull | Ping | Ack | Err | UserMessage
"""What a stream can carry."""

_U, _S, _B = _Kind.U32, _Kind.STR, _Kind.BYTES
# Fields in Go source order (the order of the array form); encoding sorts them by Go name.
_SCHEMAS: dict[type[_Struct], tuple[_Field, ...]] = {
    Ping: (
        _Field(b"SeqNo", "seq_no", _U),
        _Field(b"Node", "node", _S),
        _Field(b"SourceAddr", "source_addr", _B, True),
        _Field(b"SourcePort", "source_port", _Kind.U16, True),
        _Field(b"SourceNode", "source_node", _S, True),
    ),
    IndirectPing: (
        _Field(b"SeqNo", "seq_no", _U),
        _Field(b"Target", "target", _B),
        _Field(b"Port", "port", _Kind.U16),
        _Field(b"Node", "node", _S),
        _Field(b"Nack", "nack", _Kind.BOOL),
        _Field(b"SourceAddr", "source_addr", _B, True),
        _Field(b"SourcePort", "source_port", _Kind.U16, True),
        _Field(b"SourceNode", "source_node", _S, True),
    ),
    Ack: (_Field(b"SeqNo", "seq_no", _U), _Field(b"Payload", "payload", _B)),
    Nack: (_Field(b"SeqNo", "seq_no", _U),),
    Err: (_Field(b"Error", "error", _S),),
    Suspect: (
        _Field(b"Incarnation", "incarnation", _U),
        _Field(b"Node", "node", _S),
        _Field(b"From", "from_", _S),
    ),
    Alive: (
        _Field(b"Incarnation", "incarnation", _U),
        _Field(b"Node", "node", _S),
        _Field(b"Addr", "addr", _B),
        _Field(b"Port", "port", _Kind.U16),
        _Field(b"Meta", "meta", _B),
        _Field(b"Vsn", "vsn", _B),
    ),
    Dead: (
        _Field(b"Incarnation", "incarnation", _U),
        _Field(b"Node", "node", _S),
        _Field(b"From", "from_", _S),
    ),
    PushPullHeader: (
        _Field(b"Nodes", "nodes", _Kind.INT),
        _Field(b"UserStateLen", "user_state_len", _Kind.INT),
        _Field(b"Join", "join", _Kind.BOOL),
    ),
    PushNodeState: (
        _Field(b"Name", "name", _S),
        _Field(b"Addr", "addr", _B),
        _Field(b"Port", "port", _Kind.U16),
        _Field(b"Meta", "meta", _B),
        _Field(b"Incarnation", "incarnation", _U),
        _Field(b"State", "state", _Kind.INT),
        _Field(b"Vsn", "vsn", _B),
    ),
    UserMsgHeader: (_Field(b"UserMsgLen", "user_msg_len", _Kind.INT),),
    Compress: (_Field(b"Algo", "algo", _Kind.U8), _Field(b"Buf", "buf", _B)),
}
_SORTED: dict[type[_Struct], tuple[_Field, ...]] = {
    cls: tuple(sorted(fields, key=lambda f: f.go)) for cls, fields in _SCHEMAS.items()
}
_BY_NAME: dict[type[_Struct], dict[bytes, _Field]] = {
    cls: {f.go: f for f in fields} for cls, fields in _SCHEMAS.items()
}
_ZERO: dict[_Kind, object] = {
    _Kind.U8: 0,
    _Kind.U16: 0,
    _Kind.U32: 0,
    _Kind.INT: 0,
    _Kind.BOOL: False,
    _Kind.STR: "",
    _Kind.BYTES: b"",
}
_INT_RANGE: dict[_Kind, tuple[int, int]] = {
    _Kind.U8: (0, _U8),
    _Kind.U16: (0, _U16),
    _Kind.U32: (0, _U32),
    _Kind.INT: (-_I64, _I64),
}
# Types whose struct is decodable straight after the type byte.
_CLASS_OF_TYPE: dict[int, type[_Struct]] = {
    MessageType.PING: Ping,
    MessageType.INDIRECT_PING: IndirectPing,
    MessageType.ACK: Ack,
    MessageType.NACK: Nack,
    MessageType.ERR: Err,
    MessageType.SUSPECT: Suspect,
    MessageType.ALIVE: Alive,
    MessageType.DEAD: Dead,
    MessageType.PUSH_PULL: PushPullHeader,
    MessageType.COMPRESS: Compress,
}
_PACKET_TYPES = frozenset(
    {
        MessageType.PING,
        MessageType.INDIRECT_PING,
        MessageType.ACK,
        MessageType.NACK,
        MessageType.SUSPECT,
        MessageType.ALIVE,
        MessageType.DEAD,
        MessageType.USER,
    }
)


def _go_string(value: bytes) -> str:
    # Go strings are byte strings: surrogateescape keeps any bytes round-trippable.
    return value.decode("utf-8", "surrogateescape")


def _go_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _encoder(cls: type, field: _Field) -> Callable[[object], object]:
    """The encoding check of one field, with its error text prepared once (encoding is hot)."""
    where = f"{cls.__name__}.{field.attr}"
    kind = field.kind
    if kind is _Kind.STR:

        def conv(value: object) -> object:
            if not isinstance(value, str):
                raise WireError(f"{where} must be str, not {type(value).__name__}")
            try:
                return _go_bytes(value)
            except UnicodeEncodeError as exc:
                raise WireError(f"{where} is not encodable as bytes: {exc}") from None

    elif kind is _Kind.BYTES:

        def conv(value: object) -> object:
            if type(value) is bytes:
                return value
            if not isinstance(value, bytes | bytearray | memoryview):
                raise WireError(f"{where} must be bytes, not {type(value).__name__}")
            return bytes(value)

    elif kind is _Kind.BOOL:

        def conv(value: object) -> object:
            if value is True or value is False:
                return value
            raise WireError(f"{where} must be bool, not {type(value).__name__}")

    else:
        lo, hi = _INT_RANGE[kind]
        go_type = kind.value

        def conv(value: object) -> object:
            if not isinstance(value, int) or isinstance(value, bool):
                raise WireError(f"{where} must be int, not {type(value).__name__}")
            if not lo <= value < hi:
                raise WireError(f"{where}={value} does not fit a Go {go_type}")
            return value

    return conv


def _decoder(cls: type, field: _Field) -> Callable[[object], object]:
    """A converter for one field, with its checks and error text prepared once (decoding is hot)."""
    where = f"{cls.__name__}.{field.go.decode()}"
    kind = field.kind
    if kind is _Kind.STR:

        def conv(value: object) -> object:
            if type(value) is bytes:
                return value.decode("utf-8", "surrogateescape")
            if value is None:
                return ""
            raise WireError(f"{where}: expected a string, got {type(value).__name__}")

    elif kind is _Kind.BYTES:

        def conv(value: object) -> object:
            if type(value) is bytes:
                return value
            if value is None:
                return b""
            raise WireError(f"{where}: expected bytes, got {type(value).__name__}")

    elif kind is _Kind.BOOL:

        def conv(value: object) -> object:
            if value is True or value is False:
                return value
            if value is None:
                return False
            if type(value) is int and value in (0, 1):  # go-msgpack reads fixint 0/1 as a bool
                return bool(value)
            raise WireError(f"{where}: expected a bool, got {value!r}")

    else:
        lo, hi = _INT_RANGE[kind]
        go_type = kind.value

        def conv(value: object) -> object:
            if type(value) is int:
                if lo <= value < hi:
                    return value
                raise WireError(f"{where}: {value} overflows a Go {go_type}")
            if value is None:
                return 0
            raise WireError(f"{where}: expected an integer, got {type(value).__name__}")

    return conv


_ENCODERS: dict[type[_Struct], tuple[tuple[bytes, str, Callable[[object], object], bool, bool], ...]] = {
    cls: tuple((f.go, f.attr, _encoder(cls, f), f.omitempty, f.kind is _Kind.BYTES) for f in fields)
    for cls, fields in _SORTED.items()
}
_DECODERS: dict[type[_Struct], dict[bytes, tuple[str, Callable[[object], object]]]] = {
    cls: {f.go: (f.attr, _decoder(cls, f)) for f in fields} for cls, fields in _SCHEMAS.items()
}
_DECODERS_IN_ORDER: dict[type[_Struct], tuple[tuple[str, Callable[[object], object]], ...]] = {
    cls: tuple((f.attr, _decoder(cls, f)) for f in fields) for cls, fields in _SCHEMAS.items()
}
_DEFAULTS: dict[type[_Struct], dict[str, object]] = {
    cls: {f.attr: _ZERO[f.kind] for f in fields} for cls, fields in _SCHEMAS.items()
}


def encode_body(msg: _Struct) -> bytes:
    """The msgpack of one struct exactly as memberlist's go-msgpack writes it (no type byte).

    A map keyed by Go field name in byte order; strings and []byte as raw strings; an empty []byte
    as nil, or left out where the Go field is ``omitempty`` (as are zero ports and empty strings).
    """
    cls = type(msg)
    encoders = _ENCODERS.get(cls)
    if encoders is None:
        raise TypeError(f"not a memberlist struct: {cls.__name__}")
    out: dict[bytes, object] = {}
    for go, attr, conv, omitempty, is_bytes in encoders:
        value = conv(getattr(msg, attr))
        if omitempty and not value:
            continue
        if is_bytes and not value:
            value = None  # Go writes a nil slice as msgpack nil
        out[go] = value
    packed: bytes = msgpack.packb(out, use_bin_type=False)
    return packed


def encode_message(msg: _Typed) -> bytes:
    """``[type byte] + msgpack`` (``[8] + payload`` for a user message in a packet)."""
    if isinstance(msg, UserMessage):
        return bytes([MessageType.USER]) + bytes(msg.payload)
    msg_type = getattr(type(msg), "TYPE", None)
    if msg_type is None:
        raise TypeError(f"{type(msg).__name__} has no type byte; use encode_body")
    return bytes([msg_type]) + encode_body(msg)


def _struct_from_object(cls: type[_Struct], obj: object) -> Any:
    values = dict(_DEFAULTS[cls])
    if isinstance(obj, dict):
        decoders = _DECODERS[cls]
        for key, value in obj.items():
            entry = decoders.get(key)
            if entry is not None:  # unknown keys are skipped, as go-msgpack does
                values[entry[0]] = entry[1](value)
            elif not isinstance(key, bytes):
                raise WireError(f"{cls.__name__}: map key {key!r} is not a string")
    elif isinstance(obj, tuple):  # go-msgpack also reads the array form, in source order
        for (attr, conv), value in zip(_DECODERS_IN_ORDER[cls], obj, strict=False):
            values[attr] = conv(value)
    elif obj is not None:
        raise WireError(f"{cls.__name__}: expected a msgpack map, got {type(obj).__name__}")
    factory: Any = cls
    return factory(**values)


# msgpack object framing: find where one object ends without decoding it, so streams know whether a
# whole object has arrived. Fixed sizes by first byte for the non-container, non-raw types.
_FIXED_SIZE: dict[int, int] = {
    0xC0: 1, 0xC2: 1, 0xC3: 1,
    0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
    0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9,
    0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18,
}  # fmt: skip
# first byte -> (bytes of the length field, extra bytes after it (ext type), multiplier: 0 = raw
# payload of that length, 1 = that many items, 2 = that many key/value pairs)
_SIZED: dict[int, tuple[int, int, int]] = {
    0xC4: (1, 0, 0), 0xC5: (2, 0, 0), 0xC6: (4, 0, 0),
    0xC7: (1, 1, 0), 0xC8: (2, 1, 0), 0xC9: (4, 1, 0),
    0xD9: (1, 0, 0), 0xDA: (2, 0, 0), 0xDB: (4, 0, 0),
    0xDC: (2, 0, 1), 0xDD: (4, 0, 1), 0xDE: (2, 0, 2), 0xDF: (4, 0, 2),
}  # fmt: skip


def _msgpack_end(buf: bytes | bytearray, pos: int) -> int | None:
    """Index just past the msgpack object at ``pos``, or None if ``buf`` holds only part of it."""
    end = len(buf)
    pending = 1
    while pending:
        if pending > end - pos:  # every object takes at least one byte
            return None
        b = buf[pos]
        pending -= 1
        if b <= 0x7F or b >= 0xE0:
            pos += 1
        elif b <= 0x8F:
            pos += 1
            pending += 2 * (b & 0x0F)
        elif b <= 0x9F:
            pos += 1
            pending += b & 0x0F
        elif b <= 0xBF:
            pos += 1 + (b & 0x1F)
        elif b in _FIXED_SIZE:
            pos += _FIXED_SIZE[b]
        elif b in _SIZED:
            width, extra, mult = _SIZED[b]
            if pos + 1 + width > end:
                return None
            n = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
            pos += 1 + width + extra
            if mult:
                pending += mult * n
            else:
                pos += n
        else:
            raise WireError(f"invalid msgpack type byte 0x{b:02x}")
        if pos > end:
            return None
    return pos


def _unpack(raw: bytes | bytearray) -> object:
    try:
        return msgpack.unpackb(bytes(raw), raw=True, use_list=False, strict_map_key=False)
    except Exception as exc:  # untrusted input: msgpack raises a zoo of ValueError/TypeError kinds
        raise WireError(f"malformed msgpack: {exc}") from None


def decode_body(cls: type[_Struct], data: bytes, offset: int = 0) -> tuple[Any, int]:
    """Decode one ``cls`` struct from ``data[offset:]``; return it and the offset just past it."""
    unpacker = msgpack.Unpacker(raw=True, use_list=False, strict_map_key=False)
    unpacker.feed(memoryview(data)[offset:])
    try:
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        raise WireError(f"truncated {cls.__name__}: msgpack object incomplete") from None
    except msgpack.FormatError as exc:
        raise WireError(f"invalid msgpack in {cls.__name__}: {exc}") from None
    except Exception as exc:  # untrusted input: msgpack raises a zoo of ValueError/TypeError kinds
        raise WireError(f"malformed msgpack: {exc}") from None
    return _struct_from_object(cls, obj), offset + unpacker.tell()


def _message_type(byte: int) -> MessageType:
    try:
        return MessageType(byte)
    except ValueError:
        raise WireError(f"unknown message type {byte}") from None


def decode_message(data: bytes) -> _Typed:
    """One message: ``[type byte] + msgpack``. Bytes after the msgpack object are ignored, as in Go."""
    data = bytes(data)
    if not data:
        raise WireError("missing message type byte")
    msg_type = _message_type(data[0])
    if msg_type is MessageType.USER:
        return UserMessage(data[1:])
    cls = _CLASS_OF_TYPE.get(msg_type)
    if cls is None:
        raise WireError(f"{msg_type.name} is framing, not a message; use decode_packet or StreamDecoder")
    msg, _ = decode_body(cls, data, 1)
    return msg  # type: ignore[no-any-return]


# --- packet framing ---------------------------------------------------------------------------------


def make_compound(parts: list[bytes]) -> bytes:
    """``[7][n][n × u16 BE length][parts]``: up to 255 messages of up to 65535 bytes each."""
    if len(parts) > COMPOUND_MAX_PARTS:
        raise WireError(f"a compound holds at most {COMPOUND_MAX_PARTS} parts, got {len(parts)}")
    out = bytearray((MessageType.COMPOUND, len(parts)))
    for part in parts:
        if len(part) >= _U16:
            raise WireError(f"compound part of {len(part)} bytes exceeds 65535")
        out += len(part).to_bytes(2, "big")
    for part in parts:
        out += part
    return bytes(out)


def split_compound(data: bytes) -> tuple[list[bytes], int]:
    """The parts of a compound (type byte included) and how many were cut off by truncation."""
    data = bytes(data)
    if not data or data[0] != MessageType.COMPOUND:
        raise WireError("not a compound message")
    if len(data) < 2:
        raise WireError("missing compound length byte")
    count = data[1]
    pos = 2 + 2 * count
    if len(data) < pos:
        raise WireError("truncated compound length slice")
    parts: list[bytes] = []
    for i in range(count):
        size = int.from_bytes(data[2 + 2 * i : 4 + 2 * i], "big")
        if len(data) - pos < size:
            return parts, count - i
        parts.append(data[pos : pos + size])
        pos += size
    return parts, 0


def add_crc(data: bytes) -> bytes:
    """``[12][crc32-IEEE of data, u32 BE]`` + data."""
    return bytes([MessageType.HAS_CRC]) + zlib.crc32(data).to_bytes(4, "big") + bytes(data)


def strip_crc(data: bytes) -> bytes:
    """Verify and remove a CRC header; WireError if it is missing or does not match."""
    data = bytes(data)
    if len(data) < 5 or data[0] != MessageType.HAS_CRC:
        raise WireError("no CRC header")
    expected = int.from_bytes(data[1:5], "big")
    actual = zlib.crc32(data[5:])
    if actual != expected:
        raise WireError(f"invalid checksum: got {actual:08x}, header says {expected:08x}")
    return data[5:]


def _label_bytes(label: str) -> bytes:
    raw = _go_bytes(label)
    if len(raw) > LABEL_MAX_SIZE:
        raise WireError(f"label {label!r} is too long ({len(raw)} > {LABEL_MAX_SIZE} bytes)")
    return raw


def add_label(data: bytes, label: str) -> bytes:
    """``[244][len][label]`` + data; an empty label adds nothing."""
    raw = _label_bytes(label)
    if not raw:
        return bytes(data)
    return bytes((MessageType.HAS_LABEL, len(raw))) + raw + bytes(data)


def strip_label(data: bytes) -> tuple[str, bytes]:
    """Split off a label header: ``(label, rest)``; ``("", data)`` when there is none."""
    data = bytes(data)
    if not data or data[0] != MessageType.HAS_LABEL:
        return "", data
    if len(data) < 2:
        raise WireError("cannot decode label; packet has been truncated")
    size = data[1]
    if size < 1:
        raise WireError("label header cannot be empty when present")
    if len(data) < 2 + size:
        raise WireError("cannot decode label; packet has been truncated")
    return _go_string(data[2 : 2 + size]), data[2 + size :]


def _lzw() -> Any:
    return _impl.kernels().lzw


def compress_payload(data: bytes) -> bytes:
    """``[9]`` + Compress{Algo: LZW, Buf: Go compress/lzw (LSB, 8-bit literals) of data}."""
    return encode_message(Compress(LZW_ALGO, bytes(_lzw().compress(bytes(data)))))


def _decompress(msg: Compress) -> bytes:
    if msg.algo != LZW_ALGO:
        raise WireError(f"cannot decompress unknown algorithm {msg.algo}")
    try:
        out = _lzw().decompress(msg.buf, max_size=MAX_DECOMPRESSED_BYTES)
    except ValueError as exc:  # corrupt, truncated or oversized LZW data
        raise WireError(f"failed to decompress payload: {exc}") from None
    out = bytes(out)
    if len(out) > MAX_DECOMPRESSED_BYTES:
        raise WireError(f"decompressed message is larger than limit ({MAX_DECOMPRESSED_BYTES})")
    return out


def decompress_payload(data: bytes) -> bytes:
    """The inverse of compress_payload: ``data`` is a whole ``[9]`` message."""
    data = bytes(data)
    if not data or data[0] != MessageType.COMPRESS:
        raise WireError("not a compress message")
    msg, _ = decode_body(Compress, data, 1)
    return _decompress(msg)


def _decrypt(keyring: Keyring, data: bytes, aad: bytes) -> bytes:
    try:
        return keyring.decrypt(data, aad)
    except DecryptError as exc:
        raise WireError(f"decrypt failed: {exc}") from None


def encode_packet(
    message_bytes: bytes,
    *,
    label: str = "",
    keyring: Keyring | None = None,
    crc: bool = False,
    compress: bool = False,
    encryption_version: int = 1,
    nonce: bytes | None = None,
) -> bytes:
    """Wrap one encoded message (or compound) for a UDP packet, in memberlist's order:
    compress (kept only if smaller) → CRC (send when the peer's max protocol ≥ 5) →
    encrypt (AAD = label) → label header."""
    buf = bytes(message_bytes)
    if compress:
        packed = compress_payload(buf)
        if len(packed) < len(buf):
            buf = packed
    if crc:
        buf = add_crc(buf)
    raw_label = _label_bytes(label)
    if keyring is not None:
        buf = keyring.encrypt(buf, raw_label, encryption_version, nonce=nonce)
    return add_label(buf, label)


def decode_packet(
    data: bytes,
    *,
    label: str = "",
    keyring: Keyring | None = None,
    skip_inbound_label_check: bool = False,
    verify_incoming: bool = True,
    strict: bool = True,
) -> list[Message]:
    """Unwrap a received packet: label → decrypt → CRC → (compress | compound)* → messages, in order.

    Truncated compound tails are dropped silently (complete parts are kept). With ``strict=False`` a
    malformed part inside a compound is skipped as memberlist does; otherwise it raises WireError.
    ``verify_incoming=False`` accepts plaintext when decryption fails (memberlist's key rollout mode).
    """
    packet_label, buf = strip_label(data)
    if skip_inbound_label_check:
        if packet_label:
            raise WireError("unexpected double packet label header")
        packet_label = label
    if packet_label != label:
        raise WireError(f"discarding packet with unacceptable label {packet_label!r}")
    if keyring is not None:
        try:
            buf = _decrypt(keyring, buf, _label_bytes(packet_label))
        except WireError:
            if verify_incoming:
                raise
    if len(buf) >= 5 and buf[0] == MessageType.HAS_CRC:
        buf = strip_crc(buf)
    out: list[Message] = []
    _collect(buf, out, strict, 0)
    return out


def _collect(buf: bytes, out: list[Message], strict: bool, depth: int) -> None:
    if depth > _MAX_NESTING:
        raise WireError(f"messages nested deeper than {_MAX_NESTING} levels")
    if not buf:
        raise WireError("missing message type byte")
    msg_type = _message_type(buf[0])
    if msg_type is MessageType.COMPOUND:
        parts, _truncated = split_compound(buf)
        for part in parts:
            try:
                _collect(part, out, strict, depth + 1)
            except WireError:
                if strict:
                    raise
    elif msg_type is MessageType.COMPRESS:
        _collect(decompress_payload(buf), out, strict, depth + 1)
    elif msg_type in _PACKET_TYPES:
        out.append(cast(Message, decode_message(buf)))
    else:
        raise WireError(f"message type {msg_type.name} is not valid in a packet")


# --- streams ----------------------------------------------------------------------------------------


def encode_push_pull(header_nodes: list[PushNodeState], user_state: bytes, join: bool) -> bytes:
    """``[6]`` + PushPullHeader + one PushNodeState per member + the raw user state."""
    if len(user_state) > MAX_PUSH_STATE_BYTES:
        raise WireError(f"user state of {len(user_state)} bytes exceeds {MAX_PUSH_STATE_BYTES}")
    out = bytearray(encode_message(PushPullHeader(len(header_nodes), len(user_state), join)))
    for node in header_nodes:
        out += encode_body(node)
    out += user_state
    return bytes(out)


def decode_push_pull(data: bytes) -> PushPull:
    """A complete, unframed push/pull (what encode_push_pull returns) back into its parts."""
    decoder = StreamDecoder(label_header=False)
    out = decoder.feed(data) or decoder.feed_eof()
    if not isinstance(out[0], PushPull):
        raise WireError(f"expected a push/pull, got {type(out[0]).__name__}")
    return out[0]


def encode_stream_user_message(payload: bytes) -> bytes:
    """A user message as sent on a stream: ``[8]`` + UserMsgHeader + the raw payload."""
    if len(payload) > MAX_USER_MSG_BYTES:
        raise WireError(f"user message of {len(payload)} bytes exceeds {MAX_USER_MSG_BYTES}")
    return bytes([MessageType.USER]) + encode_body(UserMsgHeader(len(payload))) + bytes(payload)


def encode_stream(
    payload: bytes,
    *,
    label: str = "",
    keyring: Keyring | None = None,
    compress: bool = False,
    label_header: bool = True,
    encryption_version: int = 1,
    nonce: bytes | None = None,
) -> bytes:
    """Frame one stream message: compress (always, when on) → ``[10][u32 BE len][envelope]`` with
    AAD = that 5-byte prefix + label → label header.

    Only the dialer writes the label header (``label_header=True``); the responder's reply carries
    none but still binds the label into the AAD.
    """
    buf = bytes(payload)
    if compress:
        buf = compress_payload(buf)
    raw_label = _label_bytes(label)
    if keyring is not None:
        prefix = bytes([MessageType.ENCRYPT]) + encrypted_length(encryption_version, len(buf)).to_bytes(
            4, "big"
        )
        buf = prefix + keyring.encrypt(buf, prefix + raw_label, encryption_version, nonce=nonce)
    return add_label(buf, label) if label_header else buf


class _Phase(Enum):
    LABEL = "label"
    TYPE = "type"
    ENCRYPTED = "encrypted"
    COMPRESSED = "compressed"
    BODY = "body"
    NODES = "nodes"
    USER_STATE = "user state"
    USER_PAYLOAD = "user payload"
    DONE = "done"
    FAILED = "failed"


class _NeedData(Exception):
    """Internal: the buffer ends inside the current step; wait for more bytes."""


class StreamDecoder:
    """Incremental reader of one memberlist stream message (a connection carries one each way).

    ``feed(chunk)`` returns the completed message (at most one, as a list); ``feed_eof()`` says the
    peer closed and raises WireError if the message is incomplete. There is no length framing: a
    push/pull is ``[6]``, the header, N node states and exactly UserStateLen raw bytes, so the
    decoder walks msgpack object boundaries as bytes arrive. Bytes after the message are ignored.

    ``label_header=True`` for the side that accepted the connection (the dialer may send a label
    header); ``False`` when reading the reply on a connection we dialled.
    """

    def __init__(
        self,
        *,
        label: str = "",
        keyring: Keyring | None = None,
        skip_inbound_label_check: bool = False,
        verify_incoming: bool = True,
        label_header: bool = True,
        max_user_state: int = MAX_PUSH_STATE_BYTES,
    ) -> None:
        self._label = label
        self._raw_label = _label_bytes(label)
        self._keyring = keyring
        self._skip_label_check = skip_inbound_label_check
        self._verify_incoming = verify_incoming
        self._max_user_state = max_user_state
        self._buf = bytearray()
        self._pos = 0
        self._final = False  # the buffer holds everything there will be (decrypted/decompressed/EOF)
        self._phase = _Phase.LABEL if label_header else _Phase.TYPE
        self._type: MessageType | None = None
        self._header: PushPullHeader | None = None
        self._nodes: list[PushNodeState] = []
        self._user_len = 0
        self._result: StreamMessage | None = None
        self.stream_label = ""  # the label the peer announced (or the configured one)

    @property
    def done(self) -> bool:
        return self._phase is _Phase.DONE

    @property
    def message_type(self) -> MessageType | None:
        """The (inner) message type, once known."""
        return self._type

    def feed(self, data: bytes) -> list[StreamMessage]:
        """Add received bytes; return ``[message]`` once the message is complete, else ``[]``."""
        if self._phase is _Phase.DONE:
            return []
        self._check_not_failed()
        if not self._final:
            self._buf += data
        return self._run()

    def feed_eof(self) -> list[StreamMessage]:
        """The peer closed its side: finish, or raise WireError if the message is incomplete."""
        if self._phase is _Phase.DONE:
            return []
        self._check_not_failed()
        if not self._final and not self._buf:
            self._phase = _Phase.FAILED
            raise WireError("stream closed before any message")
        self._final = True
        return self._run()

    def _check_not_failed(self) -> None:
        if self._phase is _Phase.FAILED:
            raise WireError("stream decoder already failed")

    # -- the steps --------------------------------------------------------------------------------

    def _take(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n:
            if self._final:
                raise WireError(f"stream truncated in {self._phase.value}")
            raise _NeedData
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    def _peek(self, n: int) -> bytes:
        out = self._take(n)
        self._pos -= n
        return out

    def _take_struct(self, cls: type[_Struct]) -> Any:
        end = _msgpack_end(self._buf, self._pos)
        if end is None:
            if self._final:
                raise WireError(f"stream truncated in {cls.__name__}")
            raise _NeedData
        msg = _struct_from_object(cls, _unpack(self._buf[self._pos : end]))
        self._pos = end
        return msg

    def _replace_buffer(self, data: bytes) -> None:
        self._buf = bytearray(data)
        self._pos = 0
        self._final = True

    def _run(self) -> list[StreamMessage]:
        try:
            while self._phase is not _Phase.DONE and self._phase is not _Phase.FAILED:
                self._step()
        except WireError:
            self._phase = _Phase.FAILED
            raise
        except _NeedData:
            if self._pos > 1 << 16 and self._pos > len(self._buf) // 2:
                del self._buf[: self._pos]
                self._pos = 0
            return []
        result = self._result
        assert result is not None
        self._buf = bytearray()
        self._pos = 0
        return [result]

    def _step(self) -> None:
        phase = self._phase
        if phase is _Phase.LABEL:
            self._read_label()
        elif phase is _Phase.TYPE:
            self._read_type()
        elif phase is _Phase.ENCRYPTED:
            self._read_encrypted()
        elif phase is _Phase.COMPRESSED:
            compressed = self._take_struct(Compress)
            plain = _decompress(compressed)
            if not plain:
                raise WireError("decompressed message is empty")
            self._replace_buffer(plain)
            self._begin_body(self._take(1)[0])
        elif phase is _Phase.BODY:
            self._read_body()
        elif phase is _Phase.NODES:
            assert self._header is not None
            while len(self._nodes) < self._header.nodes:
                self._nodes.append(self._take_struct(PushNodeState))
            self._phase = _Phase.USER_STATE
        elif phase is _Phase.USER_STATE:
            assert self._header is not None
            state = self._take(self._header.user_state_len)
            self._finish(PushPull(self._header.join, tuple(self._nodes), state))
        elif phase is _Phase.USER_PAYLOAD:
            self._finish(UserMessage(self._take(self._user_len)))

    def _finish(self, result: StreamMessage) -> None:
        self._result = result
        self._phase = _Phase.DONE

    def _read_label(self) -> None:
        first = self._peek(1)[0]
        stream_label = ""
        if first == MessageType.HAS_LABEL:
            size = self._peek(2)[1]
            if size < 1:
                raise WireError("label header cannot be empty when present")
            stream_label = _go_string(self._take(2 + size)[2:])
        if self._skip_label_check:
            if stream_label:
                raise WireError("unexpected double stream label header")
            stream_label = self._label
        if stream_label != self._label:
            raise WireError(f"discarding stream with unacceptable label {stream_label!r}")
        self.stream_label = stream_label
        self._phase = _Phase.TYPE

    def _read_type(self) -> None:
        if not self.stream_label:
            self.stream_label = self._label
        first = self._take(1)[0]
        if first == MessageType.ENCRYPT:
            if self._keyring is None:
                raise WireError("remote state is encrypted and encryption is not configured")
            self._phase = _Phase.ENCRYPTED
        elif self._keyring is not None and self._verify_incoming:
            raise WireError("encryption is configured but remote state is not encrypted")
        else:
            self._begin(first)

    def _read_encrypted(self) -> None:
        size = int.from_bytes(self._peek(4), "big")
        if size > MAX_PUSH_STATE_BYTES:
            raise WireError(f"remote node state is larger than limit ({size})")
        block = self._take(4 + size)
        prefix = bytes([MessageType.ENCRYPT]) + block[:4]
        assert self._keyring is not None
        plain = _decrypt(self._keyring, block[4:], prefix + self._raw_label)
        if not plain:
            raise WireError("decrypted stream message is empty")
        self._replace_buffer(plain)
        self._begin(self._take(1)[0])

    def _begin(self, type_byte: int) -> None:
        if type_byte == MessageType.COMPRESS:
            self._phase = _Phase.COMPRESSED
        else:
            self._begin_body(type_byte)

    def _begin_body(self, type_byte: int) -> None:
        msg_type = _message_type(type_byte)
        if msg_type not in (
            MessageType.PUSH_PULL,
            MessageType.PING,
            MessageType.ACK,
            MessageType.ERR,
            MessageType.USER,
        ):
            raise WireError(f"message type {msg_type.name} is not valid on a stream")
        self._type = msg_type
        self._phase = _Phase.BODY

    def _read_body(self) -> None:
        msg_type = self._type
        if msg_type is MessageType.PUSH_PULL:
            header: PushPullHeader = self._take_struct(PushPullHeader)
            if not 0 <= header.nodes <= MAX_PUSH_STATE_NODES:
                raise WireError(f"number of nodes in header ({header.nodes}) exceeds limit")
            if not 0 <= header.user_state_len <= self._max_user_state:
                raise WireError(f"user state length ({header.user_state_len}) exceeds limit")
            self._header = header
            self._phase = _Phase.NODES
        elif msg_type is MessageType.USER:
            user: UserMsgHeader = self._take_struct(UserMsgHeader)
            if not 0 <= user.user_msg_len <= MAX_USER_MSG_BYTES:
                raise WireError(f"user message length ({user.user_msg_len}) exceeds limit")
            self._user_len = user.user_msg_len
            self._phase = _Phase.USER_PAYLOAD
        elif msg_type is MessageType.PING:
            self._finish(self._take_struct(Ping))
        elif msg_type is MessageType.ACK:
            self._finish(self._take_struct(Ack))
        else:
            self._finish(self._take_struct(Err))


# --- dskit's TCP transport framing ------------------------------------------------------------------


class DskitConnectionType(IntEnum):
    """The first byte of every connection of dskit's TCP transport."""

    PACKET = 1  # [1][addr len u8]["ip:port"][payload][md5(payload)], then close
    STREAM = 2  # [2] then a plain memberlist stream


@dataclass(frozen=True, slots=True)
class DskitPacket:
    from_addr: str
    payload: bytes
    digest_ok: bool  # dskit only logs a mismatch and delivers the packet anyway


def encode_dskit_packet(from_addr: str, payload: bytes) -> bytes:
    """A memberlist packet sent over dskit's one-connection-per-packet TCP transport."""
    addr = _go_bytes(from_addr)
    if len(addr) > 255:
        raise WireError("local address too long")
    payload = bytes(payload)
    digest = hashlib.md5(payload, usedforsecurity=False).digest()
    return bytes((DskitConnectionType.PACKET, len(addr))) + addr + payload + digest


def decode_dskit_packet(data: bytes) -> DskitPacket:
    """Everything read from a dskit packet connection until the peer closed it."""
    data = bytes(data)
    if not data:
        raise WireError("empty dskit connection")
    if data[0] != DskitConnectionType.PACKET:
        if data[0] == DskitConnectionType.STREAM:
            raise WireError("dskit connection is a stream, not a packet")
        raise WireError(f"unknown dskit message type {data[0]}")
    if len(data) < 2:
        raise WireError("dskit packet truncated before the address length")
    end = 2 + data[1]
    if len(data) < end:
        raise WireError("dskit packet truncated in the address")
    rest = data[end:]
    if len(rest) < 16:
        raise WireError(f"not enough data received ({len(rest)} bytes, digest needs 16)")
    payload, digest = rest[:-16], rest[-16:]
    ok = hashlib.md5(payload, usedforsecurity=False).digest() == digest
    return DskitPacket(_go_string(data[2:end]), payload, ok)
