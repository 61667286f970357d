# Tests of the native ring codec (pyro_core/ring/codec.py): msgpack envelope, columns, tokens as
# little-endian uint32 bytes.
# Owns: round-trip properties over random rings (every field, int64 bounds, versions), the decoded
# tokens' shape (read-only zero-copy uint32 views, sorted and unique), and the rule that any
# malformed input — truncated, mutated, random, wrong envelope or version, wrong field types —
# raises CodecError and nothing else.
from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_core.ring import codec
from pyro_core.ring.codec import FORMAT_VERSION, MAGIC, decode_ring, encode_ring
from pyro_core.ring.errors import CodecError
from pyro_core.ring.model import InstanceDesc, InstanceState, RingDesc

from .helpers import assert_well_formed, big_ring

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)


@st.composite
def instance_descs(draw: st.DrawFn, id: str | None = None) -> InstanceDesc:
    return InstanceDesc(
        id=draw(st.text(max_size=12)) if id is None else id,
        addr=draw(st.text(max_size=24)),
        timestamp=draw(INT64),
        state=draw(st.sampled_from(list(InstanceState))),
        tokens=draw(st.lists(st.integers(0, 2**32 - 1), max_size=40)),
        zone=draw(st.text(max_size=8)),
        registered_timestamp=draw(INT64),
        read_only=draw(st.booleans()),
        read_only_updated_timestamp=draw(INT64),
        versions=draw(st.dictionaries(UINT64, UINT64, max_size=4)),
    )


@st.composite
def ring_descs(draw: st.DrawFn, max_instances: int = 8) -> RingDesc:
    ids = draw(st.lists(st.text(max_size=12), max_size=max_instances, unique=True))
    return RingDesc({i: draw(instance_descs(id=i)) for i in ids})


def small_ring() -> RingDesc:
    return RingDesc(
        {
            "a": InstanceDesc(
                id="a",
                addr="10.0.0.1:9095",
                timestamp=-(2**63),
                state=InstanceState.LEAVING,
                tokens=[1, 7, 2**32 - 1],
                zone="z1",
                registered_timestamp=2**63 - 1,
                read_only=True,
                read_only_updated_timestamp=5,
                versions={1: 2, 2**64 - 1: 0},
            ),
            "b": InstanceDesc(id="b", tokens=[3]),
            "c": InstanceDesc(id="c", state=InstanceState.LEFT),
        }
    )


def envelope(desc: RingDesc) -> list[Any]:
    """The decoded msgpack structure of an encoding, as lists (to tamper with)."""
    return msgpack.unpackb(encode_ring(desc), strict_map_key=False)  # type: ignore[no-any-return]


def pack(items: list[Any]) -> bytes:
    return msgpack.packb(items)  # type: ignore[no-any-return]


def assert_identical(a: RingDesc, b: RingDesc) -> None:
    assert list(a.instances) == list(b.instances)
    for key, x in a.instances.items():
        y = b.instances[key]
        for name in InstanceDesc.__slots__:
            if name == "tokens":
                assert y.tokens.dtype == np.uint32
                assert y.tokens.tolist() == x.tokens.tolist()
            else:
                assert getattr(y, name) == getattr(x, name), name
                assert type(getattr(y, name)) is type(getattr(x, name)), name


# -- round trips --------------------------------------------------------------------------------
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(ring_descs())
def test_native_codec_round_trips_every_field(desc: RingDesc) -> None:
    back = decode_ring(encode_ring(desc))
    assert back == desc
    assert_identical(desc, back)


def test_native_codec_round_trips_int64_bounds_and_uint64_versions() -> None:
    desc = small_ring()
    back = decode_ring(encode_ring(desc))
    assert_identical(desc, back)
    assert back["a"].timestamp == -(2**63)
    assert back["a"].registered_timestamp == 2**63 - 1
    assert back["a"].versions == {1: 2, 2**64 - 1: 0}
    assert back["a"].state is InstanceState.LEAVING


def test_native_codec_round_trips_the_empty_ring() -> None:
    data = encode_ring(RingDesc())
    assert decode_ring(data) == RingDesc()
    assert len(data) < 32


def test_native_codec_round_trips_a_600_by_128_ring() -> None:
    desc = big_ring()
    data = encode_ring(desc)
    back = decode_ring(data)
    assert back == desc
    assert len(back) == 600
    # 600 x 128 x 4 token bytes plus ~66 bytes per instance for everything else
    assert 600 * 128 * 4 < len(data) < 600 * 128 * 4 + 600 * 80


def test_native_codec_fills_an_empty_id_from_the_map_key() -> None:
    desc = RingDesc._trusted({"k": InstanceDesc(addr="x")})  # id "" under key "k"
    back = decode_ring(encode_ring(desc))
    assert back["k"].id == "k"


def test_native_decoded_instances_keep_their_own_versions_dict() -> None:
    back = decode_ring(encode_ring(RingDesc({"a": InstanceDesc(id="a"), "b": InstanceDesc(id="b")})))
    back["a"].versions[1] = 1
    assert back["b"].versions == {}


