"""The single-node HTTP API as a plain ASGI application (no framework: the ingest path stays lean).

Owns: routing, tenants, request bodies (size limit), status codes and response bodies; it wires the
sans-I/O modules (names, ingest, pprof, push, flameql, flamebearer) to a :class:`Storage`.
Must not know: sockets or the server that runs it (see serve.py).

Endpoints (Pyroscope's, see the spec "pyroscope-api.md" §1, §2, §4):

* ``POST /ingest``, ``/pyroscope/ingest`` — legacy ingest; 200 with an empty body.
* ``POST /push.v1.PusherService/Push`` — Connect push (``application/proto`` or ``application/json``).
* ``GET /render``, ``/pyroscope/render`` — ``format=json`` (flamebearer, the default) or ``collapsed``.
* ``GET /labels``, ``GET /label-values?label=``, ``GET /api/apps``, ``GET /ready``, ``GET /metrics``.
* With a cluster member (``make_app(..., member=)``): ``GET /ring`` and ``GET /memberlist`` (JSON when
  the Accept header contains application/json, else HTML; see pages.py); ``/ready`` answers 503 until
  this instance is ACTIVE in the ring; ``/metrics`` adds the ring gauges and memberlist counters.

Tenants: with multi-tenancy off every request belongs to ``anonymous`` (the header is ignored); with it
on, ``X-Scope-OrgID`` is required (401 when missing) and must be a valid tenant id (400 otherwise).

Push series naming. A pushed series carries ``__name__`` (the profile type: ``process_cpu``,
``memory``, …) and ``service_name`` (the application). Each raw pprof becomes one stored series per
sample type, named ``<service_name>.<display name>`` by pprof.DEFAULT_SAMPLE_TYPE_CONFIG (as legacy pprof
ingest does: ``alloc_objects``, ``inuse_space``, ``goroutines``, ``mutex_count`` …), except that for
``__name__=process_cpu`` the type is always ``cpu`` (``<service_name>.cpu``; when the profile has several
sample types the first one wins, e.g. Go's ``samples``). The other labels become tags, except
``__name__``, ``service_name``, names starting with ``__`` and names FlameQL cannot select (not
``[A-Za-z0-9_.]+``). The sample ``ID`` is the deduplication id (suffixed with the series' index when a
profile yields several series).

Metadata (spyName, sampleRate, units) seen at ingest is kept in memory for ``/render`` and
``/api/apps``; after a restart, or for unknown apps, the defaults (``unknown``, 100, ``samples``) apply.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qsl

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from pyro_core.exposition import go_exposition
from pyro_core.metrics import ClusterCollector
from pyro_core.net.cluster import ClusterMember
from pyro_core.server import flamebearer, flameql, pages
from pyro_core.server.auth import AuthConfig
from pyro_core.server.backend import Backend, BackendError, LocalBackend, LocalIngester
from pyro_core.server.ingest import ParseError, parse_stacks
from pyro_core.server.internal import (
    CONTENT_TYPE as INTERNAL_CONTENT_TYPE,
)
from pyro_core.server.internal import (
    LABELS_PATH,
    MERGE_PATH,
    PUSH_PATH,
    QUERY_PATH,
    SELECT_PATH,
    InternalProtocolError,
    LabelsRequest,
    QueryRequest,
    SeriesWrite,
    decode_labels_request,
    decode_merge,
    decode_push,
    decode_query,
    encode_labels_result,
    encode_merge_result,
    encode_query_result,
    encode_select_result,
)
from pyro_core.server.limits import (
    IngestionRateLimiter,
    ValidationError,
    rate_limited_message,
    truncate_stacks,
    validate_labels,
    validate_profile,
    validate_timestamp,
)
from pyro_core.server.names import (
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SPY_NAME,
    BadNameError,
    IngestParams,
    InvalidTenantError,
    parse_app_name,
    parse_time,
    validate_tenant,
)
from pyro_core.server.overrides import Limits, Overrides
from pyro_core.server.pprof import (
    DEFAULT_SAMPLE_TYPE_CONFIG,
    GZIP_MAGIC,
    ProfileError,
    ProfileTooLargeError,
    SampleTypeConfig,
    decode_profile_index,
    gunzip_bounded,
    parse_multipart,
    parse_sample_type_config,
    profile_to_series,
)
from pyro_core.server.push import SERVICE_PATH, connect_error, decode_push_request, encode_push_response
from pyro_core.server.remote_write import RelayItem, RemoteWriter
from pyro_core.server.storage import APP_LABEL, Storage

__all__ = ["ANONYMOUS", "DEFAULT_MAX_BODY_BYTES", "PROFILE_ID_HEADER", "AppMeta", "make_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ANONYMOUS: Final = "anonymous"
DEFAULT_MAX_BODY_BYTES: Final = 256 * 1024 * 1024
DEFAULT_UNITS: Final = "samples"
DEFAULT_RENDER_RANGE: Final = "now-1h"
#: A request header carrying the profile's id (a relay sets it): a repeated id is stored once.
PROFILE_ID_HEADER: Final = "x-pyro-core-profile-id"
_STATUS_CODES: Final = {
    400: "invalid_argument",
    401: "unauthenticated",
    413: "resource_exhausted",
    422: "invalid_argument",
    429: "resource_exhausted",
    502: "unavailable",
    503: "unavailable",
}

_TAG_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.]+")
_UNSUPPORTED_FORMATS: Final = frozenset({"jfr", "speedscope"})
_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class AppMeta:
    spy_name: str = DEFAULT_SPY_NAME
    sample_rate: int = DEFAULT_SAMPLE_RATE
    units: str = DEFAULT_UNITS


class _HTTPError(Exception):
    """A request that ends with ``status`` and a JSON ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Disconnected(Exception):
    pass


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw, keep_blank_values=True))


