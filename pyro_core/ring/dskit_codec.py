# dskit's wire formats, for exchanging rings with Go services (Pyroscope, Mimir, Loki, Cortex).
# Owns: the protobuf schema of dskit's ring.Desc / ring.InstanceDesc (ring/ring.proto) and of
# memberlist.KeyValuePair / KeyValueStore (kv/memberlist/kv.proto), built at import time from a
# FileDescriptorProto written here (no protoc step); the "ringDesc" codec (protobuf, then a snappy
# *block*, like dskit's kv/codec Proto codec); KeyValuePair helpers for the gossip layer.
# Must not know: the native format (codec.py), merging, gossip transport.
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import cramjam
import numpy as np
import numpy.typing as npt
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields

from pyro_core.ring.errors import CodecError
from pyro_core.ring.model import InstanceDesc, InstanceState, RingDesc, TokenArray

CODEC_ID: Final = "ringDesc"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL: Final = _F.LABEL_OPTIONAL
_REPEATED: Final = _F.LABEL_REPEATED


# -- the schema ----------------------------------------------------------------------------------
def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_: int,
    *,
    label: int = _OPTIONAL,
    type_name: str = "",
    json_name: str = "",
) -> None:
    field = message.field.add(name=name, number=number, type=type_, label=label)
    if type_name:
        field.type_name = type_name
    field.json_name = json_name or _json_name(name)


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _map_entry(
    parent: descriptor_pb2.DescriptorProto,
    entry_name: str,
    key_type: int,
    value_type: int,
    value_type_name: str = "",
) -> None:
    entry = parent.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _field(entry, "key", 1, key_type)
    _field(entry, "value", 2, value_type, type_name=value_type_name)


def _ring_file(name: str, *, raw_token_chunks: bool) -> descriptor_pb2.FileDescriptorProto:
    """dskit ring/ring.proto (package ring, proto3), without the gogoproto options.

    With ``raw_token_chunks`` field 6 is declared ``repeated bytes``: a packed ``repeated uint32``
    has the same wire format (tag 6, wire type 2, length, varints), so each packed chunk reads and
    writes as raw bytes. The encoder fills them with varints computed by numpy for the whole ring at
    once (``_packed_varints``); the decoder reads them to check every token fits in 32 bits
    (``_check_token_widths``), which protobuf's uint32 parsing would silently truncate.
    """
    f = descriptor_pb2.FileDescriptorProto(name=name, package="ring", syntax="proto3")

    desc = f.message_type.add(name="Desc")
    _map_entry(desc, "IngestersEntry", _F.TYPE_STRING, _F.TYPE_MESSAGE, ".ring.InstanceDesc")
    _field(desc, "ingesters", 1, _F.TYPE_MESSAGE, label=_REPEATED, type_name=".ring.Desc.IngestersEntry")
    desc.reserved_range.add(start=2, end=3)

    inst = f.message_type.add(name="InstanceDesc")
    _map_entry(inst, "VersionsEntry", _F.TYPE_UINT64, _F.TYPE_UINT64)
    _field(inst, "addr", 1, _F.TYPE_STRING)
    _field(inst, "timestamp", 2, _F.TYPE_INT64)
    _field(inst, "state", 3, _F.TYPE_ENUM, type_name=".ring.InstanceState")
    if raw_token_chunks:
        _field(inst, "tokens", 6, _F.TYPE_BYTES, label=_REPEATED)
    else:
        _field(inst, "tokens", 6, _F.TYPE_UINT32, label=_REPEATED)  # proto3: packed by default
    _field(inst, "zone", 7, _F.TYPE_STRING)
    _field(inst, "registered_timestamp", 8, _F.TYPE_INT64)
    _field(inst, "id", 9, _F.TYPE_STRING)
    _field(inst, "read_only_updated_timestamp", 10, _F.TYPE_INT64)
    _field(inst, "read_only", 11, _F.TYPE_BOOL)
    _field(
        inst, "versions", 12, _F.TYPE_MESSAGE, label=_REPEATED, type_name=".ring.InstanceDesc.VersionsEntry"
    )
    inst.reserved_range.add(start=4, end=6)  # 4 and 5: old, deprecated fields

    enum = f.enum_type.add(name="InstanceState")
    for state in sorted(InstanceState, key=int):
        enum.value.add(name=state.name, number=int(state))
    return f