def test_model_to_bytes_and_from_bytes_use_the_native_codec() -> None:
    desc = small_ring()
    assert desc.to_bytes() == encode_ring(desc)
    assert RingDesc.from_bytes(desc.to_bytes()) == desc


# -- tokens -------------------------------------------------------------------------------------
def test_native_decoded_tokens_are_read_only_zero_copy_uint32_views() -> None:
    back = decode_ring(encode_ring(big_ring(20)))
    for inst in back.instances.values():
        t = inst.tokens
        assert t.dtype == np.uint32
        assert not t.flags.writeable
        assert isinstance(t.base, bytes)  # a view of the msgpack bin, not a copy
        assert len(t.base) == 4 * len(t)  # of this instance's bytes only
        assert bool(np.all(t[1:] > t[:-1]))


def test_native_tokens_are_little_endian_uint32_bytes_in_the_envelope() -> None:
    items = envelope(RingDesc({"a": InstanceDesc(id="a", tokens=[1, 0x01020304])}))
    assert items[10] == [b"\x01\x00\x00\x00\x04\x03\x02\x01"]


def test_native_decode_normalises_unsorted_or_duplicate_tokens() -> None:
    items = envelope(RingDesc({"a": InstanceDesc(id="a", tokens=[1]), "b": InstanceDesc(id="b", tokens=[2])}))
    items[10][0] = np.array([9, 3, 9, 1], dtype="<u4").tobytes()
    back = decode_ring(pack(items))
    assert back["a"].tokens.tolist() == [1, 3, 9]
    assert not back["a"].tokens.flags.writeable
    assert back["b"].tokens.tolist() == [2]


@settings(max_examples=200)
@given(st.lists(st.lists(st.integers(0, 50), max_size=6), min_size=1, max_size=6))
def test_native_decode_normalises_each_instance_separately(token_lists: list[list[int]]) -> None:
    """The whole-ring order check must mask the seams between instances, including empty ones."""
    ids = [f"i{n}" for n in range(len(token_lists))]
    items = envelope(RingDesc({i: InstanceDesc(id=i) for i in ids}))
    items[10] = [np.array(t, dtype="<u4").tobytes() for t in token_lists]
    back = decode_ring(pack(items))
    for i, t in zip(ids, token_lists, strict=True):
        assert back[i].tokens.tolist() == sorted(set(t))


# -- the envelope -------------------------------------------------------------------------------
def test_native_encoding_starts_with_the_magic_and_format_version() -> None:
    items = envelope(small_ring())
    assert items[0] == MAGIC == "pyro-ring"
    assert items[1] == FORMAT_VERSION == 1
    assert len(items) == 12


def test_native_decode_rejects_another_format_version() -> None:
    items = envelope(small_ring())
    items[1] = 2
    with pytest.raises(CodecError, match="format version 2"):
        decode_ring(pack(items))


@pytest.mark.parametrize(
    "payload",
    [
        ["pyro-rinG", 1],
        [b"pyro-ring", 1],
        "pyro-ring",
        {"pyro-ring": 1},
        [],
        None,
        42,
    ],
)
def test_native_decode_rejects_a_missing_or_wrong_envelope(payload: Any) -> None:
    with pytest.raises(CodecError, match="envelope"):
        decode_ring(msgpack.packb(payload))


def test_native_decode_rejects_a_wrong_number_of_envelope_items() -> None:
    items = envelope(small_ring())
    with pytest.raises(CodecError, match="12 items"):
        decode_ring(pack([*items, 1]))
    with pytest.raises(CodecError, match="12 items"):
        decode_ring(pack(items[:-1]))


def test_native_decode_rejects_trailing_garbage() -> None:
    with pytest.raises(CodecError, match="ExtraData"):
        decode_ring(encode_ring(small_ring()) + b"\x00")


