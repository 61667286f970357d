# The Connect push API of Grafana Pyroscope, `POST /push.v1.PusherService/Push` (sans-I/O).
# Owns: the schema of push/v1/push.proto (PushRequest, RawProfileSeries, RawSample) and of
# types/v1/types.proto's LabelPair, built at import time from FileDescriptorProtos written here (no
# protoc step); decoding a request body (application/proto or application/json, optionally gzipped)
# into PushSeries; encoding one (tests, remote write); Connect error bodies and their HTTP statuses.
# Must not know: HTTP transport, tenants, pprof contents (raw_profile stays bytes: see pprof.py).
from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message, message_factory

from pyro_core.server.pprof import GZIP_MAGIC, ProfileError, ProfileTooLargeError, gunzip_bounded

SERVICE_PATH: Final = "/push.v1.PusherService/Push"
MAX_PUSH_BODY: Final = 256 * 1024 * 1024  # Grafana Pyroscope's default request body limit (uncompressed)

_F = descriptor_pb2.FieldDescriptorProto
_REPEATED: Final = _F.LABEL_REPEATED
_OPTIONAL: Final = _F.LABEL_OPTIONAL


def _add_field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_: int,
    *,
    repeated: bool = False,
    type_name: str = "",
    json_name: str = "",
) -> None:
    fd = msg.field.add(name=name, number=number, type=type_, label=_REPEATED if repeated else _OPTIONAL)
    if type_name:
        fd.type_name = type_name
    fd.json_name = json_name or name


def _types_file() -> descriptor_pb2.FileDescriptorProto:
    """types/v1/types.proto (package types.v1, proto3): only LabelPair."""
    f = descriptor_pb2.FileDescriptorProto(name="types/v1/types.proto", package="types.v1", syntax="proto3")
    pair = f.message_type.add(name="LabelPair")
    _add_field(pair, "name", 1, _F.TYPE_STRING)
    _add_field(pair, "value", 2, _F.TYPE_STRING)
    return f


def _push_file() -> descriptor_pb2.FileDescriptorProto:
    """push/v1/push.proto (package push.v1, proto3): the messages of PusherService.Push."""
    f = descriptor_pb2.FileDescriptorProto(name="push/v1/push.proto", package="push.v1", syntax="proto3")
    f.dependency.append("types/v1/types.proto")
    req = f.message_type.add(name="PushRequest")
    _add_field(req, "series", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".push.v1.RawProfileSeries")
    f.message_type.add(name="PushResponse")
    series = f.message_type.add(name="RawProfileSeries")
    _add_field(series, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".types.v1.LabelPair")
    _add_field(series, "samples", 2, _F.TYPE_MESSAGE, repeated=True, type_name=".push.v1.RawSample")
    sample = f.message_type.add(name="RawSample")
    _add_field(sample, "raw_profile", 1, _F.TYPE_BYTES, json_name="rawProfile")
    _add_field(sample, "ID", 2, _F.TYPE_STRING)
    return f


_POOL: Final = descriptor_pool.DescriptorPool()  # private: no clash with another push.v1 schema
_POOL.Add(_types_file())
_POOL.Add(_push_file())


