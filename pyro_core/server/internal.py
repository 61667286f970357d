# The internal ingester API between pyro-core servers: what a distributor sends to the ingesters that
# replicate a series, and what a querier asks every ingester for (Pyroscope's gRPC IngesterService,
# here msgpack over HTTP on the same port). Sans-I/O: bodies in, values out, and the reverse.
# Owns: the paths, the content type, SeriesWrite (one series of one profile, with its metadata) and
# the encoders/decoders of every request and answer, with strict shape checks (InternalProtocolError).
# Must not know: HTTP clients or servers, the ring, storage.
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

__all__ = [
    "CONTENT_TYPE",
    "LABELS_PATH",
    "MERGE_PATH",
    "PUSH_PATH",
    "QUERY_PATH",
    "SELECT_PATH",
    "InternalProtocolError",
    "LabelsRequest",
    "MergeRequest",
    "QueryRequest",
    "SeriesWrite",
    "decode_labels_request",
    "decode_labels_result",
    "decode_merge",
    "decode_merge_result",
    "decode_push",
    "decode_query",
    "decode_query_result",
    "decode_select_result",
    "encode_labels_request",
    "encode_labels_result",
    "encode_merge",
    "encode_merge_result",
    "encode_push",
    "encode_query",
    "encode_query_result",
    "encode_select_result",
]

PUSH_PATH: Final = "/internal/ingester/push"
QUERY_PATH: Final = "/internal/ingester/query"
SELECT_PATH: Final = "/internal/ingester/select"
MERGE_PATH: Final = "/internal/ingester/merge"
LABELS_PATH: Final = "/internal/ingester/labels"
CONTENT_TYPE: Final = "application/x-pyro-core-msgpack"
_VERSION: Final = 2

#: App metadata as carried between nodes: (spyName, sampleRate, units).
Meta = tuple[str, int, str]
SeriesKey = tuple[tuple[str, str], ...]
#: What one ingester holds of the queried series: (series key, bucket) → (labels, flat stacks).
SeriesBuckets = dict[tuple[SeriesKey, int], tuple[dict[str, str], dict[bytes, int]]]
#: Its index: (series key, bucket) → (labels, sample count).
SeriesIndex = dict[tuple[SeriesKey, int], tuple[dict[str, str], int]]


class InternalProtocolError(ValueError):
    """A request or answer of the internal API that does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class SeriesWrite:
    """One series of one ingested profile: its labels (``__name__`` = the app name with its profile
    type), the time, the stacks, the deduplication id and the app's metadata."""

    labels: Mapping[str, str]
    timestamp: float
    stacks: Mapping[bytes, int]
    profile_id: str | None = None
    spy_name: str = "unknown"
    sample_rate: int = 100
    units: str = "samples"

    @property
    def meta(self) -> Meta:
        return (self.spy_name, self.sample_rate, self.units)


@dataclass(frozen=True, slots=True)
class QueryRequest:
    tenant: str
    query: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class MergeRequest:
    """Merge the samples of these ``(series key, bucket)`` pieces (the querier chose this ingester's
    replica for them) within the query."""

    query: QueryRequest
    wanted: tuple[tuple[SeriesKey, int], ...]


@dataclass(frozen=True, slots=True)
class LabelsRequest:
    """``kind`` is ``names`` (label names), ``values`` (values of ``name``) or ``apps``."""

    tenant: str
    kind: str
    name: str = ""


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _unpack(body: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise InternalProtocolError(f"undecodable {what}: {exc}") from None


def _envelope(body: bytes, what: str, size: int) -> list[Any]:
    doc = _unpack(body, what)
    if not isinstance(doc, list) or len(doc) != size or doc[0] != _VERSION:
        raise InternalProtocolError(f"{what}: expected a version-{_VERSION} array of {size} items")
    return doc


def _tenant(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InternalProtocolError(f"{what}: the tenant must be a non-empty string")
    return value


def _labels(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InternalProtocolError(f"{what}: labels must map strings to strings")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InternalProtocolError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def _meta(value: Any, what: str) -> Meta:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], str)
        or isinstance(value[1], bool)
        or not isinstance(value[1], int)
        or not isinstance(value[2], str)
    ):
        raise InternalProtocolError(f"{what}: metadata must be [spyName, sampleRate, units]")
    return (value[0], value[1], value[2])