def test_native_decode_rejects_every_truncation_of_a_small_encoding() -> None:
    data = encode_ring(small_ring())
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode_ring(data[:n])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"\xdd\xff\xff\xff\xff",  # array of 2**32 - 1 items, none present
        b"\xdb\xff\xff\xff\xff",  # str of 4 GiB, absent
        b"\x91" * 100_000,  # deeply nested arrays
        b"\xd6\xff\x00\x00\x00\x00",  # a msgpack timestamp extension
    ],
)
def test_native_decode_rejects_malformed_msgpack_quickly(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_ring(data)


@pytest.mark.parametrize("data", ["text", 12, None, [b"x"]])
def test_native_decode_rejects_what_is_not_bytes(data: Any) -> None:
    with pytest.raises(CodecError, match="expects bytes"):
        decode_ring(data)


def test_native_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode_ring(small_ring())
    assert decode_ring(bytearray(data)) == small_ring()
    assert decode_ring(memoryview(data)) == small_ring()


# -- wrong field types and values ---------------------------------------------------------------
def _tampered(index: int, value: Any, which: int | None = None) -> bytes:
    items = envelope(small_ring())
    if which is None:
        items[index] = value
    else:
        items[index][which] = value
    return pack(items)


@pytest.mark.parametrize(
    ("index", "which", "value", "match"),
    [
        (2, 0, 5, "id must be a string"),
        (2, 1, b"b", "id must be a string"),
        (3, 2, None, "addr must be a string"),
        (4, 0, ["z"], "zone must be a string"),
        (2, None, "abc", "id column is not an array"),
        (3, None, ["x"], "addr column must be an array of 3"),
        (10, None, [], "tokens column must be an array of 3"),
        (11, None, {}, "versions column must be an array of 3"),
        (5, None, b"\x00" * 23, "timestamp must be 3 little-endian int64"),
        (5, None, [1, 2, 3], "timestamp must be 3 little-endian int64"),
        (7, None, "x" * 24, "registered_timestamp must be 3"),
        (9, None, b"", "read_only_updated_timestamp must be 3"),
        (6, None, b"\x00\x01", "state must be 3 bytes"),
        (6, None, b"\x00\x05\x01", "unknown instance state 5"),
        (6, None, b"\x00\x01\xff", "unknown instance state 255"),
        (8, None, b"\x00\x02\x00", "read_only must be 0 or 1, got 2"),
        (8, None, [True, False, True], "read_only must be 3 bytes"),
        (10, 1, b"\x01\x00\x00", "multiple of 4"),
        (10, 2, b"\x01\x00\x00\x00\x02", "multiple of 4"),
        (10, 0, "tokens", "tokens must be binary"),
        (10, 1, [1, 2], "tokens must be binary"),
        (11, 0, [], "versions must be a map"),
        (11, 1, {-1: 1}, "versions must map uint64 to uint64"),
        (11, 1, {1: -1}, "versions must map uint64 to uint64"),
        (11, 1, {"1": 1}, "versions must map uint64 to uint64"),
        (11, 1, {1: 1.5}, "versions must map uint64 to uint64"),
        (11, 1, {1: True}, "versions must map uint64 to uint64"),
        (2, 1, "a", "duplicate instance id 'a'"),
    ],
)
def test_native_decode_rejects_wrong_field_types_and_values(
    index: int, which: int | None, value: Any, match: str
) -> None:
    with pytest.raises(CodecError, match=match):
        decode_ring(_tampered(index, value, which))


def test_native_decode_rejects_columns_in_an_empty_ring() -> None:
    items = envelope(RingDesc())
    items[5] = b"\x00" * 8
    with pytest.raises(CodecError, match="empty ring"):
        decode_ring(pack(items))


# -- fuzzing: only CodecError, never anything else ----------------------------------------------
def _decode_or_codec_error(data: bytes) -> None:
    try:
        back = decode_ring(data)
    except CodecError:
        return
    assert isinstance(back, RingDesc)
    assert_well_formed(back)  # whatever decodes is a well-formed description


@settings(max_examples=500)
@given(st.data())
def test_native_decode_of_random_mutations_raises_only_codec_error(data: st.DataObject) -> None:
    raw = bytearray(encode_ring(small_ring()))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif len(raw) > 1:
            del raw[pos]
    _decode_or_codec_error(bytes(raw))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_native_decode_of_random_bytes_raises_only_codec_error(data: bytes) -> None:
    _decode_or_codec_error(data)


@settings(max_examples=200)
@given(st.binary(max_size=60))
def test_native_decode_of_random_bytes_after_a_valid_header_raises_only_codec_error(tail: bytes) -> None:
    header = msgpack.packb(MAGIC) + msgpack.packb(FORMAT_VERSION)
    for prefix in (b"\x9c" + header, b"\xdc\x00\x0c" + header):
        _decode_or_codec_error(prefix + tail)


# -- encoding errors ----------------------------------------------------------------------------
def test_native_encode_rejects_an_id_that_differs_from_its_key() -> None:
    desc = RingDesc._trusted({"k": InstanceDesc(id="other")})
    with pytest.raises(CodecError, match="stored under 'k' has id 'other'"):
        encode_ring(desc)


@pytest.mark.parametrize("versions", [{-1: 1}, {1: 2**64}, {"a": 1}])
def test_native_encode_rejects_versions_outside_uint64(versions: dict[Any, Any]) -> None:
    with pytest.raises(CodecError, match="uint64"):
        encode_ring(RingDesc({"a": _with_versions(versions)}))


def test_native_encode_rejects_what_is_not_a_ring() -> None:
    with pytest.raises(CodecError, match="expects a RingDesc"):
        encode_ring({"a": InstanceDesc(id="a")})  # type: ignore[arg-type]


def test_native_codec_module_declares_its_layout() -> None:
    assert codec.MAGIC == "pyro-ring"
    assert codec.FORMAT_VERSION == 1


def _with_versions(versions: dict[Any, Any]) -> InstanceDesc:
    """An instance whose versions skipped the constructor's check (as a mutated object could):
    the encoder must still refuse them."""
    inst = InstanceDesc(id="a")
    inst.versions = versions
    return inst