def _kv_file() -> descriptor_pb2.FileDescriptorProto:
    """dskit kv/memberlist/kv.proto (package memberlist, proto3)."""
    f = descriptor_pb2.FileDescriptorProto(
        name="dskit/kv/memberlist/kv.proto", package="memberlist", syntax="proto3"
    )
    store = f.message_type.add(name="KeyValueStore")
    _field(store, "pairs", 1, _F.TYPE_MESSAGE, label=_REPEATED, type_name=".memberlist.KeyValuePair")
    pair = f.message_type.add(name="KeyValuePair")
    _field(pair, "key", 1, _F.TYPE_STRING)
    _field(pair, "value", 2, _F.TYPE_BYTES)
    _field(pair, "codec", 3, _F.TYPE_STRING)
    _field(pair, "deleted", 4, _F.TYPE_BOOL)
    _field(pair, "update_time_millis", 5, _F.TYPE_INT64)
    return f


# A private pool: nothing else in the process can clash with these names.
_POOL: Final = descriptor_pool.DescriptorPool()
_POOL.Add(_ring_file("dskit/ring/ring.proto", raw_token_chunks=False))
_POOL.Add(_kv_file())
_RAW_TOKENS_POOL: Final = descriptor_pool.DescriptorPool()  # the same ring.proto, tokens as raw chunks
_RAW_TOKENS_POOL.Add(_ring_file("dskit/ring/ring.proto", raw_token_chunks=True))


def _message_class(pool: descriptor_pool.DescriptorPool, full_name: str) -> Any:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


PbDesc: Final[Any] = _message_class(_POOL, "ring.Desc")
PbInstanceDesc: Final[Any] = _message_class(_POOL, "ring.InstanceDesc")
PbKeyValuePair: Final[Any] = _message_class(_POOL, "memberlist.KeyValuePair")
PbKeyValueStore: Final[Any] = _message_class(_POOL, "memberlist.KeyValueStore")
_PbDescRawTokens: Final[Any] = _message_class(_RAW_TOKENS_POOL, "ring.Desc")

_STATE_BY_VALUE: Final[dict[int, InstanceState]] = {int(s): s for s in InstanceState}
_TOKENS_FIELD: Final = 6
_UINT32_MAX: Final = 0xFFFFFFFF
_DESC_FIELDS: Final = frozenset({1})
_INSTANCE_FIELDS: Final = frozenset({1, 2, 3, 6, 7, 8, 9, 10, 11, 12})
# Below this many tokens in a ring, encode_dskit fills the plain protobuf message (faster for a few
# instances); from it on, it computes every packed varint at once with numpy (measured crossover:
# ~8 instances x 128 tokens).
_VECTORISE_FROM_TOKENS: Final = 1024


