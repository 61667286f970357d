# The internal ingester API: every request and answer round-trips, and malformed bodies are refused
# with InternalProtocolError (never another exception), over the codec and over the app's endpoints.
from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core.server.internal import _VERSION as _V
from pyro_core.server.internal import (
    InternalProtocolError,
    LabelsRequest,
    QueryRequest,
    SeriesWrite,
    decode_labels_request,
    decode_labels_result,
    decode_push,
    decode_query,
    decode_query_result,
    encode_labels_request,
    encode_labels_result,
    encode_push,
    encode_query,
    encode_query_result,
)


def test_push_round_trips_series_ids_and_metadata() -> None:
    writes = [
        SeriesWrite({"__name__": "app.cpu", "env": "prod"}, 1700000000.5, {b"a;b": 3, b"a": 1}, "id-1", "pyspy", 99, "samples"),
        SeriesWrite({"__name__": "app.alloc_space"}, 17.0, {}, None),
    ]
    tenant, back = decode_push(encode_push("t1", writes))
    assert tenant == "t1"
    assert back == writes


def test_query_and_labels_requests_round_trip() -> None:
    q = QueryRequest("t", 'app.cpu{env=~"p.*"}', 10.0, 20.0)
    assert decode_query(encode_query(q)) == q
    for req in (LabelsRequest("t", "names"), LabelsRequest("t", "values", "env"), LabelsRequest("t", "apps")):
        assert decode_labels_request(encode_labels_request(req)) == req


def test_query_result_round_trips_stacks_per_series_and_bucket() -> None:
    t1 = {b"a;b": 2}
    t2 = {b"c": 5}
    labels = {"__name__": "x.cpu", "k": "v"}
    key = tuple(sorted(labels.items()))
    series = {(key, 0): (labels, t1), (key, 10): (labels, t2)}
    back, meta = decode_query_result(encode_query_result(series, {"x.cpu": ("gospy", 100, "samples")}))
    assert back == series
    assert meta == {"x.cpu": ("gospy", 100, "samples")}
    values, meta = decode_labels_result(encode_labels_result(["a", "b"], {}))
    assert values == ["a", "b"] and meta == {}


BAD_BODIES = [
    b"",
    b"\xc1",
    msgpack.packb([99, "t", []]),  # wrong version
    msgpack.packb([_V, "", []]),  # empty tenant
    msgpack.packb([_V, "t", "no"]),
    msgpack.packb([_V, "t", [[{"a": 1}, 1.0, [], None, ["s", 1, "u"]]]]),  # label value not a string
    msgpack.packb([_V, "t", [[{}, float("nan"), [], None, ["s", 1, "u"]]]]),
    msgpack.packb([_V, "t", [[{}, 1.0, [["str", 1]], None, ["s", 1, "u"]]]], use_bin_type=True),
    msgpack.packb([_V, "t", [[{}, 1.0, [[b"a", True]], None, ["s", 1, "u"]]]], use_bin_type=True),
    msgpack.packb([_V, "t", [[{}, 1.0, [], 5, ["s", 1, "u"]]]]),
    msgpack.packb([_V, "t", [[{}, 1.0, [], None, ["s", "1", "u"]]]]),
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_malformed_push_bodies_are_refused_clearly(body: bytes) -> None:
    with pytest.raises(InternalProtocolError):
        decode_push(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_a_protocol_error(body: bytes) -> None:
    for decode in (decode_push, decode_query, decode_query_result, decode_labels_request, decode_labels_result):
        with contextlib.suppress(InternalProtocolError):
            decode(body)


@pytest.mark.parametrize("stacks", [b"not pairs", [[b"a", -1]], [["a", 1]], [[b"a", 1.5]]])
def test_bad_stacks_in_a_query_result_are_a_protocol_error(stacks: object) -> None:
    body = msgpack.packb([2, [[{"__name__": "a"}, 0, stacks]], {}], use_bin_type=True)
    with pytest.raises(InternalProtocolError, match="stack"):
        decode_query_result(body)


def test_select_and_merge_round_trip() -> None:
    from pyro_core.server.internal import (
        MergeRequest,
        decode_merge,
        decode_merge_result,
        decode_select_result,
        encode_merge,
        encode_merge_result,
        encode_select_result,
    )

    labels = {"__name__": "x.cpu", "k": "v"}
    key = tuple(sorted(labels.items()))
    index = {(key, 0): (labels, 7), (key, 10): (labels, 0)}
    back, meta = decode_select_result(encode_select_result(index, {"x.cpu": ("pyspy", 100, "samples")}))
    assert back == index and meta == {"x.cpu": ("pyspy", 100, "samples")}
    req = MergeRequest(QueryRequest("t", "x.cpu", 1.0, 2.0), ((key, 0), (key, 10)))
    assert decode_merge(encode_merge(req)) == req
    assert decode_merge_result(encode_merge_result({b"a;b": 3, b"c": 1})) == {b"a;b": 3, b"c": 1}


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb([_V, "t", "q", 1.0, 2.0, [[["k", "v"], 0]]]),  # a label that is not a pair
        msgpack.packb([_V, "t", "q", 1.0, 2.0, [[[["k", 1]], 0]]]),
        msgpack.packb([_V, "t", "q", 1.0, 2.0, [[[["k", "v"]], "0"]]]),
        msgpack.packb([_V, "t", "q", 1.0, 2.0, "all"]),
        msgpack.packb([_V, "t", 5, 1.0, 2.0, []]),
    ],
)
def test_malformed_merge_requests_are_refused(body: bytes) -> None:
    from pyro_core.server.internal import decode_merge

    with pytest.raises(InternalProtocolError):
        decode_merge(body)
