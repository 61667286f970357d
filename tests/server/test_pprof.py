from __future__ import annotations

import gzip
import json
import random

import pytest
from google.protobuf import unknown_fields

from pyro_core.server import pprof
from pyro_core.server.pprof import (
    PbProfile,
    ProfileError,
    ProfileTooLargeError,
    SampleTypeConfig,
    StackSample,
    decode_profile,
    encode_multipart,
    encode_profile,
    parse_multipart,
    parse_sample_type_config,
    profile_to_series,
)

NS = 10_000_000  # one 100 Hz tick in nanoseconds


def _by_name_tags(series: list[pprof.Series]) -> dict[tuple[str, tuple[tuple[str, str], ...]], pprof.Series]:
    out = {}
    for s in series:
        key = (s.name, tuple(sorted(s.tags.items())))
        assert key not in out
        out[key] = s
    return out


# -- the schema: field numbers checked on hand-built wire bytes --------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _ld(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(payload)) + payload


def _vi(field: int, value: int) -> bytes:
    return _tag(field, 0) + _varint(value)


def test_field_numbers_against_hand_written_wire_format() -> None:
    strings = [b"", b"samples", b"count", b"cpu", b"nanoseconds", b"main", b"main.go", b"k", b"v", b"libc"]
    data = b"".join(
        [
            _ld(1, _vi(1, 1) + _vi(2, 2)),  # sample_type {type, unit}
            # sample: packed location_id (1), packed value (2), label (3) {key, str, num, num_unit}
            _ld(2, _ld(1, _varint(2) + _varint(1)) + _ld(2, _varint(7)) + _ld(3, _vi(1, 7) + _vi(2, 8))),
            _ld(2, _vi(1, 1) + _vi(2, 3) + _ld(3, _vi(1, 7) + _vi(3, 42) + _vi(4, 2))),  # unpacked too
            _ld(3, _vi(1, 1) + _vi(2, 0x400000) + _vi(3, 0x500000) + _vi(4, 0) + _vi(5, 9) + _vi(6, 0)
                + _vi(7, 1) + _vi(8, 1) + _vi(9, 1) + _vi(10, 0)),  # mapping
            _ld(4, _vi(1, 1) + _vi(2, 1) + _vi(3, 0x401000) + _ld(4, _vi(1, 1) + _vi(2, 12) + _vi(3, 3)) + _vi(5, 0)),
            _ld(4, _vi(1, 2) + _vi(3, 0x402000)),  # a location without lines
            _ld(5, _vi(1, 1) + _vi(2, 5) + _vi(3, 5) + _vi(4, 6) + _vi(5, 10)),  # function
            *[_ld(6, s) for s in strings],
            _vi(7, 0), _vi(8, 0), _vi(9, 1_700_000_000_000_000_000), _vi(10, 10_000_000_000),
            _ld(11, _vi(1, 3) + _vi(2, 4)), _vi(12, NS), _vi(13, 5), _vi(14, 1), _ld(15, b"https://x"),
        ]
    )  # fmt: skip
    p = decode_profile(data)
    for m in [p, *p.sample, *p.location, *p.function, *p.mapping, p.period_type, *p.sample_type]:
        assert len(unknown_fields.UnknownFieldSet(m)) == 0
    assert [(v.type, v.unit) for v in p.sample_type] == [(1, 2)]
    assert list(p.sample[0].location_id) == [2, 1] and list(p.sample[0].value) == [7]
    assert (p.sample[0].label[0].key, p.sample[0].label[0].str) == (7, 8)
    assert (p.sample[1].label[0].num, p.sample[1].label[0].num_unit) == (42, 2)
    m = p.mapping[0]
    assert (m.id, m.memory_start, m.memory_limit, m.filename, m.has_functions, m.has_inline_frames) == (
        1, 0x400000, 0x500000, 9, True, False
    )  # fmt: skip
    loc = p.location[0]
    assert (loc.id, loc.mapping_id, loc.address, loc.line[0].function_id, loc.line[0].line, loc.line[0].column) == (
        1, 1, 0x401000, 1, 12, 3
    )  # fmt: skip
    f = p.function[0]
    assert (f.id, f.name, f.system_name, f.filename, f.start_line) == (1, 5, 5, 6, 10)
    assert list(p.string_table) == strings
    assert (p.time_nanos, p.duration_nanos, p.period, list(p.comment), p.default_sample_type) == (
        1_700_000_000_000_000_000, 10_000_000_000, NS, [5], 1
    )  # fmt: skip
    assert (p.period_type.type, p.period_type.unit, p.doc_url) == (3, 4, "https://x")
    series = profile_to_series(p, app_name="app", base_tags={})
    got = {(s.name, tuple(s.tags.items())): s.stacks for s in series}
    # location 2 has no lines: named by its address; the sample with only a numeric label has no tag
    assert got == {("app.cpu", (("k", "v"),)): {b"main;0x402000": 7}, ("app.cpu", ()): {b"main": 3}}
    assert series[0].sample_rate == 100 and series[0].units == "samples"