# -- push ------------------------------------------------------------------------------------------


def encode_push(tenant: str, writes: Sequence[SeriesWrite]) -> bytes:
    return _pack(
        [
            _VERSION,
            tenant,
            [
                [
                    dict(w.labels),
                    w.timestamp,
                    [[k, int(v)] for k, v in w.stacks.items()],
                    w.profile_id,
                    list(w.meta),
                ]
                for w in writes
            ],
        ]
    )


def decode_push(body: bytes) -> tuple[str, list[SeriesWrite]]:
    _, tenant, rows = _envelope(body, "push request", 3)
    tenant = _tenant(tenant, "push request")
    if not isinstance(rows, list):
        raise InternalProtocolError("push request: series must be an array")
    out: list[SeriesWrite] = []
    for i, row in enumerate(rows):
        what = f"push request series {i}"
        if not isinstance(row, list) or len(row) != 5:
            raise InternalProtocolError(f"{what}: expected [labels, timestamp, stacks, id, meta]")
        labels, ts, pairs, pid, meta = row
        stacks = _stacks(pairs, what)
        if pid is not None and not isinstance(pid, str):
            raise InternalProtocolError(f"{what}: the profile id must be a string or nil")
        spy, rate, units = _meta(meta, what)
        out.append(SeriesWrite(_labels(labels, what), _number(ts, what), stacks, pid, spy, rate, units))
    return tenant, out


# -- query -----------------------------------------------------------------------------------------


def encode_query(request: QueryRequest) -> bytes:
    return _pack([_VERSION, request.tenant, request.query, request.start, request.end])


def decode_query(body: bytes) -> QueryRequest:
    _, tenant, query, start, end = _envelope(body, "query request", 5)
    if not isinstance(query, str):
        raise InternalProtocolError("query request: the query must be a string")
    return QueryRequest(
        _tenant(tenant, "query request"),
        query,
        _number(start, "query request"),
        _number(end, "query request"),
    )


def encode_query_result(series: SeriesBuckets, meta: Mapping[str, Meta]) -> bytes:
    return _pack(
        [
            _VERSION,
            [[labels, bucket, list(stacks.items())] for (_, bucket), (labels, stacks) in series.items()],
            {app: list(m) for app, m in meta.items()},
        ]
    )


def _stacks(pairs: Any, what: str) -> dict[bytes, int]:
    if not isinstance(pairs, list):
        raise InternalProtocolError(f"{what}: stacks must be an array")
    out: dict[bytes, int] = {}
    for pair in pairs:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not isinstance(pair[0], bytes)
            or isinstance(pair[1], bool)
            or not isinstance(pair[1], int)
            or pair[1] < 0
        ):
            raise InternalProtocolError(f"{what}: a stack must be [bytes, non-negative integer]")
        out[pair[0]] = out.get(pair[0], 0) + pair[1]
    return out


def decode_query_result(body: bytes) -> tuple[SeriesBuckets, dict[str, Meta]]:
    _, rows, meta = _envelope(body, "query result", 3)
    if not isinstance(rows, list) or not isinstance(meta, dict):
        raise InternalProtocolError("query result: expected [version, series, meta]")
    out: SeriesBuckets = {}
    for row in rows:
        bucket = row[1] if isinstance(row, list) and len(row) == 3 else None
        if isinstance(bucket, bool) or not isinstance(bucket, int):
            raise InternalProtocolError("query result: a series must be [labels, bucket, stacks]")
        labels = _labels(row[0], "query result")
        stacks = _stacks(row[2], "query result")
        key = (tuple(sorted(labels.items())), row[1])
        have = out.get(key)
        if have is None:
            out[key] = (labels, stacks)
        else:
            for k, v in stacks.items():
                have[1][k] = have[1].get(k, 0) + v
    return out, {str(app): _meta(m, "query result") for app, m in meta.items()}


