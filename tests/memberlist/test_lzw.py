# Tests of memberlist's LZW (pyro_core._lzw and its pure twin pyro_core._pure.lzw).
# Owns: round trips, the stream rules of Go's compress/lzw (LSB, literal width 8) checked on code
# sequences built by hand, rejection of corrupt / truncated / oversized input, compiled-vs-pure
# equivalence, and byte-for-byte interop with Go's own package through tests/interop/lzw (built
# here with the Go toolchain; a missing toolchain fails the interop tests, it does not skip them).
from __future__ import annotations

import contextlib
import itertools
import os
import random
import struct
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import pytest
from gobuild import build_go_program
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CLEAR, EOF = 256, 257
TABLE_FULL = 4095  # the writer emits a clear instead of assigning this code
CODES_PER_TABLE = TABLE_FULL - EOF  # 3838 codes go out between two clears


# -- code streams by hand --------------------------------------------------------------------------
def pack_codes(codes: list[int]) -> bytes:
    """Pack codes LSB-first at the width Go's reader expects for each (no EOF added)."""
    out = bytearray()
    bits = nbits = 0
    width, hi, overflow = 9, EOF, 512
    for code in codes:
        assert code < 1 << width, f"code {code} does not fit {width} bits"
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
        if code == CLEAR:
            width, hi, overflow = 9, EOF, 512
        elif code != EOF:
            hi += 1
            if hi >= overflow:
                if width == 12:
                    hi -= 1
                else:
                    width += 1
                    overflow <<= 1
    if nbits:
        out.append(bits & 0xFF)
    return bytes(out)