# -- snappy block --------------------------------------------------------------------------------
def _snappy_encode(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def _snappy_decode(data: bytes | bytearray | memoryview, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"{what}: expected bytes, got {type(data).__name__}")
    try:
        return bytes(cramjam.snappy.decompress_raw(bytes(data)))
    except Exception as exc:  # cramjam.DecompressionError, and anything else the binding raises
        raise CodecError(f"{what}: not a snappy block: {exc}"[:300]) from None


def _parse(cls: Any, raw: bytes, what: str) -> Any:
    try:
        return cls.FromString(raw)
    except Exception as exc:  # google.protobuf.message.DecodeError (bad wire data, bad UTF-8...)
        raise CodecError(f"{what}: not a valid protobuf {cls.DESCRIPTOR.full_name}: {exc}"[:300]) from None


# -- varints -------------------------------------------------------------------------------------
def _packed_varints(tokens: TokenArray, counts: list[int]) -> tuple[bytes, list[int]]:
    """Protobuf varints of uint32 values, computed for a whole ring at once.

    ``tokens`` is every instance's tokens back to back, ``counts`` how many each instance has.
    Returns the concatenated varints and, per instance, the byte length of its varints.
    A varint holds 7 bits per byte, low bits first, with the top bit set on every byte but the
    last; a uint32 takes 1 to 5 bytes.
    """
    v = tokens.astype(np.uint32, copy=False)
    groups = np.empty((v.size, 5), dtype=np.uint8)
    present = np.empty((v.size, 5), dtype=np.bool_)
    present[:, 0] = True
    lengths = np.ones(v.size, dtype=np.intp)
    for k in range(5):
        byte = (v >> np.uint32(7 * k)).astype(np.uint8) & np.uint8(0x7F)
        if k < 4:
            more = v >= np.uint32(1 << (7 * (k + 1)))
            byte |= more.view(np.uint8) << np.uint8(7)
            present[:, k + 1] = more
            lengths += more
        groups[:, k] = byte
    counts_arr = np.array(counts, dtype=np.intp)
    byte_lengths = np.zeros(len(counts), dtype=np.intp)
    nonempty = counts_arr > 0
    if nonempty.any():
        starts = (np.cumsum(counts_arr) - counts_arr)[nonempty]
        byte_lengths[nonempty] = np.add.reduceat(lengths, starts)
    return groups[present].tobytes(), byte_lengths.tolist()


# -- ring.Desc ----------------------------------------------------------------------------------
def _check_ids(desc: RingDesc) -> None:
    for key, inst in desc.instances.items():
        if inst.id and inst.id != key:
            raise CodecError(f"cannot encode ring: instance stored under {key!r} has id {inst.id!r}"[:200])


def _fill_instance(m: Any, key: str, inst: InstanceDesc) -> None:
    m.addr = inst.addr
    m.timestamp = inst.timestamp
    m.state = int(inst.state)
    m.zone = inst.zone
    m.registered_timestamp = inst.registered_timestamp
    m.id = key
    m.read_only_updated_timestamp = inst.read_only_updated_timestamp
    m.read_only = inst.read_only
    if inst.versions:
        m.versions.update(inst.versions)


def ring_to_proto(desc: RingDesc) -> Any:
    """The ``ring.Desc`` protobuf message of a ring description (ids are the map keys)."""
    if not isinstance(desc, RingDesc):
        raise CodecError(f"expected a RingDesc, got {type(desc).__name__}")
    _check_ids(desc)
    msg = PbDesc()
    ingesters = msg.ingesters
    try:
        for key, inst in desc.instances.items():
            m = ingesters[key]  # creates the entry, even for an instance whose fields are all defaults
            _fill_instance(m, key, inst)
            m.tokens.extend(inst.tokens.tolist())
    except Exception as exc:  # out-of-range integers, bad types, unencodable strings
        raise CodecError(f"cannot encode ring as ring.Desc: {exc}"[:300]) from None
    return msg


def ring_from_proto(msg: Any) -> RingDesc:
    """A ring description from a ``ring.Desc`` message, normalised the way dskit's ring sees it:
    the id is the map key (dskit's setInstanceIDs), tokens sorted and deduplicated."""
    _check_unknown_fields(msg, _DESC_FIELDS, "ring.Desc")
    items = list(msg.ingesters.items())
    tokens = _normalised([np.array(m.tokens, dtype=np.uint32) for _, m in items])
    instances: dict[str, InstanceDesc] = {}
    trusted = InstanceDesc._trusted
    by_value = _STATE_BY_VALUE
    for (key, m), toks in zip(items, tokens, strict=True):
        state = by_value.get(m.state)
        if state is None:
            raise CodecError(f"ring.Desc: instance {key!r} has an unknown state {m.state}"[:200])
        _check_unknown_fields(m, _INSTANCE_FIELDS, f"ring.Desc: instance {key!r}")
        instances[key] = trusted(
            key,
            m.addr,
            m.timestamp,
            state,
            toks,
            m.zone,
            m.registered_timestamp,
            m.read_only,
            m.read_only_updated_timestamp,
            dict(m.versions),
        )
    return RingDesc._trusted(instances)


def _check_unknown_fields(m: Any, known: frozenset[int], where: str) -> None:
    """Fields this schema does not know are skipped (a newer dskit may add some), like dskit's
    gogo unmarshaller does; but a known field sent with the wrong wire type is an error there, and
    here too (protobuf's parser would otherwise keep it aside as an unknown field)."""
    unknown = unknown_fields.UnknownFieldSet(m)
    if not unknown:
        return
    for field in unknown:
        if field.field_number in known:
            raise CodecError(
                f"{where}: field {field.field_number} has the wrong wire type {field.wire_type}"[:200]
            )


def _normalised(arrays: list[TokenArray]) -> list[TokenArray]:
    """Read-only token arrays, each sorted and deduplicated (checked for the whole ring at once)."""
    if not arrays:
        return arrays
    lengths = np.fromiter(map(len, arrays), dtype=np.intp, count=len(arrays))
    total = int(lengths.sum())
    if total > 1:
        ring = np.concatenate(arrays)
        ok = ring[1:] > ring[:-1]
        ends = np.cumsum(lengths)
        seams = ends[:-1]
        seams = seams[(seams > 0) & (seams < total)]
        ok[seams - 1] = True
        if not ok.all():
            for index in np.unique(np.searchsorted(ends, np.flatnonzero(~ok), side="right")).tolist():
                arrays[index] = np.unique(arrays[index])
    for array in arrays:
        array.flags.writeable = False
    return arrays


def encode_dskit(desc: RingDesc) -> bytes:
    """dskit's ``ringDesc`` codec: ``ring.Desc`` protobuf bytes compressed as one snappy block.

    The protobuf bytes are deterministic (protobuf's deterministic map order: the same ring gives
    the same bytes) and equal to ``ring_to_proto(desc).SerializeToString(deterministic=True)``;
    tokens are packed varints, as dskit writes them. dskit itself writes map entries in Go's random
    map order, so no reader depends on the order.
    """
    if not isinstance(desc, RingDesc):
        raise CodecError(f"encode_dskit expects a RingDesc, got {type(desc).__name__}")
    if sum(len(inst.tokens) for inst in desc.instances.values()) < _VECTORISE_FROM_TOKENS:
        raw = _serialize(ring_to_proto(desc))  # small (a gossip delta...): numpy would cost more
    else:
        raw = _serialize_vectorised(desc)
    return _snappy_encode(raw)


def _serialize(msg: Any) -> bytes:
    try:
        return msg.SerializeToString(deterministic=True)  # type: ignore[no-any-return]
    except Exception as exc:
        raise CodecError(f"cannot encode ring as ring.Desc: {exc}"[:300]) from None


def _serialize_vectorised(desc: RingDesc) -> bytes:
    """The ring.Desc bytes, with every token varint computed at once by numpy and each instance's
    packed run set as raw bytes (same bytes as the plain message; faster from ~1,000 tokens)."""
    _check_ids(desc)
    instances = desc.instances
    try:
        arrays = [inst.tokens for inst in instances.values()]
        all_tokens = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.uint32)
        if all_tokens.dtype != np.uint32:
            raise CodecError("cannot encode ring: tokens must be uint32 arrays")
        stream, byte_lengths = _packed_varints(all_tokens, [len(a) for a in arrays])
        msg = _PbDescRawTokens()
        ingesters = msg.ingesters
        start = 0
        for (key, inst), length in zip(instances.items(), byte_lengths, strict=True):
            m = ingesters[key]
            _fill_instance(m, key, inst)
            if length:
                m.tokens.append(stream[start : start + length])
                start += length
    except CodecError:
        raise
    except Exception as exc:  # out-of-range integers, bad types, unencodable strings
        raise CodecError(f"cannot encode ring as ring.Desc: {exc}"[:300]) from None
    return _serialize(msg)


