# The internal ingester API: every request and answer round-trips, and malformed bodies are refused
# with InternalProtocolError (never another exception), over the codec and over the app's endpoints.
from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from pyro_core.server.tree import StackTree


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


def test_query_result_round_trips_trees_per_series_and_bucket() -> None:
    t1 = StackTree({b"a;b": 2})
    t2 = StackTree({b"c": 5})
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
    msgpack.packb([2, "t", []]),  # wrong version
    msgpack.packb([1, "", []]),  # empty tenant
    msgpack.packb([1, "t", "no"]),
    msgpack.packb([1, "t", [[{"a": 1}, 1.0, [], None, ["s", 1, "u"]]]]),  # label value not a string
    msgpack.packb([1, "t", [[{}, float("nan"), [], None, ["s", 1, "u"]]]]),
    msgpack.packb([1, "t", [[{}, 1.0, [["str", 1]], None, ["s", 1, "u"]]]], use_bin_type=True),
    msgpack.packb([1, "t", [[{}, 1.0, [[b"a", True]], None, ["s", 1, "u"]]]], use_bin_type=True),
    msgpack.packb([1, "t", [[{}, 1.0, [], 5, ["s", 1, "u"]]]]),
    msgpack.packb([1, "t", [[{}, 1.0, [], None, ["s", "1", "u"]]]]),
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


def test_a_bad_tree_in_a_query_result_is_a_protocol_error() -> None:
    body = msgpack.packb([1, [[{"__name__": "a"}, 0, b"not a tree"]], {}], use_bin_type=True)
    with pytest.raises(InternalProtocolError, match="bad tree"):
        decode_query_result(body)