def unpack_codes(stream: bytes) -> list[int]:
    """The code sequence of a well-formed stream, up to and including EOF."""
    codes: list[int] = []
    bits = nbits = pos = 0
    width, hi, overflow = 9, EOF, 512
    while True:
        while nbits < width:
            bits |= stream[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        codes.append(code)
        if code == EOF:
            return codes
        if code == CLEAR:
            width, hi, overflow = 9, EOF, 512
            continue
        hi += 1
        if hi >= overflow:
            if width == 12:
                hi -= 1
            else:
                width += 1
                overflow <<= 1


def zero_run_codes(repeats_of_full_entry: int) -> list[int]:
    """A run of zero bytes coded without clears: 0, 258, 259, ... 4095 (each entry one byte longer
    than the last), then code 4095 again and again from the full table."""
    return [CLEAR, 0, *range(EOF + 1, TABLE_FULL + 1), *[TABLE_FULL] * repeats_of_full_entry]


FULL_ENTRY_LEN = TABLE_FULL - CLEAR  # code c of the run stands for c - 256 zeros: 4095 for 3839
ZERO_RUN_TABLE_BYTES = sum(range(1, FULL_ENTRY_LEN + 1))  # 0, then codes 258..4095: 1 + 2 + ... + 3839


# -- workloads ---------------------------------------------------------------------------------------
def low_entropy(n: int, seed: int, alphabet: bytes = b"abc") -> bytes:
    return bytes(random.Random(seed).choices(alphabet, k=n))


def push_pull_payload(n_nodes: int = 100) -> bytes:
    """A memberlist-shaped push/pull: [6] + header + node states as msgpack maps (raw strings)."""
    header = {"Nodes": n_nodes, "UserStateLen": 0, "Join": False}
    parts = [b"\x06", msgpack.packb(header, use_bin_type=False)]
    for i in range(n_nodes):
        state = {
            "Name": f"ingester-{i:03d}".encode(),
            "Addr": bytes((10, 0, i // 250, i % 250 + 1)),
            "Port": 7946,
            "Meta": b"",
            "Incarnation": 1000 + i,
            "State": 0,
            "Vsn": bytes((1, 5, 2, 0, 0, 0)),
        }
        parts.append(msgpack.packb(state, use_bin_type=False))
    return b"".join(parts)


def impl_name(impl: Any) -> str:
    return str(impl.name)


# -- known vectors and stream rules -------------------------------------------------------------------
def test_empty_input_is_a_clear_then_eof_in_three_bytes(impl: Any) -> None:
    assert impl.lzw.compress(b"") == b"\x00\x03\x02" == pack_codes([CLEAR, EOF])
    assert impl.lzw.decompress(b"\x00\x03\x02") == b""


def test_one_byte_is_clear_literal_eof(impl: Any) -> None:
    assert impl.lzw.compress(b"a") == pack_codes([CLEAR, ord("a"), EOF])


def test_repeat_of_the_code_being_defined_expands_to_previous_plus_its_first_byte(impl: Any) -> None:
    # "a" then code 258 while 258 is being defined: "a" + "a"; then 259 likewise: "aa" + "a".
    assert impl.lzw.decompress(pack_codes([CLEAR, 97, 258, 259, EOF])) == b"a" + b"aa" + b"aaa"
    assert impl.lzw.compress(b"aaaaaa") == pack_codes([CLEAR, 97, 258, 259, EOF])


def test_stream_without_leading_clear_is_accepted(impl: Any) -> None:
    assert impl.lzw.decompress(pack_codes([104, 105, 258, EOF])) == b"hihi"


def test_clear_mid_stream_forgets_the_table(impl: Any) -> None:
    assert impl.lzw.decompress(pack_codes([CLEAR, 97, 98, CLEAR, 99, 258, EOF])) == b"ab" + b"c" + b"cc"
    with pytest.raises(ValueError, match="not in the code table"):
        impl.lzw.decompress(pack_codes([CLEAR, 97, 98, CLEAR, 99, 259, EOF]))


def test_bytes_after_eof_are_ignored(impl: Any) -> None:
    stream = impl.lzw.compress(b"memberlist")
    assert impl.lzw.decompress(stream + b"\xff\x00garbage") == b"memberlist"


def test_code_width_grows_after_the_code_that_fills_it(impl: Any) -> None:
    # 255 literals after the clear take hi from 257 to 512: the 255th is still read at 9 bits and
    # the next one at 10 bits; a 10-bit code 511 (the last 9-bit table entry) follows.
    codes = [CLEAR, *[i % 256 for i in range(255)], 300, 511, EOF]
    data = bytes(i % 256 for i in range(255))
    expected = data + data[300 - 258 : 300 - 258 + 2] + data[511 - 258 : 511 - 258 + 2]
    assert impl.lzw.decompress(pack_codes(codes)) == expected


def test_writer_clears_every_3838_codes_and_starts_with_a_clear(impl: Any) -> None:
    codes = unpack_codes(impl.lzw.compress(os.urandom(3 * CODES_PER_TABLE * 2)))
    assert codes[0] == CLEAR and codes[-1] == EOF
    clears = [i for i, c in enumerate(codes) if c == CLEAR]
    assert len(clears) >= 3
    assert all(b - a == CODES_PER_TABLE + 1 for a, b in itertools.pairwise(clears))


def test_full_table_without_clear_keeps_decoding_its_entries(impl: Any) -> None:
    # Go's writer never does this, but Go's reader accepts it: at 4096 codes the table freezes.
    out = impl.lzw.decompress(pack_codes([*zero_run_codes(3), 0, 4000, EOF]))
    assert out == bytes(ZERO_RUN_TABLE_BYTES + 3 * FULL_ENTRY_LEN + 1 + (4000 - CLEAR))


# -- round trips -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\xff",
        bytes(range(256)),
        b"a" * 100_000,
        low_entropy(300_000, seed=1),  # fills the 4096-code table many times
        push_pull_payload(),
        os.urandom(2**20),
    ],
    ids=["empty", "zero", "ff", "all-bytes", "run", "low-entropy-300k", "push-pull", "random-1MiB"],
)
def test_round_trip(impl: Any, data: bytes) -> None:
    assert impl.lzw.decompress(impl.lzw.compress(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=20_000))
def test_round_trip_of_any_bytes(impl: Any, data: bytes) -> None:
    assert impl.lzw.decompress(impl.lzw.compress(data)) == data


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.integers(0, 2**32), st.integers(20_000, 120_000))
def test_round_trip_of_repetitive_data_over_several_tables(
    impl: Any, alphabet: bytes, seed: int, n: int
) -> None:
    data = low_entropy(n, seed, alphabet)
    stream = impl.lzw.compress(data)
    assert impl.lzw.decompress(stream) == data