def decode_dskit(data: bytes | bytearray | memoryview) -> RingDesc:
    """Decode dskit's ``ringDesc`` codec; any malformed input raises CodecError."""
    raw = _snappy_decode(data, "ringDesc")
    msg = _parse(PbDesc, raw, "ringDesc")
    _check_token_widths(raw)
    return ring_from_proto(msg)


def _has_wide_varint(a: npt.NDArray[np.uint8]) -> bool:
    """Whether ``a`` holds 4 continuation bytes (>= 0x80) followed by a byte > 0x0F: the mark of a
    varint wider than 32 bits (a uint32 varint has at most 5 bytes, the 5th at most 0x0F)."""
    if a.size < 5:
        return False
    more = a >= 0x80
    window = more[:-4] & more[1:-3]
    window &= more[2:-2]
    window &= more[3:-1]
    window &= a[4:] > 0x0F
    return bool(window.any())


def _check_token_widths(raw: bytes) -> None:
    """Reject a token whose varint holds more than 32 bits (protobuf and Go would truncate it).

    First a scan of the whole message: if no run of bytes anywhere looks like a varint wider than
    32 bits, no token can be one (the usual case: only negative or huge int64s, uint64 versions
    or non-ASCII strings make such runs). Otherwise the message is read again with tokens as raw
    packed chunks to look at the tokens alone; tokens sent unpacked are unknown fields to that
    schema, which hands over their full value.
    """
    if not _has_wide_varint(np.frombuffer(raw, dtype=np.uint8)):
        return
    view = _parse(_PbDescRawTokens, raw, "ringDesc")
    for key, m in view.ingesters.items():
        if m.tokens and _has_wide_varint(np.frombuffer(b"".join(m.tokens), dtype=np.uint8)):
            raise CodecError(f"ring.Desc: instance {key!r} has a token out of uint32 range"[:200])
        unknown = unknown_fields.UnknownFieldSet(m)
        if unknown:
            for field in unknown:
                if field.field_number == _TOKENS_FIELD and field.wire_type == 0 and field.data > _UINT32_MAX:
                    raise CodecError(
                        f"ring.Desc: instance {key!r} has a token out of uint32 range: {field.data}"[:200]
                    )