# -- encode/decode round trips --------------------------------------------------------------------
def test_cpu_profile_round_trip_gzip_and_raw() -> None:
    samples = [
        StackSample(["main", "work", "leaf"], [3 * NS]),
        StackSample(["main", "work", "leaf"], [2 * NS]),
        StackSample(["main", "idle"], [1 * NS]),
        StackSample(["main"], [0]),  # zero: dropped
    ]
    raw = encode_profile(samples)
    gz = encode_profile(samples, compress=True)
    assert gz[:2] == b"\x1f\x8b" and raw[:2] != b"\x1f\x8b"
    for data in (raw, gz):
        p = decode_profile(data)
        assert p.period == NS
        [s] = profile_to_series(p, app_name="myapp", base_tags={"env": "prod"})
        assert s.name == "myapp.cpu"
        assert s.tags == {"env": "prod"}
        assert s.units == "samples" and s.aggregation == "sum" and s.sample_rate == 100
        # cpu nanoseconds with a nanosecond period become tick counts
        assert s.stacks == {b"main;work;leaf": 5, b"main;idle": 1}


def test_go_style_cpu_profile_samples_become_cpu_and_duplicate_name_skipped() -> None:
    data = encode_profile(
        [StackSample(["a", "b"], [4, 4 * NS]), StackSample(["a"], [1, NS])],
        sample_types=[("samples", "count"), ("cpu", "nanoseconds")],
    )
    series = profile_to_series(decode_profile(data), app_name="go", base_tags={})
    assert len(series) == 1  # "cpu" would be go.cpu again: the first type wins
    assert series[0].name == "go.cpu" and series[0].stacks == {b"a;b": 4, b"a": 1}
    assert series[0].sample_rate == 100