def test_accepts_bytearray_and_memoryview(impl: Any) -> None:
    stream = impl.lzw.compress(bytearray(b"gossip gossip gossip"))
    assert impl.lzw.compress(memoryview(b"gossip gossip gossip")) == stream
    assert impl.lzw.decompress(bytearray(stream)) == b"gossip gossip gossip"
    assert impl.lzw.decompress(memoryview(stream)) == b"gossip gossip gossip"


@pytest.mark.parametrize("not_bytes", [None, "text", [1, 2, 3]], ids=["None", "str", "list"])
def test_rejects_objects_that_are_not_bytes_like(impl: Any, not_bytes: Any) -> None:
    with pytest.raises(TypeError):
        impl.lzw.compress(not_bytes)
    with pytest.raises(TypeError):
        impl.lzw.decompress(not_bytes)


# -- corrupt input ---------------------------------------------------------------------------------------
def test_every_strict_prefix_of_a_valid_stream_is_rejected_as_truncated(impl: Any) -> None:
    stream = impl.lzw.compress(low_entropy(6_000, seed=2, alphabet=b"abcdefgh"))
    for end in range(len(stream)):
        with pytest.raises(ValueError, match="without an EOF code"):
            impl.lzw.decompress(stream[:end])


def test_empty_input_is_truncated(impl: Any) -> None:
    with pytest.raises(ValueError, match="without an EOF code"):
        impl.lzw.decompress(b"")


@pytest.mark.parametrize(
    "codes",
    [
        [258],  # nothing defined yet
        [CLEAR, 258],  # right after a clear: nothing to repeat
        [CLEAR, 97, 259],  # one above the code being defined
        [CLEAR, 97, 98, 511],  # far beyond the table
        [CLEAR, *[97] * 300, 1023],  # 10-bit code beyond the table
    ],
    ids=["first", "after-clear", "hi+1", "far", "10-bit"],
)
def test_code_beyond_the_table_is_rejected(impl: Any, codes: list[int]) -> None:
    with pytest.raises(ValueError, match="not in the code table"):
        impl.lzw.decompress(pack_codes([*codes, EOF]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_000))
def test_random_bytes_decode_or_raise_value_error(impl: Any, data: bytes) -> None:
    try:
        impl.lzw.decompress(data)
    except ValueError as exc:
        assert "LZW" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=3_000), st.data())
def test_flipped_bits_decode_or_raise_value_error(impl: Any, payload: bytes, data: st.DataObject) -> None:
    stream = bytearray(impl.lzw.compress(payload))
    for _ in range(data.draw(st.integers(1, 4))):
        stream[data.draw(st.integers(0, len(stream) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with contextlib.suppress(ValueError):
        impl.lzw.decompress(bytes(stream))


# -- max_size ----------------------------------------------------------------------------------------------
def test_max_size_allows_exactly_the_limit(impl: Any) -> None:
    data = low_entropy(50_000, seed=3)
    stream = impl.lzw.compress(data)
    assert impl.lzw.decompress(stream, max_size=len(data)) == data
    with pytest.raises(ValueError, match="more than max_size"):
        impl.lzw.decompress(stream, max_size=len(data) - 1)
    assert impl.lzw.decompress(impl.lzw.compress(b""), max_size=0) == b""
    with pytest.raises(ValueError, match="more than max_size"):
        impl.lzw.decompress(impl.lzw.compress(b"x"), max_size=0)
    with pytest.raises(ValueError, match="max_size"):
        impl.lzw.decompress(stream, max_size=-1)


def test_decompression_bomb_stops_at_the_default_20_mib(impl: Any) -> None:
    # ~9 KB of codes that would expand to 23 MB: the full table's longest entry, repeated.
    repeats = (21 * 2**20 - ZERO_RUN_TABLE_BYTES) // FULL_ENTRY_LEN + 1
    bomb = pack_codes([*zero_run_codes(repeats), EOF])
    assert len(bomb) < 16_000
    with pytest.raises(ValueError, match=f"more than max_size \\({20 * 2**20} bytes\\)"):
        impl.lzw.decompress(bomb)
    with pytest.raises(ValueError, match="more than max_size"):
        impl.lzw.decompress(bomb, max_size=2**20)
    assert len(impl.lzw.decompress(bomb, max_size=30 * 2**20)) > 21 * 2**20


# -- compiled vs pure --------------------------------------------------------------------------------------
def _outcome(module: Any, data: bytes, max_size: int = 20 * 2**20) -> tuple[str, bytes | str]:
    try:
        return "ok", module.decompress(data, max_size)
    except ValueError as exc:
        return "error", str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=30_000))
def test_compiled_and_pure_compress_identically(compiled: Any, pure: Any, data: bytes) -> None:
    assert compiled.lzw.compress(data) == pure.lzw.compress(data)


@settings(max_examples=10, deadline=None)
@given(st.binary(min_size=1, max_size=4), st.integers(0, 2**32), st.integers(1, 200_000))
def test_compiled_and_pure_compress_repetitive_data_identically(
    compiled: Any, pure: Any, alphabet: bytes, seed: int, n: int
) -> None:
    data = low_entropy(n, seed, alphabet)
    assert compiled.lzw.compress(data) == pure.lzw.compress(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3_000), st.integers(0, 5_000))