def encode_select_result(index: SeriesIndex, meta: Mapping[str, Meta]) -> bytes:
    return _pack(
        [
            _VERSION,
            [[labels, bucket, total] for (_, bucket), (labels, total) in index.items()],
            {app: list(m) for app, m in meta.items()},
        ]
    )


def decode_select_result(body: bytes) -> tuple[SeriesIndex, dict[str, Meta]]:
    _, rows, meta = _envelope(body, "select result", 3)
    if not isinstance(rows, list) or not isinstance(meta, dict):
        raise InternalProtocolError("select result: expected [version, series, meta]")
    out: SeriesIndex = {}
    for row in rows:
        ok = isinstance(row, list) and len(row) == 3
        if not ok or any(isinstance(x, bool) or not isinstance(x, int) for x in row[1:]) or row[2] < 0:
            raise InternalProtocolError("select result: a series must be [labels, bucket, count]")
        labels = _labels(row[0], "select result")
        out[(tuple(sorted(labels.items())), row[1])] = (labels, row[2])
    return out, {str(app): _meta(m, "select result") for app, m in meta.items()}


def encode_merge(request: MergeRequest) -> bytes:
    q = request.query
    wanted = [[[list(p) for p in key], bucket] for key, bucket in request.wanted]
    return _pack([_VERSION, q.tenant, q.query, q.start, q.end, wanted])


def decode_merge(body: bytes) -> MergeRequest:
    _, tenant, query, start, end, wanted = _envelope(body, "merge request", 6)
    if not isinstance(query, str) or not isinstance(wanted, list):
        raise InternalProtocolError("merge request: expected a query string and a list of pieces")
    pieces: list[tuple[SeriesKey, int]] = []
    for item in wanted:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], list)
            or isinstance(item[1], bool)
            or not isinstance(item[1], int)
        ):
            raise InternalProtocolError("merge request: a piece must be [[[name, value], …], bucket]")
        pairs = []
        for pair in item[0]:
            if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
                raise InternalProtocolError("merge request: a label must be [name, value]")
            pairs.append((pair[0], pair[1]))
        pieces.append((tuple(pairs), item[1]))
    what = "merge request"
    q = QueryRequest(_tenant(tenant, what), query, _number(start, what), _number(end, what))
    return MergeRequest(q, tuple(pieces))


def encode_merge_result(stacks: Mapping[bytes, int]) -> bytes:
    return _pack([_VERSION, list(stacks.items())])


def decode_merge_result(body: bytes) -> dict[bytes, int]:
    _, pairs = _envelope(body, "merge result", 2)
    return _stacks(pairs, "merge result")


# -- labels ----------------------------------------------------------------------------------------

_LABEL_KINDS: Final = frozenset({"names", "values", "apps"})


def encode_labels_request(request: LabelsRequest) -> bytes:
    return _pack([_VERSION, request.tenant, request.kind, request.name])


def decode_labels_request(body: bytes) -> LabelsRequest:
    _, tenant, kind, name = _envelope(body, "labels request", 4)
    if kind not in _LABEL_KINDS or not isinstance(name, str):
        raise InternalProtocolError(f"labels request: kind must be one of {sorted(_LABEL_KINDS)}")
    return LabelsRequest(_tenant(tenant, "labels request"), kind, name)


def encode_labels_result(values: Sequence[str], meta: Mapping[str, Meta]) -> bytes:
    return _pack([_VERSION, list(values), {app: list(m) for app, m in meta.items()}])


def decode_labels_result(body: bytes) -> tuple[list[str], dict[str, Meta]]:
    _, values, meta = _envelope(body, "labels result", 3)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InternalProtocolError("labels result: values must be strings")
    if not isinstance(meta, dict):
        raise InternalProtocolError("labels result: meta must be a map")
    return values, {str(app): _meta(m, "labels result") for app, m in meta.items()}
