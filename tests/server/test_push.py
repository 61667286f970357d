from __future__ import annotations

import base64
import contextlib
import gzip
import json
import random

import pytest

from pyro_core.server import push
from pyro_core.server.pprof import (
    ProfileError,
    ProfileTooLargeError,
    StackSample,
    decode_profile,
    encode_profile,
    profile_to_series,
)
from pyro_core.server.push import (
    CONNECT_HTTP_STATUS,
    PushSeries,
    RawSample,
    connect_error,
    decode_push_request,
    encode_push_request,
    encode_push_response,
)

NS = 10_000_000

# A real request body: pyroscope-io 1.4.0 (pyroscope-rs/pyspy 1.4.0, installed from PyPI) pushing ~5 s of
# CPU of a small script to a local capture server, app "capapp", tags {"env": "test"} plus a
# tag_wrapper({"phase": "one"}). Content-Type application/proto, Content-Encoding gzip.
REAL_CLIENT_BODY = bytes.fromhex(
    "1f8b08003643016b00035d50316fd3401426e773625e2ae11e85a08244a9989072890fa7215294999199c51cd7731bc9be3b"
    "f9ec886e5991c2c488047f000443414c4cfc802e0c202624fe010831c1d904a9eaf4bef7beef7df7ee8397187a102489e2b9"
    "4c12d2358516d2da44980abae049b520b894b684cbb06165b1980bd968495b70c38d81015cd0a5cca815da48da50d784cee9"
    "41c153ae383547856eb881392a0fb582ab404e2d2c6461e75a113fa2311dc275d85a5f408b4a95f37c6dd911ebed1bd03b2b"
    "f86fd1be4da3888ec967046f10e0a01522d205d442c45fae9e3c4704007988e0e5978fe7c90678b8618edffdc484d49defba"
    "4fef3f74b671d00903123ab5efd4c78f2fae279bceac16bd3ef98efe8d7683a0b55bbf441c420ea1f092439e43ad70d321ec"
    "90d7b0be4328dcbad5768cb7835d45a1df542f6cef60768e792e73d6555c692b8556fb96e18755a1d8f6a0cc8d4bcf7d3b9b"
    "4b550e5cf2655548172d0ba6b9deaf323963bd5a4ba799163cb3333a3d904a3e32c58cf9e6905bc93cade4dd17bf57cfbebe"
    "fdf3e3cabd5faba727e47e7d267ab07cf50d939ba3493a665c8cfa93a14cfbf15e94f6efc432ee8fe2e15e1aa7691c8d277f"
    "010287ceff2f020000"
)


def test_real_python_client_request() -> None:
    [series] = decode_push_request(REAL_CLIENT_BODY, "application/proto", "gzip")
    assert series.labels == (
        ("__name__", "process_cpu"),
        ("env", "test"),
        ("service_name", "capapp"),
        ("otel.scope.name", "com.grafana.pyroscope/python"),
        ("otel.scope.version", "1.4.0"),
        ("process.runtime.name", "cpython"),
        ("process.runtime.version", "3.11.7"),
    )
    [sample] = series.samples
    assert sample.id == "59f72ac5-90ef-461f-84e4-5406f4ff4179"
    profile = decode_profile(sample.raw_profile)
    assert profile.period == NS
    assert [(profile.string_table[v.type], profile.string_table[v.unit]) for v in profile.sample_type] == [
        (b"cpu", b"nanoseconds")
    ]
    got = {
        tuple(sorted(s.tags.items())): s
        for s in profile_to_series(profile, app_name="capapp", base_tags=series.label_dict())
    }
    untagged = got[tuple(sorted(series.label_dict().items()))]
    tagged = got[tuple(sorted({**series.label_dict(), "phase": "one"}.items()))]
    assert len(got) == 2
    assert untagged.name == tagged.name == "capapp.cpu"
    assert tagged.sample_rate == 100 and tagged.units == "samples"
    assert tagged.stacks == {b"<module>;burn;burn.<locals>.<genexpr>": 201, b"<module>;burn": 79}
    assert untagged.stacks == {b"<module>;burn": 62, b"<module>;burn;burn.<locals>.<genexpr>": 132}


def _series() -> list[PushSeries]:
    p1 = encode_profile([StackSample(["main", "f"], [3 * NS])])
    p2 = encode_profile([StackSample(["main", "g"], [NS])], compress=True)
    return [
        PushSeries(
            labels=(("__name__", "process_cpu"), ("service_name", "app"), ("env", "prod")),
            samples=(RawSample(p1, "id-1"), RawSample(p2)),
        ),
        PushSeries(labels=(("service_name", "other"),), samples=(RawSample(b"\x00\xff\x10", "x"),)),
        PushSeries(labels=(), samples=()),
    ]


@pytest.mark.parametrize("ctype", ["application/proto", "application/json"])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(ctype: str, compress: bool) -> None:
    body = encode_push_request(_series(), content_type=ctype, compress=compress)
    assert body.startswith(b"\x1f\x8b") == compress
    got = decode_push_request(body, ctype + "; charset=utf-8", "gzip" if compress else None)
    assert got == _series()
    assert got[0].label_dict() == {"__name__": "process_cpu", "service_name": "app", "env": "prod"}
    # a gzip body is sniffed even without Content-Encoding
    if compress:
        assert decode_push_request(body, ctype, None) == _series()