def test_compiled_and_pure_decode_any_bytes_identically(
    compiled: Any, pure: Any, data: bytes, limit: int
) -> None:
    # Same output, or the same error message (the message names the code and the input byte).
    assert _outcome(compiled.lzw, data, limit) == _outcome(pure.lzw, data, limit)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4095), max_size=3_000), st.booleans())
def test_compiled_and_pure_decode_any_code_sequence_identically(
    compiled: Any, pure: Any, codes: list[int], with_clear: bool
) -> None:
    # Codes are masked to the width the reader will use, so the streams reach deep table states.
    stream = pack_codes_masked(([CLEAR] if with_clear else []) + codes + [EOF])
    assert _outcome(compiled.lzw, stream) == _outcome(pure.lzw, stream)


def pack_codes_masked(codes: list[int]) -> bytes:
    """pack_codes, with each code reduced to the width in force (an arbitrary but valid bit string)."""
    fitted: list[int] = []
    width, hi, overflow = 9, EOF, 512
    for raw in codes:
        code = raw & ((1 << width) - 1)
        fitted.append(code)
        if code == CLEAR:
            width, hi, overflow = 9, EOF, 512
        elif code == EOF:
            break
        else:
            hi += 1
            if hi >= overflow:
                if width == 12:
                    hi -= 1
                else:
                    width += 1
                    overflow <<= 1
    return pack_codes(fitted)


# -- interop with Go's compress/lzw ------------------------------------------------------------------------
GO_PEER_DIR = Path(__file__).resolve().parents[1] / "interop" / "lzw"