def test_several_sample_types_and_labels_split_series() -> None:
    types = [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    samples = [
        StackSample(["main", "alloc"], [1, 100, 1, 10], {"region": "eu"}),
        StackSample(["main", "alloc"], [2, 200, 0, 0], {"region": "us", "bytes": 512}),
        StackSample(["main", "grow"], [5, 500, 5, 50], {}),
        StackSample(["main", "alloc"], [1, 50, 1, 5], {"region": "eu"}),
    ]
    data = encode_profile(samples, sample_types=types, period_type=("space", "bytes"), period=524288)
    got = _by_name_tags(profile_to_series(decode_profile(data), app_name="svc", base_tags={"host": "h1"}))
    assert set(got) == {
        (f"svc.{t}", tags)
        for t, _ in types
        for tags in (
            (("host", "h1"), ("region", "eu")),
            (("host", "h1"), ("region", "us")),
            (("host", "h1"),),
        )
    } - {
        ("svc.inuse_objects", (("host", "h1"), ("region", "us"))),
        ("svc.inuse_space", (("host", "h1"), ("region", "us"))),
    }
    eu = (("host", "h1"), ("region", "eu"))
    assert got["svc.alloc_space", eu].stacks == {b"main;alloc": 150}
    assert got["svc.alloc_space", eu].units == "bytes"
    assert got["svc.alloc_objects", (("host", "h1"), ("region", "us"))].stacks == {b"main;alloc": 2}
    assert got["svc.alloc_objects", (("host", "h1"), ("region", "us"))].units == "objects"
    assert got["svc.inuse_space", (("host", "h1"),)].stacks == {b"main;grow": 50}
    assert got["svc.inuse_space", (("host", "h1"),)].aggregation == "average"
    assert got["svc.alloc_space", eu].aggregation == "sum"
    assert all(s.sample_rate is None for s in got.values())  # not sampled types


def test_labels_override_base_tags_and_unusable_labels_are_dropped() -> None:
    samples = [
        StackSample(["f"], [NS], {"env": "staging", "__name__": "x", "bad-key": "v", "k": "a,b", "ok": "1"}),
    ]
    [s] = profile_to_series(decode_profile(encode_profile(samples)), app_name="a", base_tags={"env": "prod"})
    assert s.tags == {"env": "staging", "ok": "1"}


def test_inline_frames_are_expanded_root_to_leaf() -> None:
    # location (outer, inlined_mid, inlined_leaf): pprof stores the lines inner-first
    data = encode_profile([StackSample(["main", ("outer", "mid", "inner"), "leaf"], [NS])])
    p = decode_profile(data)
    inlined = next(loc for loc in p.location if len(loc.line) == 3)
    strings = [s.decode() for s in p.string_table]
    names = {f.id: strings[f.name] for f in p.function}
    assert [names[ln.function_id] for ln in inlined.line] == ["inner", "mid", "outer"]
    [s] = profile_to_series(p, app_name="a", base_tags={})
    assert s.stacks == {b"main;outer;mid;inner;leaf": 1}


def test_non_utf8_symbol_names_are_replaced_not_rejected() -> None:
    p = PbProfile()
    p.string_table.extend([b"", b"cpu", b"nanoseconds", b"caf\xe9"])
    p.sample_type.add(type=1, unit=2)
    p.period_type.type, p.period_type.unit, p.period = 1, 2, NS
    p.function.add(id=1, name=3)
    p.location.add(id=1).line.add(function_id=1)
    p.sample.add(location_id=[1], value=[NS])
    [s] = profile_to_series(decode_profile(p.SerializeToString()), app_name="a", base_tags={})
    assert s.stacks == {"caf\ufffd".encode(): 1}


# -- prev_profile, sample_type_config -------------------------------------------------------------
def test_prev_profile_diff_for_cumulative_types() -> None:
    types = [("alloc_objects", "count"), ("inuse_objects", "count")]
    prev = encode_profile(
        [StackSample(["m", "a"], [10, 3]), StackSample(["m", "b"], [5, 5]), StackSample(["m", "c"], [7, 7])],
        sample_types=types,
    )
    cur = encode_profile(
        [StackSample(["m", "a"], [25, 4]), StackSample(["m", "b"], [5, 6]), StackSample(["m", "c"], [3, 1])],
        sample_types=types,
    )
    got = {
        s.name: s.stacks
        for s in profile_to_series(
            decode_profile(cur), app_name="x", base_tags={}, prev_profile=decode_profile(prev)
        )
    }
    # alloc_objects is cumulative: diffed, equal → dropped, decreased → clamped to 0 → dropped
    assert got["x.alloc_objects"] == {b"m;a": 15}
    # inuse_objects is not: as is
    assert got["x.inuse_objects"] == {b"m;a": 4, b"m;b": 6, b"m;c": 1}
    without_prev = {
        s.name: s.stacks for s in profile_to_series(decode_profile(cur), app_name="x", base_tags={})
    }
    assert without_prev["x.alloc_objects"] == {b"m;a": 25, b"m;b": 5, b"m;c": 3}


def test_prev_profile_diff_is_per_label_set() -> None:
    types = [("alloc_space", "bytes")]
    prev = encode_profile([StackSample(["m"], [100], {"t": "1"})], sample_types=types)
    cur = encode_profile(
        [StackSample(["m"], [150], {"t": "1"}), StackSample(["m"], [40], {"t": "2"})], sample_types=types
    )
    got = _by_name_tags(
        profile_to_series(decode_profile(cur), app_name="x", base_tags={}, prev_profile=decode_profile(prev))
    )
    assert got["x.alloc_space", (("t", "1"),)].stacks == {b"m": 50}
    assert got["x.alloc_space", (("t", "2"),)].stacks == {b"m": 40}


def test_sample_type_config_renames_and_sets_units() -> None:
    conf = parse_sample_type_config(
        json.dumps(
            {
                "my_alloc": {"units": "bytes", "display-name": "allocs", "cumulative": True},
                "my_live": {"units": "objects", "aggregation": "average"},
                "ticks": {"units": "samples", "sampled": True, "display-name": "cpu"},
            }
        ).encode()
    )
    assert conf["my_alloc"] == SampleTypeConfig(units="bytes", display_name="allocs", cumulative=True)
    assert conf["my_live"].aggregation == "average"
    types = [("my_alloc", "bytes"), ("my_live", "count"), ("ticks", "count"), ("other", "widgets")]
    cur = encode_profile([StackSample(["m"], [30, 2, 9, 1])], sample_types=types)
    prev = encode_profile([StackSample(["m"], [10, 1, 1, 1])], sample_types=types)
    got = {
        s.name: s
        for s in profile_to_series(
            decode_profile(cur),
            app_name="a",
            base_tags={},
            sample_type_config=conf,
            prev_profile=decode_profile(prev),
        )
    }
    assert set(got) == {"a.allocs", "a.my_live", "a.cpu", "a.other"}
    assert got["a.allocs"].stacks == {b"m": 20} and got["a.allocs"].units == "bytes"
    assert got["a.my_live"].stacks == {b"m": 2} and got["a.my_live"].aggregation == "average"
    assert got["a.my_live"].units == "objects"
    assert got["a.cpu"].stacks == {b"m": 9} and got["a.cpu"].sample_rate == 100  # count ≠ period unit: as is
    assert got["a.other"].units == "widgets" and got["a.other"].stacks == {b"m": 1}


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[1]",
        b'{"a": 1}',
        b'{"a": {"units": 3}}',
        b'{"a": {"cumulative": "yes"}}',
        b'{"a": {"display-name": "x y"}}',
    ],
)
def test_bad_sample_type_config(bad: bytes) -> None:
    with pytest.raises(ProfileError):
        parse_sample_type_config(bad)