async def _respond(send: Send, status: int, body: bytes = b"", content_type: str | None = None) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The request body; 413 past ``limit`` bytes (by Content-Length first, then by what arrives)."""
    length = headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > limit:
        raise _HTTPError(413, "resource_exhausted", f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _HTTPError(413, "resource_exhausted", f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _push_type_config(profile_type: str, profile: Any) -> Mapping[str, SampleTypeConfig] | None:
    """The sample type config of a pushed profile of type ``profile_type`` (None: pprof's default):
    ``process_cpu`` names every sample type ``cpu`` (profile_to_series keeps the first)."""
    if profile_type != "process_cpu":
        return None
    out: dict[str, SampleTypeConfig] = {}
    for vt in profile.sample_type:
        raw = profile.string_table[vt.type] if 0 <= vt.type < len(profile.string_table) else b""
        type_ = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        base = DEFAULT_SAMPLE_TYPE_CONFIG.get(type_, SampleTypeConfig(sampled=True))
        out[type_] = replace(base, display_name="cpu")
    return out


def make_app(
    storage: Storage,
    *,
    backend: Backend | None = None,
    ingester: LocalIngester | None = None,
    multitenancy: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    clock: Callable[[], float] = time.time,
    registry: CollectorRegistry | None = None,
    member: ClusterMember | None = None,
    overrides: Overrides | None = None,
    auth: AuthConfig | None = None,
    relay: RemoteWriter | None = None,
) -> ASGIApp:
    """The ASGI application serving ``storage`` (an open :class:`Storage`); with ``member`` (a
    :class:`ClusterMember`, run elsewhere) it also serves the cluster pages and ring readiness.

    Writes and reads go through ``backend`` (default: this node's ingester alone, a
    :class:`LocalBackend`); ``ingester`` (default: one over ``storage``) answers the internal ingester
    API that other nodes' distributors and queriers call.

    ``overrides`` holds the per-tenant limits (ingestion rate → 429, label limits → 400; default: the
    defaults of Pyroscope); ``auth`` (when it has credentials) makes every path except ``/ready`` and
    ``/metrics`` answer 401 without them; ``relay`` relays every accepted profile to the remote-write
    targets (and with ``disable-local-writes`` stores nothing here)."""
    registry = CollectorRegistry() if registry is None else registry
    if ingester is None:
        ingester = LocalIngester(storage)
    if backend is None:
        backend = LocalBackend(ingester)
    local = ingester
    # Profile ids: random per app instance, then a counter (unique without a syscall per request).
    id_prefix = uuid.uuid4().hex
    id_counter = itertools.count()

    def new_id() -> str:
        return f"{id_prefix}-{next(id_counter):x}"
    if overrides is None:
        overrides = Overrides(Limits())
    limits_of = overrides.for_tenant
    limiter = IngestionRateLimiter(limits_of)
    auth_on = auth is not None and auth.enabled
    relay_only = relay is not None and relay.disable_local_writes
    if member is not None:
        m = member
        timeout = m.registration.heartbeat_timeout if m.registration is not None else 60.0
        registry.register(
            ClusterCollector(
                lambda: m.node.core, m.store, clock=m.clock, node=m.node, heartbeat_timeout=timeout
            )
        )
    profiles_total = Counter(
        "pyroscope_ingest_profiles",
        "Profiles (series) stored by ingest, per tenant",
        ["tenant"],
        registry=registry,
    )
    bytes_total = Counter(
        "pyroscope_ingest_bytes",
        "Request body bytes of successful ingests, per tenant",
        ["tenant"],
        registry=registry,
    )
    errors_total = Counter(
        "pyroscope_ingest_errors",
        "Failed ingest requests, per tenant and HTTP status",
        ["tenant", "status"],
        registry=registry,
    )

    def tenant_of(headers: Mapping[str, str]) -> str:
        if not multitenancy:
            return ANONYMOUS
        org = headers.get("x-scope-orgid", "").strip()
        if not org:
            raise _HTTPError(401, "unauthenticated", "no org id (X-Scope-OrgID is required)")
        try:
            return validate_tenant(org)
        except InvalidTenantError as exc:
            raise _HTTPError(400, "invalid_argument", str(exc)) from None

    def series_write(
        app: str,
        tags: Mapping[str, str],
        timestamp: float,
        stacks: Mapping[bytes, int],
        info: AppMeta,
        profile_id: str | None,
    ) -> SeriesWrite:
        return SeriesWrite(
            {**tags, APP_LABEL: app},
            timestamp,
            stacks,
            profile_id,
            info.spy_name,
            info.sample_rate,
            info.units,
        )

    def check_rate(tenant: str, nbytes: int) -> None:
        if not limiter.allow(tenant, nbytes, clock()):
            message = rate_limited_message(limiter.limit_bytes(tenant), nbytes)
            raise _HTTPError(429, "resource_exhausted", message)

    async def relay_profile(item: RelayItem) -> None:
        if relay is None:
            return
        relay.submit(item)
        if relay.durable:
            try:
                await relay.wait_durable()
            except OSError as exc:
                raise _HTTPError(503, "unavailable", f"remote-write spool: {exc}") from None

    async def push_writes(tenant: str, writes: list[SeriesWrite]) -> None:
        if not writes or relay_only:
            return
        limits = limits_of(tenant)
        now = clock()
        try:
            for i, w in enumerate(writes):
                validate_labels(w.labels, limits)
                validate_timestamp(w.timestamp, now, limits)
                stacks = truncate_stacks(w.stacks, limits)
                if stacks is not w.stacks:
                    writes[i] = replace(w, stacks=stacks)
        except ValidationError as exc:
            raise _HTTPError(400, "invalid_argument", str(exc)) from None
        try:
            await backend.push(tenant, writes)
        except BackendError as exc:
            raise _HTTPError(exc.status, _STATUS_CODES.get(exc.status, "internal"), exc.message) from None
        profiles_total.labels(tenant).inc(len(writes))

    # -- legacy ingest ------------------------------------------------------------------------------

    async def ingest(scope: Scope, receive: Receive, headers: Mapping[str, str], tenant: str) -> None:
        try:
            params = IngestParams.from_query(_query(scope), clock(), content_type=headers.get("content-type"))
        except BadNameError as exc:
            raise _HTTPError(400, "invalid_argument", f"invalid name: {exc}") from None
        body = await _read_body(receive, headers, max_body_bytes)
        check_rate(tenant, len(body))
        raw_body = body
        fmt = params.format
        if fmt in _UNSUPPORTED_FORMATS:
            raise _HTTPError(422, "unimplemented", f"unsupported format {fmt!r}")
        gzipped = headers.get("content-encoding", "").strip().lower() == "gzip"
        name = params.name
        info = AppMeta(params.spy_name, params.sample_rate, params.units)
        profile_id = headers.get(PROFILE_ID_HEADER, "").strip() or new_id()
        writes: list[SeriesWrite] = []
        try:
            if gzipped and body.startswith(GZIP_MAGIC):
                body = gunzip_bounded(body, max_body_bytes)
            if fmt in ("pprof", "pprof-form"):
                prev = None
                config = None
                if fmt == "pprof-form":
                    fields = parse_multipart(body, headers.get("content-type", ""))
                    if "profile" not in fields:
                        raise ProfileError("multipart body without a 'profile' field")
                    profile = decode_profile_index(fields["profile"])
                    if fields.get("prev_profile"):
                        prev = decode_profile_index(fields["prev_profile"])
                    if fields.get("sample_type_config"):
                        config = parse_sample_type_config(fields["sample_type_config"])
                else:
                    profile = decode_profile_index(body)
                validate_profile(profile.profile, limits_of(tenant))
                series = profile_to_series(
                    profile,
                    app_name=name.app,
                    base_tags=name.tags,
                    sample_type_config=config,
                    prev_profile=prev,
                )
                for i, s in enumerate(series):
                    rate = s.sample_rate if s.sample_rate is not None else params.sample_rate
                    writes.append(
                        series_write(
                            s.name,
                            s.tags,
                            params.from_,
                            s.stacks,
                            AppMeta(params.spy_name, rate, s.units),
                            profile_id if i == 0 else f"{profile_id}#{i}",
                        )
                    )
            else:
                stacks = dict(parse_stacks(fmt, body))
                if stacks:
                    writes.append(series_write(name.app, name.tags, params.from_, stacks, info, profile_id))
        except ProfileTooLargeError as exc:
            raise _HTTPError(413, "resource_exhausted", str(exc)) from None
        except ValidationError as exc:
            raise _HTTPError(400, "invalid_argument", str(exc)) from None
        except (ParseError, ProfileError) as exc:
            raise _HTTPError(422, "invalid_argument", str(exc)) from None
        await push_writes(tenant, writes)
        await relay_profile(
            RelayItem(
                "ingest",
                tenant,
                headers.get("x-scope-orgid"),
                scope.get("query_string", b"").decode("latin-1"),
                headers.get("content-type"),
                headers.get("content-encoding"),
                raw_body,
                profile_id,
                clock(),
            )
        )
        bytes_total.labels(tenant).inc(len(body))

    # -- Connect push -------------------------------------------------------------------------------

    async def push(receive: Receive, headers: Mapping[str, str], tenant: str) -> bytes:
        content_type = headers.get("content-type", "application/proto")
        body = await _read_body(receive, headers, max_body_bytes)
        check_rate(tenant, len(body))
        try:
            request = decode_push_request(
                body, content_type, headers.get("content-encoding"), max_size=max_body_bytes
            )
            now = clock()
            request_id = headers.get(PROFILE_ID_HEADER, "").strip() or new_id()
            writes: list[SeriesWrite] = []
            for n, ps in enumerate(request):
                labels = ps.label_dict()
                app = labels.get("service_name", "").strip()
                if not app:
                    raise _HTTPError(400, "invalid_argument", "series without a service_name label")
                try:
                    parse_app_name(app)
                except BadNameError as exc:
                    raise _HTTPError(400, "invalid_argument", f"invalid service_name: {exc}") from None
                tags = {
                    k: v
                    for k, v in labels.items()
                    if k != "service_name" and not k.startswith("__") and _TAG_NAME_RE.fullmatch(k)
                }
                for m, sample in enumerate(ps.samples):
                    index = decode_profile_index(sample.raw_profile)
                    profile = index.profile
                    validate_profile(profile, limits_of(tenant))
                    sample_id = sample.id or f"{request_id}.{n}.{m}"
                    config = _push_type_config(labels.get(APP_LABEL, ""), profile)
                    ts = profile.time_nanos / 1e9 if profile.time_nanos > 0 else now
                    series = profile_to_series(index, app_name=app, base_tags=tags, sample_type_config=config)
                    for i, s in enumerate(series):
                        rate = s.sample_rate if s.sample_rate is not None else DEFAULT_SAMPLE_RATE
                        writes.append(
                            series_write(
                                s.name,
                                s.tags,
                                ts,
                                s.stacks,
                                AppMeta(DEFAULT_SPY_NAME, rate, s.units),
                                sample_id if i == 0 else f"{sample_id}#{i}",
                            )
                        )
        except ProfileTooLargeError as exc:
            raise _HTTPError(413, "resource_exhausted", str(exc)) from None
        except (ProfileError, ValidationError) as exc:
            raise _HTTPError(400, "invalid_argument", str(exc)) from None
        await push_writes(tenant, writes)
        await relay_profile(
            RelayItem(
                "push",
                tenant,
                headers.get("x-scope-orgid"),
                "",
                headers.get("content-type"),
                headers.get("content-encoding"),
                body,
                request_id,
                clock(),
            )
        )
        bytes_total.labels(tenant).inc(len(body))
        return encode_push_response(content_type)

    # -- queries ------------------------------------------------------------------------------------

    def parse_selector(params: Mapping[str, str]) -> flameql.Query:
        text = params.get("query") or ""
        if text.strip():
            try:
                return flameql.parse(text)
            except flameql.QueryError as exc:
                raise _HTTPError(400, "invalid_argument", str(exc)) from None
        name = params.get("name") or ""
        if not name.strip():
            raise _HTTPError(400, "invalid_argument", "query or name is required")
        try:
            parsed = parse_app_name(name)
            return flameql.Query(
                parsed.app, tuple(flameql.Matcher.make(k, "=", v) for k, v in sorted(parsed.tags.items()))
            )
        except BadNameError as exc:
            raise _HTTPError(400, "invalid_argument", f"invalid name: {exc}") from None

    def max_nodes_of(params: Mapping[str, str], limits: Limits) -> int:
        raw = params.get("maxNodes", params.get("max-nodes", "")).strip()
        if not raw:
            return limits.max_flamegraph_nodes_default or flamebearer.DEFAULT_MAX_NODES
        try:
            n = int(raw)
        except ValueError:
            raise _HTTPError(400, "invalid_argument", f"invalid maxNodes {raw!r}") from None
        cap = limits.max_flamegraph_nodes_max
        if cap > 0 and (n <= 0 or n > cap):
            raise _HTTPError(400, "invalid_argument", f"maxNodes {n} exceeds the limit of {cap} nodes")
        return n

    def no_local_data() -> None:
        if relay_only:
            raise _HTTPError(
                400,
                "failed_precondition",
                "this node is a pure relay (remote-write disable-local-writes: true): it stores no profiles; "
                "query the remote-write targets",
            )

    async def render(scope: Scope, tenant: str) -> tuple[bytes, str]:
        no_local_data()
        params = _query(scope)
        query = parse_selector(params)
        limits = limits_of(tenant)
        max_nodes = max_nodes_of(params, limits)
        fmt = (params.get("format") or "json").strip().lower()
        if fmt not in ("json", "collapsed"):
            raise _HTTPError(400, "invalid_argument", f"unsupported format {fmt!r} (json or collapsed)")
        now = clock()
        start = parse_time(params.get("from") or DEFAULT_RENDER_RANGE, now)
        end = parse_time(params.get("until"), now)
        if limits.max_query_length > 0 and end - start > limits.max_query_length:
            raise _HTTPError(
                400,
                "invalid_argument",
                f"the query time range exceeds the limit (query length: {end - start:.0f}s, "
                f"limit: {limits.max_query_length:.0f}s)",
            )
        if limits.max_query_lookback > 0:
            start = max(start, now - limits.max_query_lookback)  # older data is out of reach
        try:
            tree, found = await backend.query(tenant, query, start, end)
        except BackendError as exc:
            raise _HTTPError(exc.status, _STATUS_CODES.get(exc.status, "internal"), exc.message) from None
        if fmt == "collapsed":
            if max_nodes > 0:
                tree = tree.truncate(max_nodes)
            return tree.to_collapsed(), _TEXT
        info = AppMeta(*found) if found is not None else AppMeta()
        doc = flamebearer.render(
            tree,
            max_nodes=max_nodes,
            name=str(query),
            spy_name=info.spy_name,
            sample_rate=info.sample_rate,
            units=info.units,
            start_time=int(start),
            end_time=int(end),
            query=str(query),
            app_name=query.app_name,
        )
        return json.dumps(doc, separators=(",", ":")).encode(), _JSON

    async def labels(request: LabelsRequest) -> tuple[list[str], dict[str, Any]]:
        no_local_data()
        try:
            return await backend.labels(request)
        except BackendError as exc:
            raise _HTTPError(exc.status, _STATUS_CODES.get(exc.status, "internal"), exc.message) from None

    async def apps(tenant: str) -> bytes:
        names, metas = await labels(LabelsRequest(tenant, "apps"))
        out = []
        for name in names:
            found = metas.get(name)
            info = AppMeta(*found) if found is not None else AppMeta()
            out.append(
                {"name": name, "spyName": info.spy_name, "sampleRate": info.sample_rate, "units": info.units}
            )
        return json.dumps(out).encode()

    # -- the internal ingester API (other nodes' distributors and queriers) ---------------------------

    async def internal(path: str, receive: Receive, headers: Mapping[str, str]) -> bytes:
        body = await _read_body(receive, headers, max_body_bytes)
        try:
            if path == PUSH_PATH:
                tenant, writes = decode_push(body)
                try:
                    await local.push_async(tenant, writes)
                except (ValueError, TypeError) as exc:
                    raise _HTTPError(422, "invalid_argument", str(exc)) from None
                return b""
            if path == QUERY_PATH:
                request: QueryRequest = decode_query(body)
                series, found = await trio.to_thread.run_sync(local.query, request)
                return encode_query_result(series, found)
            if path == SELECT_PATH:
                index, found = await trio.to_thread.run_sync(local.select, decode_query(body))
                return encode_select_result(index, found)
            if path == MERGE_PATH:
                stacks = await trio.to_thread.run_sync(local.merge, decode_merge(body))
                return encode_merge_result(stacks)
            values, found = await trio.to_thread.run_sync(local.labels, decode_labels_request(body))
            return encode_labels_result(values, found)
        except InternalProtocolError as exc:
            raise _HTTPError(400, "invalid_argument", str(exc)) from None

    # -- the ring page's Forget button ----------------------------------------------------------------

    async def forget(m: ClusterMember, receive: Receive, headers: Mapping[str, str], send: Send) -> None:
        """``POST /ring`` with the form field ``forget=<instance id>``: drop that instance from the
        ring. HTML callers get the page back with a notice; JSON callers ``{"forgotten": id}``."""
        try:
            body = await _read_body(receive, headers, 64 * 1024)
        except _HTTPError as exc:
            await _respond(send, exc.status, _error_body(exc.code, exc.message), _JSON)
            return
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        instance_id = fields.get("forget", "").strip()
        if not instance_id:
            message = "the form needs forget=<instance id>"
            await _respond(send, 400, _error_body("invalid_argument", message), _JSON)
            return
        if not m.forget(instance_id):
            message = f"no instance {instance_id!r} in the ring"
            await _respond(send, 404, _error_body("not_found", message), _JSON)
            return
        accept = headers.get("accept", "")
        if pages.wants_json(accept):
            await _respond(send, 200, json.dumps({"forgotten": instance_id}).encode(), _JSON)
            return
        notice = f"Instance {instance_id} forgotten."
        page, content_type = pages.ring_page(m, m.clock(), accept, notice=notice)
        await _respond(send, 200, page, content_type)

    # -- dispatch -----------------------------------------------------------------------------------

    async def http(scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        path = scope.get("path", "/")
        headers = _headers(scope)
        if path == "/ready":
            reason = pages.not_ready_reason(member) if member is not None else None
            if reason is not None:
                await _respond(send, 503, f"not ready: {reason}\n".encode(), _TEXT)
                return
            await _respond(send, 200, b"ready\n", _TEXT)
            return
        if member is not None and path in ("/ring", "/memberlist"):
            accept = headers.get("accept", "")
            if path == "/ring" and method == "POST":
                await forget(member, receive, headers, send)
                return
            if method not in ("GET", "HEAD"):
                await _respond(send, 405, _error_body("method_not_allowed", "use GET"), _JSON)
                return
            if path == "/ring":
                body, content_type = pages.ring_page(member, member.clock(), accept)
            else:
                body, content_type = pages.memberlist_page(member, accept)
            await _respond(send, 200, body, content_type)
            return
        if path == "/metrics":
            await _respond(send, 200, go_exposition(registry), CONTENT_TYPE_LATEST)
            return
        if auth_on and auth is not None and not auth.check(headers.get("authorization")):
            body = _error_body("unauthenticated", "missing or wrong credentials (Authorization header)")
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-length", str(len(body)).encode()),
                        (b"content-type", _JSON.encode()),
                        (b"www-authenticate", auth.www_authenticate().encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if path == "/remote-write":
            if relay is None:
                await _respond(send, 404, _error_body("not_found", "remote write is not configured"), _JSON)
                return
            body, content_type = relay.status_page(headers.get("accept", ""))
            await _respond(send, 200, body, content_type)
            return
        if path in (PUSH_PATH, QUERY_PATH, SELECT_PATH, MERGE_PATH, LABELS_PATH):
            if method != "POST":
                await _respond(send, 405, _error_body("method_not_allowed", "use POST"), _JSON)
                return
            try:
                body = await internal(path, receive, headers)
            except _HTTPError as exc:
                await _respond(send, exc.status, _error_body(exc.code, exc.message), _JSON)
                return
            await _respond(send, 200, body, INTERNAL_CONTENT_TYPE)
            return
        if path == SERVICE_PATH:
            if method != "POST":
                await _respond(send, 405, _error_body("unimplemented", "use POST"), _JSON)
                return
            tenant = ""
            try:
                tenant = tenant_of(headers)
                body = await push(receive, headers, tenant)
            except _HTTPError as exc:
                errors_total.labels(tenant, str(exc.status)).inc()
                code = {400: "invalid_argument", 401: "unauthenticated", 413: "resource_exhausted"}.get(
                    exc.status, exc.code
                )
                status, payload = connect_error(code, exc.message)
                await _respond(send, status, payload, _JSON)
                return
            media = headers.get("content-type", "application/proto").split(";", 1)[0].strip()
            await _respond(send, 200, body, media or "application/proto")
            return
        if path in ("/ingest", "/pyroscope/ingest"):
            if method != "POST":
                await _respond(send, 405, _error_body("method_not_allowed", "use POST"), _JSON)
                return
            tenant = ""
            try:
                tenant = tenant_of(headers)
                await ingest(scope, receive, headers, tenant)
            except _HTTPError as exc:
                errors_total.labels(tenant, str(exc.status)).inc()
                await _respond(send, exc.status, _error_body(exc.code, exc.message), _JSON)
                return
            await _respond(send, 200)
            return
        try:
            if path in ("/render", "/pyroscope/render"):
                body, content_type = await render(scope, tenant_of(headers))
            elif path == "/labels":
                names, _ = await labels(LabelsRequest(tenant_of(headers), "names"))
                body, content_type = json.dumps(names).encode(), _JSON
            elif path == "/label-values":
                label = _query(scope).get("label", "")
                if not label:
                    raise _HTTPError(400, "invalid_argument", "label is required")
                values, _ = await labels(LabelsRequest(tenant_of(headers), "values", label))
                body, content_type = json.dumps(values).encode(), _JSON
            elif path == "/api/apps":
                body, content_type = await apps(tenant_of(headers)), _JSON
            else:
                raise _HTTPError(404, "not_found", f"no route for {path}")
        except _HTTPError as exc:
            await _respond(send, exc.status, _error_body(exc.code, exc.message), _JSON)
            return
        await _respond(send, 200, body, content_type)

    async def lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await lifespan(receive, send)
        elif kind == "http":
            try:
                await http(scope, receive, send)
            except _Disconnected:
                return

    return app