@pytest.fixture(scope="session")
def go_lzw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tests/interop/lzw (standard library only, GOPATH mode, no network)."""
    return build_go_program(tmp_path_factory, "lzw", "golang-go")


def run_go(binary: Path, mode: str, inputs: list[bytes]) -> list[tuple[bool, bytes]]:
    """One Go process for a whole batch: (ok, bytes or Go's error text) per input."""
    request = b"".join(struct.pack(">I", len(x)) + x for x in inputs)
    result = subprocess.run([str(binary), mode], input=request, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    out, pos, answers = result.stdout, 0, []
    while pos < len(out):
        status, length = struct.unpack_from(">BI", out, pos)
        pos += 5
        answers.append((status == 0, out[pos : pos + length]))
        pos += length
    assert len(answers) == len(inputs)
    return answers


def interop_inputs() -> list[bytes]:
    """Random and structured payloads, including every length across the first table reset."""
    rng = random.Random(20240501)
    inputs = [b"", b"\x00", b"\xff", bytes(range(256)), bytes(range(256)) * 40, b"a" * 70_000]
    inputs += [rng.randbytes(rng.randrange(0, 5_000)) for _ in range(100)]
    inputs += [low_entropy(rng.randrange(1, 60_000), seed, b"ab\x00\xff") for seed in range(40)]
    inputs += [push_pull_payload(n) for n in (1, 5, 100, 500)]
    inputs.append(rng.randbytes(2**20))
    inputs.append(low_entropy(2**20, seed=9, alphabet=b"0123456789abcdef\n"))
    # Random bytes: one code per byte or so, so the table fills around 3838 bytes; walk every length
    # through that point so the reset also lands on the final code (the writer's Close path).
    edge = rng.randbytes(4_200)
    inputs += [edge[:n] for n in range(3_780, 4_200)]
    return inputs


def test_go_edge_window_covers_a_reset_on_the_final_code(impl: Any) -> None:
    # Guards interop_inputs: some length in the window makes the pending code at Close the one
    # that fills the table, so the stream ends clear (12 bits) + EOF (9 bits); longer ones reset
    # in the middle.
    at_close = in_middle = False
    for data in interop_inputs()[-420:]:
        codes = unpack_codes(impl.lzw.compress(data))
        at_close |= codes[-2] == CLEAR
        in_middle |= CLEAR in codes[1:-2]
    assert at_close and in_middle


def test_compress_matches_go_byte_for_byte(go_lzw: Path, impl: Any) -> None:
    inputs = interop_inputs()
    for data, (ok, go_stream) in zip(inputs, run_go(go_lzw, "compress", inputs), strict=True):
        assert ok, go_stream
        assert impl.lzw.compress(data) == go_stream, f"{impl_name(impl)}: {len(data)}-byte input differs"


def test_go_decompresses_what_we_compress(go_lzw: Path, impl: Any) -> None:
    inputs = interop_inputs()
    streams = [impl.lzw.compress(data) for data in inputs]
    for data, (ok, out) in zip(inputs, run_go(go_lzw, "decompress", streams), strict=True):
        assert ok, out
        assert out == data


def test_we_decompress_what_go_compresses(go_lzw: Path, impl: Any) -> None:
    inputs = interop_inputs()
    for data, (ok, stream) in zip(inputs, run_go(go_lzw, "compress", inputs), strict=True):
        assert ok
        assert impl.lzw.decompress(stream) == data


GO_ERRORS = {"unexpected EOF": "without an EOF code", "lzw: invalid code": "not in the code table"}


def assert_same_verdict_as_go(go_lzw: Path, impl: Any, streams: list[bytes]) -> None:
    for stream, (ok, go_out) in zip(streams, run_go(go_lzw, "decompress", streams), strict=True):
        verdict = _outcome(impl.lzw, stream, max_size=2**40)
        if ok:
            assert verdict == ("ok", go_out), stream.hex()
        else:
            assert verdict[0] == "error", f"Go said {go_out!r}, we decoded {stream.hex()}"
            assert GO_ERRORS[go_out.decode()] in str(verdict[1])


def test_corrupt_streams_get_the_same_verdict_as_go(go_lzw: Path, impl: Any) -> None:
    rng = random.Random(7)
    valid = impl.lzw.compress(low_entropy(3_000, seed=4, alphabet=b"abcdefghij"))
    streams = [valid[:end] for end in range(len(valid) + 1)]  # every prefix, and the whole
    streams += [rng.randbytes(rng.randrange(0, 400)) for _ in range(400)]  # random bytes
    for _ in range(300):  # flipped bits
        s = bytearray(valid)
        s[rng.randrange(len(s))] ^= 1 << rng.randrange(8)
        streams.append(bytes(s))
    for _ in range(200):  # arbitrary code sequences, deep into the table
        codes = [rng.randrange(4096) for _ in range(rng.randrange(1, 5_000))]
        streams.append(pack_codes_masked([CLEAR, *codes, EOF]))
    streams.append(pack_codes([*zero_run_codes(5), 0, 4095, 300, EOF]))  # full table, no clear
    streams.append(pack_codes([*zero_run_codes(2), CLEAR, 98, 258, EOF]))  # full table, then clear
    streams.append(valid + b"\x00\xff")  # trailing bytes after EOF
    assert_same_verdict_as_go(go_lzw, impl, streams)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.binary(max_size=6_000), min_size=1, max_size=30))
def test_go_interop_on_generated_batches(go_lzw: Path, impl: Any, batch: list[bytes]) -> None:
    go_streams = run_go(go_lzw, "compress", batch)
    ours = [impl.lzw.compress(data) for data in batch]
    assert ours == [stream for _, stream in go_streams]
    assert [(True, data) for data in batch] == run_go(go_lzw, "decompress", ours)
    assert_same_verdict_as_go(go_lzw, impl, batch)  # the raw inputs, as if they were streams