def test_unknown_aggregation_falls_back_to_sum() -> None:
    assert parse_sample_type_config(b'{"a": {"aggregation": "max"}}')["a"].aggregation == "sum"


# -- multipart ------------------------------------------------------------------------------------
def test_multipart_round_trip_with_binary_fields() -> None:
    rng = random.Random(7)
    profile = encode_profile([StackSample(["a", "b"], [NS])], compress=True)
    nasty = bytes(rng.randrange(256) for _ in range(5000)) + b"\r\n--\r\n\n\r\r\n--bound"
    fields = {
        "profile": profile,
        "prev_profile": nasty,
        "sample_type_config": b'{"cpu": {"units": "samples"}}',
    }
    body, ctype = encode_multipart(fields, boundary="XyZ-boundary-0123")
    assert parse_multipart(body, ctype) == fields
    assert parse_multipart(body, ctype.replace("boundary=", 'boundary="') + '"') == fields


def test_multipart_as_curl_or_go_send_it() -> None:
    body = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="profile"; filename="profile.pprof"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b"\x00\x01\r\n\x02"
        b"\r\n--b\r\n"
        b'Content-Disposition: form-data; name="sample_type_config"\r\n\r\n'
        b"{}"
        b"\r\n--b--\r\n"
    )
    assert parse_multipart(body, "multipart/form-data; boundary=b") == {
        "profile": b"\x00\x01\r\n\x02",
        "sample_type_config": b"{}",
    }


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"--b\r\n\r\nx\r\n--b--\r\n", "multipart/form-data"),  # no boundary
        (b"--b\r\n\r\nx\r\n--b--\r\n", "application/json; boundary=b"),
        (b"garbage", "multipart/form-data; boundary=b"),
        (b"--b--\r\n", "multipart/form-data; boundary=b"),  # no part at all
        (
            b'--b\r\nContent-Disposition: form-data; name="profile"\r\n\r\nxx',
            "multipart/form-data; boundary=b",
        ),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nno name\r\n--b--\r\n", "multipart/form-data; boundary=b"),
    ],
)
def test_bad_multipart(body: bytes, ctype: str) -> None:
    with pytest.raises(ProfileError):
        parse_multipart(body, ctype)