def _message_class(full_name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


PbPushRequest: Final[Any] = _message_class("push.v1.PushRequest")
PbPushResponse: Final[Any] = _message_class("push.v1.PushResponse")
PbRawProfileSeries: Final[Any] = _message_class("push.v1.RawProfileSeries")
PbRawSample: Final[Any] = _message_class("push.v1.RawSample")
PbLabelPair: Final[Any] = _message_class("types.v1.LabelPair")


@dataclass(frozen=True, slots=True)
class RawSample:
    raw_profile: bytes  # a pprof, as sent (gzipped or not: pprof.decode_profile sniffs)
    id: str = ""


@dataclass(frozen=True, slots=True)
class PushSeries:
    labels: tuple[tuple[str, str], ...]  # in request order; duplicates kept (the caller validates)
    samples: tuple[RawSample, ...] = field(default=())

    def label_dict(self) -> dict[str, str]:
        """The labels as a dict (a repeated name keeps its last value)."""
        return dict(self.labels)


# What encode_push_request takes: PushSeries, or (labels, [raw_profile, ...]).
SeriesLike = PushSeries | tuple[Mapping[str, str] | Sequence[tuple[str, str]], Sequence[bytes]]

_PROTO_TYPES: Final = frozenset({"application/proto", "application/protobuf", "application/x-protobuf"})
_JSON_TYPES: Final = frozenset({"application/json"})


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_push_request(
    body: bytes, content_type: str, content_encoding: str | None = None, *, max_size: int = MAX_PUSH_BODY
) -> list[PushSeries]:
    """The series of a PushRequest body (``application/proto`` or ``application/json``).

    ``Content-Encoding: gzip`` is honoured (and a gzip body is sniffed anyway); ``identity`` or none
    means raw. ``max_size`` bounds the uncompressed body. Raises ProfileTooLargeError past it and
    ProfileError (Connect ``invalid_argument``) for an unknown encoding or content type or a bad body.
    """
    body = bytes(body)
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise ProfileError(f"unsupported content encoding {content_encoding!r}")
    if encoding == "gzip" or body.startswith(GZIP_MAGIC):
        body = gunzip_bounded(body, max_size)
    elif len(body) > max_size:
        raise ProfileTooLargeError(f"request body larger than {max_size} bytes")
    media = _media_type(content_type)
    req = PbPushRequest()
    if media in _PROTO_TYPES:
        try:
            req.ParseFromString(body)
        except (message.DecodeError, RuntimeError, ValueError) as e:
            raise ProfileError(f"invalid PushRequest protobuf: {e}") from None
    elif media in _JSON_TYPES:
        try:
            json_format.Parse(body.decode("utf-8"), req, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError) as e:
            raise ProfileError(f"invalid PushRequest JSON: {e}") from None
    else:
        raise ProfileError(
            f"unsupported content type {content_type!r} (expected application/proto or application/json)"
        )
    return [
        PushSeries(
            labels=tuple((lp.name, lp.value) for lp in s.labels),
            samples=tuple(RawSample(raw_profile=rs.raw_profile, id=rs.ID) for rs in s.samples),
        )
        for s in req.series
    ]


def _request(series: Iterable[SeriesLike]) -> Any:
    req = PbPushRequest()
    for s in series:
        if isinstance(s, PushSeries):
            labels: Iterable[tuple[str, str]] = s.labels
            samples = [(rs.raw_profile, rs.id) for rs in s.samples]
        else:
            raw_labels, profiles = s
            labels = raw_labels.items() if isinstance(raw_labels, Mapping) else raw_labels
            samples = [(p, "") for p in profiles]
        out = req.series.add()
        for name, value in labels:
            out.labels.add(name=name, value=value)
        for raw, id_ in samples:
            out.samples.add(raw_profile=raw, ID=id_)
    return req


def encode_push_request(
    series: Iterable[SeriesLike],
    *,
    content_type: str = "application/proto",
    compress: bool = False,
) -> bytes:
    """A PushRequest body: ``series`` as PushSeries or ``(labels, [raw_profile, ...])`` pairs; protobuf
    or, for ``application/json``, the protobuf JSON mapping (``rawProfile`` in base64); gzipped when
    ``compress`` (send ``Content-Encoding: gzip``)."""
    req = _request(series)
    media = _media_type(content_type)
    if media in _PROTO_TYPES:
        data: bytes = req.SerializeToString()
    elif media in _JSON_TYPES:
        data = json_format.MessageToJson(req, indent=None).encode()
    else:
        raise ValueError(f"unsupported content type {content_type!r}")
    return gzip.compress(data, mtime=0) if compress else data


def encode_push_response(content_type: str = "application/proto") -> bytes:
    """The body of a successful Push: empty (protobuf) or ``{}`` (JSON)."""
    return b"{}" if _media_type(content_type) in _JSON_TYPES else b""


# -- Connect errors ------------------------------------------------------------------------------
# The Connect protocol's code → HTTP status mapping (connectrpc.com/docs/protocol, "Error Codes").
CONNECT_HTTP_STATUS: Final[Mapping[str, int]] = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}


def connect_error(code: str, message: str) -> tuple[int, bytes]:
    """``(http_status, body)`` of a Connect unary error: JSON ``{"code": ..., "message": ...}``, to send
    with ``Content-Type: application/json``. An unknown code is sent as ``unknown`` (500)."""
    if code not in CONNECT_HTTP_STATUS:
        code = "unknown"
    body = {"code": code, "message": message} if message else {"code": code}
    return CONNECT_HTTP_STATUS[code], json.dumps(body, separators=(",", ":")).encode()