# -- memberlist.KeyValuePair ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyValuePair:
    """dskit memberlist's gossip payload: one KV key and its codec-encoded value.

    ``value`` is the codec's bytes (for ``codec == "ringDesc"``: ``encode_dskit`` output);
    ``update_time_millis`` is unix milliseconds (0 = unknown); ``deleted`` marks the key for deletion.
    """

    key: str
    value: bytes
    codec: str
    deleted: bool = False
    update_time_millis: int = 0


def _pair_to_proto(pair: KeyValuePair, target: Any) -> None:
    if not isinstance(pair, KeyValuePair):
        raise CodecError(f"expected a KeyValuePair, got {type(pair).__name__}")
    try:
        target.key = pair.key
        target.value = bytes(pair.value)
        target.codec = pair.codec
        target.deleted = pair.deleted
        target.update_time_millis = pair.update_time_millis
    except Exception as exc:
        raise CodecError(f"cannot encode KeyValuePair: {exc}"[:300]) from None


def _pair_from_proto(m: Any) -> KeyValuePair:
    return KeyValuePair(
        key=m.key, value=m.value, codec=m.codec, deleted=m.deleted, update_time_millis=m.update_time_millis
    )


def encode_kv_pair(pair: KeyValuePair) -> bytes:
    """``memberlist.KeyValuePair`` protobuf bytes (not compressed: dskit sends them as they are)."""
    msg = PbKeyValuePair()
    _pair_to_proto(pair, msg)
    return msg.SerializeToString()  # type: ignore[no-any-return]


def decode_kv_pair(data: bytes | bytearray | memoryview) -> KeyValuePair:
    """Parse ``memberlist.KeyValuePair`` bytes; malformed input raises CodecError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"KeyValuePair: expected bytes, got {type(data).__name__}")
    return _pair_from_proto(_parse(PbKeyValuePair, bytes(data), "KeyValuePair"))


def encode_kv_store(pairs: Iterable[KeyValuePair]) -> bytes:
    """``memberlist.KeyValueStore`` protobuf bytes: a list of pairs."""
    msg = PbKeyValueStore()
    for pair in pairs:
        _pair_to_proto(pair, msg.pairs.add())
    return msg.SerializeToString()  # type: ignore[no-any-return]


def decode_kv_store(data: bytes | bytearray | memoryview) -> list[KeyValuePair]:
    """Parse ``memberlist.KeyValueStore`` bytes; malformed input raises CodecError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"KeyValueStore: expected bytes, got {type(data).__name__}")
    msg = _parse(PbKeyValueStore, bytes(data), "KeyValueStore")
    return [_pair_from_proto(m) for m in msg.pairs]


__all__ = [
    "CODEC_ID",
    "KeyValuePair",
    "decode_dskit",
    "decode_kv_pair",
    "decode_kv_store",
    "encode_dskit",
    "encode_kv_pair",
    "encode_kv_store",
    "ring_from_proto",
    "ring_to_proto",
]