def test_multipart_form_to_series() -> None:
    types = [("alloc_space", "bytes")]
    body, ctype = encode_multipart(
        {
            "profile": encode_profile([StackSample(["m"], [50])], sample_types=types, compress=True),
            "prev_profile": encode_profile([StackSample(["m"], [20])], sample_types=types, compress=True),
            "sample_type_config": b'{"alloc_space": {"units": "bytes", "display-name": "alloc", "cumulative": true}}',
        }
    )
    f = parse_multipart(body, ctype)
    [s] = profile_to_series(
        decode_profile(f["profile"]),
        app_name="app",
        base_tags={},
        sample_type_config=parse_sample_type_config(f["sample_type_config"]),
        prev_profile=decode_profile(f["prev_profile"]),
    )
    assert (s.name, s.stacks, s.units) == ("app.alloc", {b"m": 30}, "bytes")


# -- hostile input --------------------------------------------------------------------------------
def test_random_and_truncated_input_only_raises_profile_error() -> None:
    rng = random.Random(1234)
    good = encode_profile(
        [StackSample(["main", ("x", "y"), f"f{i}"], [i * NS], {"k": str(i % 3)}) for i in range(1, 30)],
        sample_types=[("cpu", "nanoseconds")],
    )
    good_gz = gzip.compress(good)
    inputs = [b"", b"\x1f", b"\x1f\x8b", good_gz + b"junk"]
    inputs += [good[:n] for n in range(0, len(good), 7)] + [good_gz[:n] for n in range(0, len(good_gz), 5)]
    inputs += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(500)]
    for _ in range(500):  # bit flips in a valid profile
        b = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        inputs.append(bytes(b))
    ok = 0
    for data in inputs:
        try:
            p = decode_profile(data)
        except ProfileError:
            continue
        profile_to_series(p, app_name="a", base_tags={})  # a decoded profile always converts
        ok += 1
    assert ok < len(inputs)


def test_inconsistent_profiles_are_rejected() -> None:
    def base() -> object:
        p = PbProfile()
        p.string_table.extend([b"", b"cpu", b"nanoseconds", b"f"])
        p.sample_type.add(type=1, unit=2)
        p.function.add(id=1, name=3)
        p.location.add(id=1).line.add(function_id=1)
        p.sample.add(location_id=[1], value=[1])
        return p

    breakers = [
        lambda p: p.sample.add(location_id=[9], value=[1]),
        lambda p: p.sample.add(location_id=[1], value=[1, 2]),
        lambda p: p.location.add(id=2).line.add(function_id=7),
        lambda p: p.location.add(id=1),
        lambda p: p.function.add(id=0),
        lambda p: p.function.add(id=2, name=99),
        lambda p: p.sample[0].label.add(key=1, str=50),
        lambda p: p.sample_type.add(type=-1, unit=2),
        lambda p: p.string_table.__setitem__(0, b"x"),
    ]
    decode_profile(base().SerializeToString())  # type: ignore[attr-defined]
    for breaker in breakers:
        p = base()
        breaker(p)
        with pytest.raises(ProfileError):
            decode_profile(p.SerializeToString())  # type: ignore[attr-defined]
    with pytest.raises(ProfileError, match="string_table"):
        decode_profile(PbProfile(period=5).SerializeToString())


def test_gzip_bomb_is_bounded() -> None:
    # 1 GiB of zeros in ~1 MB of gzip: 16 members of a ~64 KB stream (deflate tops out near 1000:1)
    chunk = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9, mtime=0)
    assert len(chunk) < 100 * 1024
    bomb = chunk * 16  # multi-member gzip: 1 GiB decompressed
    with pytest.raises(ProfileTooLargeError):
        decode_profile(bomb)
    small = gzip.compress(bytes(10 * 1024 * 1024), mtime=0)  # one member of 10 MiB
    with pytest.raises(ProfileTooLargeError):
        decode_profile(small)
    with pytest.raises(ProfileTooLargeError):
        decode_profile(bytes(100), max_size=99)
    assert issubclass(ProfileTooLargeError, ProfileError) and issubclass(ProfileError, ValueError)


def test_size_bound_is_exact() -> None:
    data = encode_profile([StackSample(["a"], [NS])])
    decode_profile(data, max_size=len(data))
    decode_profile(gzip.compress(data), max_size=len(data))
    with pytest.raises(ProfileTooLargeError):
        decode_profile(gzip.compress(data), max_size=len(data) - 1)
    two_members = gzip.compress(data[:10]) + gzip.compress(data[10:])
    assert decode_profile(two_members).SerializeToString() == decode_profile(data).SerializeToString()