def test_json_mapping_field_names() -> None:
    body = encode_push_request(_series()[:1], content_type="application/json")
    obj = json.loads(body)
    [s] = obj["series"]
    assert s["labels"][0] == {"name": "__name__", "value": "process_cpu"}
    assert s["samples"][0]["ID"] == "id-1"
    assert base64.b64decode(s["samples"][0]["rawProfile"]) == _series()[0].samples[0].raw_profile
    # a hand-written JSON request, with the original field names and url-safe base64 accepted too
    hand = json.dumps(
        {
            "series": [
                {
                    "labels": [{"name": "service_name", "value": "svc"}],
                    "samples": [
                        {"raw_profile": base64.b64encode(b"\xfb\xff").decode(), "ID": "a"},
                        {"rawProfile": base64.urlsafe_b64encode(b"\xfb\xff").decode().rstrip("=")},
                    ],
                }
            ],
            "unknownField": 1,
        }
    ).encode()
    [got] = decode_push_request(hand, "application/json", None)
    assert got == PushSeries(
        labels=(("service_name", "svc"),), samples=(RawSample(b"\xfb\xff", "a"), RawSample(b"\xfb\xff"))
    )
    assert decode_push_request(b"{}", "application/json", None) == []
    assert decode_push_request(b"", "application/proto", None) == []


def test_proto_field_numbers() -> None:
    # PushRequest.series=1; RawProfileSeries.labels=1, samples=2; LabelPair name=1, value=2;
    # RawSample raw_profile=1, ID=2 — written by hand
    label = b"\x0a\x01k" + b"\x12\x01v"
    sample = b"\x0a\x02\x01\x02" + b"\x12\x02id"
    series = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    body = b"\x0a" + bytes([len(series)]) + series
    assert decode_push_request(body, "application/proto") == [
        PushSeries(labels=(("k", "v"),), samples=(RawSample(b"\x01\x02", "id"),))
    ]
    assert encode_push_request([PushSeries((("k", "v"),), (RawSample(b"\x01\x02", "id"),))]) == body
    sample = b"\x0a\x02\x01\x02"  # ID "" is not written
    series = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    assert encode_push_request([({"k": "v"}, [b"\x01\x02"])]) == b"\x0a" + bytes([len(series)]) + series


@pytest.mark.parametrize(
    ("body", "ctype", "encoding"),
    [
        (b"\xff\xff\xff", "application/proto", None),
        (b"{not json", "application/json", None),
        (b"\xff", "application/json", None),
        (b'{"series": 3}', "application/json", None),
        (b'{"series": [{"samples": [{"rawProfile": 5}]}]}', "application/json", None),
        (b'{"series": [{"labels": [{"name": ["x"]}]}]}', "application/json", None),
        (b"", "text/plain", None),
        (b"", "application/proto", "br"),
        (b"plain", "application/proto", "gzip"),
        (gzip.compress(b"x")[:-3], "application/proto", "gzip"),
    ],
)
def test_bad_requests(body: bytes, ctype: str, encoding: str | None) -> None:
    with pytest.raises(ProfileError):
        decode_push_request(body, ctype, encoding)


def test_hostile_bytes_only_raise_profile_error() -> None:
    rng = random.Random(99)
    good = encode_push_request(_series())
    inputs = [good[:n] for n in range(len(good))]
    inputs += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(400)]
    for data in inputs:
        for ctype in ("application/proto", "application/json"):
            with contextlib.suppress(ProfileError):
                decode_push_request(data, ctype, None)


def test_size_bound() -> None:
    body = encode_push_request(_series())
    assert decode_push_request(body, "application/proto", max_size=len(body)) == _series()
    with pytest.raises(ProfileTooLargeError):
        decode_push_request(body, "application/proto", max_size=len(body) - 1)
    bomb = gzip.compress(bytes(50 * 1024 * 1024), mtime=0)
    with pytest.raises(ProfileTooLargeError):
        decode_push_request(bomb, "application/proto", "gzip", max_size=1024 * 1024)


def test_response_and_connect_errors() -> None:
    assert encode_push_response("application/proto") == b""
    assert encode_push_response("application/json") == b"{}"
    status, body = connect_error("invalid_argument", "bad profile")
    assert status == 400 and json.loads(body) == {"code": "invalid_argument", "message": "bad profile"}
    expected = {
        "invalid_argument": 400,
        "resource_exhausted": 429,
        "unauthenticated": 401,
        "permission_denied": 403,
        "not_found": 404,
        "internal": 500,
        "unavailable": 503,
        "unimplemented": 501,
        "deadline_exceeded": 504,
        "canceled": 499,
        "failed_precondition": 400,
        "already_exists": 409,
    }
    for code, http in expected.items():
        assert connect_error(code, "m")[0] == http
    assert len(CONNECT_HTTP_STATUS) == 16
    assert connect_error("nonsense", "m") == (500, b'{"code":"unknown","message":"m"}')
    assert connect_error("internal", "") == (500, b'{"code":"internal"}')


def test_service_path() -> None:
    assert push.SERVICE_PATH == "/push.v1.PusherService/Push"
