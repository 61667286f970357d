"""Remote write: relay every profile this node accepts to other Pyroscope-compatible instances.

Owns: RelayItem (a profile as it arrived) and its spool encoding; the per-target request (URL, headers,
auth, tenant, tags merged into the name or the push labels); the retry rules (a sans-I/O core:
RetryRules / RetryBudget take ``now`` and return decisions); the trio shell (per-target queue or
spool, workers, drain; the client: our HTTP/1.1 requests and httptools' response parser over trio
sockets and a keep-alive pool for http:// targets, httpx2 for https:// targets); the
remote-write metrics under Pyroscope's exact names; the ``/remote-write`` status (JSON and HTML).
Must not know: the ASGI app and routes (app.py calls submit / wait_durable / status_page), command-line
flags and YAML files (cli.py parses the YAML; relay_config.py checks the section), local storage.

Delivery. Upstream Pyroscope (og) had one bounded queue per target, dropped and counted when it was
full, POSTed with many workers, treated any non-2xx as an error and never retried. pyro-core keeps
that shape and adds:

* retries on network errors, timeouts, 408, 429 and 5xx, with exponential backoff and full jitter
  (``uniform(0, min(max_backoff, min_backoff * 2**attempt))``), never sooner than ``Retry-After``
  (seconds or an HTTP date, clipped to ``max-retry-after``); other 4xx are permanent failures (counted,
  the response body logged, truncated); after ``max-retries`` retries an item is given up (counted);
* a retry budget per target (GCRA: ``retry-budget`` retries per second, bursts of ``retry-burst``), so
  an outage cannot multiply the load on a target: retries past the budget wait for their slot;
* an optional durable spool per target (spool.py). Then ``submit`` appends to the spool with one
  ``write`` (so the record survives ``kill -9`` as soon as ``submit`` returns), workers read from the
  spool, and a record leaves it only when delivered or given up on. fsync is batched: the HTTP handler
  awaits :meth:`RemoteWriter.wait_durable` before its 200 (group commit: one fsync covers every append
  made before it started), and a background task syncs and commits every ``commit-interval`` anyway.
  With the spool on, ``max-retries`` defaults to unlimited: a target that is down for an hour loses
  nothing while the spool has room (beyond it, the oldest records are dropped and counted).

Every request carries ``X-Pyro-Core-Profile-Id`` (the relay's id of the profile): delivery is at least
once, and a pyro-core target drops a profile id it has already stored.

Threads: ``submit``, ``status`` and everything else are called from the trio thread. Spool reads,
fsyncs and commits run in worker threads (spool.py documents which of its methods allow that).
"""

from __future__ import annotations

import base64
import bisect
import email.utils
import html
import json
import logging
import math
import random
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import httptools
import httpx2
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pyro_core.server.names import BadNameError, ParsedName, parse_app_name
from pyro_core.server.pprof import ProfileError
from pyro_core.server.push import PushSeries as PushSeries
from pyro_core.server.push import decode_push_request, encode_push_request
from pyro_core.server.relay_config import (
    RemoteWriteConfig,
    RemoteWriteConfigError,
    RetryConfig,
    SpoolConfig,
    TargetConfig,
)
from pyro_core.server.spool import Spool, SpoolEntry

__all__ = [
    "PROFILE_ID_HEADER",
    "Action",
    "Decision",
    "OutgoingRequest",
    "RelayItem",
    "RemoteWriteCollector",
    "RemoteWriteConfig",
    "RemoteWriteConfigError",
    "RemoteWriter",
    "RetryBudget",
    "RetryConfig",
    "RetryRules",
    "SpoolConfig",
    "TargetConfig",
    "backoff_delay",
    "build_request",
    "decode_item",
    "encode_item",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

PROFILE_ID_HEADER: Final = "X-Pyro-Core-Profile-Id"
INGEST_PATH: Final = "/ingest"
PUSH_PATH: Final = "/push.v1.PusherService/Push"
LOGGED_BODY_BYTES: Final = 512  # how much of a rejecting target's response body is logged
REQUEUE_AFTER_RETRIES: Final = 8  # a spool record failing this many retries in a row goes to the end
USER_AGENT: Final = "pyro-core-remote-write"
_JSON: Final = "application/json"
_HTML: Final = "text/html; charset=utf-8"


# =================================================================================================
# The profile being relayed, and its spool encoding
# =================================================================================================


@dataclass(frozen=True)
class RelayItem:
    """One profile as the relay accepted it: what is needed to send it again, unchanged."""

    kind: Literal["ingest", "push"]  # legacy /ingest, or Connect /push.v1.PusherService/Push
    tenant: str  # tenant the relay accepted it for ("anonymous" when multi-tenancy is off)
    org_id: str | None  # the X-Scope-OrgID header as received (None if absent)
    query: str  # the query string exactly as received, still percent-encoded ("" for push)
    content_type: str | None
    content_encoding: str | None
    body: bytes  # exactly as received
    profile_id: str  # unique id the relay assigned (uuid4 hex)
    received_at: float  # unix seconds

    @property
    def params(self) -> tuple[tuple[str, str], ...]:
        """The query parameters, decoded, in order."""
        return tuple(parse_qsl(self.query, keep_blank_values=True))


_ITEM_VERSION: Final = 1
_ITEM_HEADER: Final = struct.Struct(">BI")  # version, length of the JSON metadata


def encode_item(item: RelayItem) -> bytes:
    """A RelayItem as one spool record: ``u8 version | u32 BE n | n bytes of JSON metadata | body``.
    The metadata holds the raw query string under "query" (records from before it was kept have the
    decoded pairs under "params"; both are read)."""
    meta = json.dumps(
        {
            "kind": item.kind,
            "tenant": item.tenant,
            "org_id": item.org_id,
            "query": item.query,
            "content_type": item.content_type,
            "content_encoding": item.content_encoding,
            "profile_id": item.profile_id,
            "received_at": item.received_at,
        },
        separators=(",", ":"),
    ).encode()
    return b"".join((_ITEM_HEADER.pack(_ITEM_VERSION, len(meta)), meta, item.body))


def decode_item(data: bytes) -> RelayItem:
    """The RelayItem of a spool record; ValueError if it is not one."""
    if len(data) < _ITEM_HEADER.size:
        raise ValueError("spool record too short")
    version, n = _ITEM_HEADER.unpack_from(data, 0)
    if version != _ITEM_VERSION or _ITEM_HEADER.size + n > len(data):
        raise ValueError(f"unknown spool record (version {version})")
    try:
        meta = json.loads(data[_ITEM_HEADER.size : _ITEM_HEADER.size + n])
        kind = meta["kind"]
        if kind not in ("ingest", "push"):
            raise ValueError(f"unknown relay item kind {kind!r}")
        for key in ("org_id", "content_type", "content_encoding"):
            if meta[key] is not None and not isinstance(meta[key], str):
                raise ValueError(f"malformed spool record metadata: {key} is {meta[key]!r}")
        if "query" in meta:
            query = str(meta["query"])
        else:  # written before the raw query string was kept: the decoded pairs
            query = urlencode([(str(k), str(v)) for k, v in meta["params"]])
        return RelayItem(
            kind=kind,
            tenant=str(meta["tenant"]),
            org_id=meta["org_id"],
            query=query,
            content_type=meta["content_type"],
            content_encoding=meta["content_encoding"],
            body=bytes(data[_ITEM_HEADER.size + n :]),
            profile_id=str(meta["profile_id"]),
            received_at=float(meta["received_at"]),
        )
    except (KeyError, TypeError, AttributeError) as e:  # valid JSON, but not our metadata
        raise ValueError(f"malformed spool record metadata: {e!r}") from None


# =================================================================================================
# The request sent to a target (sans-I/O)
# =================================================================================================


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _merge_name(name: str, tags: Sequence[tuple[str, str]]) -> str:
    """`app{k=v}` with the target's tags merged in (a tag of the same key is overridden)."""
    try:
        parsed = parse_app_name(name)
    except BadNameError:
        return name  # the relay accepted it; the target will judge
    return ParsedName(parsed.app, {**parsed.tags, **dict(tags)}).normalized


def _merge_labels(series: PushSeries, tags: Mapping[str, str]) -> PushSeries:
    labels = [(k, tags.get(k, v)) for k, v in series.labels]
    present = {k for k, _ in series.labels}
    labels.extend((k, v) for k, v in tags.items() if k not in present)
    return PushSeries(labels=tuple(labels), samples=series.samples)


def _push_body(item: RelayItem, tags: Sequence[tuple[str, str]]) -> bytes:
    if not tags:
        return item.body
    content_type = item.content_type or "application/proto"
    try:
        series = decode_push_request(item.body, content_type, item.content_encoding)
    except ProfileError:
        return item.body  # the relay accepted it; the target will judge
    tag_map = dict(tags)
    gzipped = (item.content_encoding or "").strip().lower() == "gzip"
    return encode_push_request(
        [_merge_labels(s, tag_map) for s in series], content_type=content_type, compress=gzipped
    )


def _target_headers(target: TargetConfig) -> dict[str, tuple[str, str]]:
    """The headers a target adds to every request, by lower-cased name (later settings override)."""
    out: dict[str, tuple[str, str]] = {}
    for name, value in target.headers:
        out[name.lower()] = (name, value)
    if target.basic_auth_user is not None:
        creds = f"{target.basic_auth_user}:{target.basic_auth_password or ''}".encode()
        out["authorization"] = ("Authorization", "Basic " + base64.b64encode(creds).decode("ascii"))
    elif target.auth_token:
        out["authorization"] = ("Authorization", f"Bearer {target.auth_token}")
    return out


def build_request(
    target: TargetConfig, item: RelayItem, *, base_headers: Mapping[str, tuple[str, str]] | None = None
) -> OutgoingRequest:
    """The POST that relays ``item`` to ``target``. Header precedence: the target's ``headers``, then
    its auth (Basic over Bearer), then the profile id, Content-Type and Content-Encoding (always the
    profile's own). ``X-Scope-OrgID`` is the target's ``tenant-id``, else an ``X-Scope-OrgID`` set in
    its ``headers``, else the one the profile came with: what the operator wrote for a target beats
    what a client sent to the relay."""
    headers = dict(_target_headers(target) if base_headers is None else base_headers)
    if target.tenant_id:
        headers["x-scope-orgid"] = ("X-Scope-OrgID", target.tenant_id)
    elif item.org_id and "x-scope-orgid" not in headers:
        headers["x-scope-orgid"] = ("X-Scope-OrgID", item.org_id)
    headers[PROFILE_ID_HEADER.lower()] = (PROFILE_ID_HEADER, item.profile_id)
    for name, value in (("Content-Type", item.content_type), ("Content-Encoding", item.content_encoding)):
        if value:
            headers[name.lower()] = (name, value)
        else:
            headers.pop(name.lower(), None)
    if item.kind == "push":
        url = target.address + PUSH_PATH
        body = _push_body(item, target.tags)
    else:
        query = item.query
        if target.tags:
            tags = target.tags
            query = urlencode([(k, _merge_name(v, tags) if k == "name" else v) for k, v in item.params])
        url = target.address + INGEST_PATH + ("?" + query if query else "")
        body = item.body
    headers.pop("content-length", None)  # the client sets it
    headers.pop("host", None)
    return OutgoingRequest(url=url, headers=tuple(headers.values()), body=body)


# =================================================================================================
# Retry rules (sans-I/O: `now` and randomness are arguments)
# =================================================================================================


class Action(Enum):
    SENT = "sent"  # 2xx: done
    RETRY = "retry"  # try again at Decision.at
    REJECTED = "rejected"  # a 4xx other than 408 / 429: permanent failure, never retried
    GIVE_UP = "give_up"  # retryable, but max-retries is spent


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    at: float  # when to try again (RETRY); otherwise the `now` the decision was made at
    delay: float = 0.0  # the backoff / Retry-After part of the wait, before the budget


def is_retryable(status: int | None) -> bool:
    """Network errors and timeouts (None), 408, 429 and 5xx are worth another try."""
    return status is None or status in (408, 429) or status >= 500


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (relative to the
    unix time ``wall_now``); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    if text.isdigit():  # too many digits, or not ASCII ("²" is a digit to Python): unreadable
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - wall_now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


_DELTA_SECONDS: Final = re.compile(r"[0-9]{1,12}")  # ASCII digits only; 12 digits is 31,000 years


def backoff_delay(attempt: int, min_backoff: float, max_backoff: float, rand: float) -> float:
    """Full-jitter exponential backoff before retry number ``attempt + 1``: ``rand`` (in [0, 1)) times
    ``min(max_backoff, min_backoff * 2**attempt)``."""
    ceiling = max_backoff if attempt >= 63 else min(max_backoff, min_backoff * (1 << attempt))
    return rand * ceiling


class RetryBudget:
    """A target's retry budget: at most ``rate`` retries per second, in bursts of at most ``burst``
    (GCRA, "generic cell rate algorithm"). ``reserve(t)`` books a retry wanted at ``t`` and says when
    it may run. Retries are booked at the time they want to run, so retries wanting the same moment (a
    Retry-After seen by every worker) are spread out instead of arriving together."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.interval = 1.0 / rate
        self.tolerance = (burst - 1) * self.interval
        self._tat = -math.inf  # the theoretical arrival time of the next retry

    def reserve(self, wanted: float) -> float:
        tat = max(self._tat, wanted)
        allowed = max(wanted, tat - self.tolerance)
        self._tat = max(tat, allowed) + self.interval
        return allowed


class RetryRules:
    """What to do after an attempt: the retry policy of one target, with its budget's state."""

    def __init__(self, config: RetryConfig) -> None:
        self.config = config
        self.budget = RetryBudget(config.budget, config.burst)

    def decide(
        self,
        attempt: int,
        status: int | None,
        retry_after: str | None = None,
        *,
        now: float,
        wall_now: float,
        rand: float,
    ) -> Decision:
        """``attempt`` counts the retries made so far (0 after the first try); ``status`` is the HTTP
        status, None for a network error or timeout; ``now`` is the scheduling clock (trio time),
        ``wall_now`` unix time (for an HTTP-date Retry-After); ``rand`` in [0, 1) drives the jitter."""
        if status is not None and 200 <= status < 300:
            return Decision(Action.SENT, now)
        if not is_retryable(status):
            return Decision(Action.REJECTED, now)
        cfg = self.config
        if cfg.max_retries is not None and attempt >= cfg.max_retries:
            return Decision(Action.GIVE_UP, now)
        delay = backoff_delay(attempt, cfg.min_backoff, cfg.max_backoff, rand)
        wait = parse_retry_after(retry_after, wall_now) if status in (429, 503) else None
        if wait is not None:
            delay = max(delay, min(wait, cfg.max_retry_after))
        return Decision(Action.RETRY, self.budget.reserve(now + delay), delay)


# =================================================================================================
# Metrics
# =================================================================================================


class _ExactCounterType(str):
    """The metric type "counter", printed as such, but not equal to "counter".

    prometheus_client's text exposition appends ``_total`` to the family name of every counter
    (OpenMetrics' convention); Go's client_golang, which Pyroscope uses, does not, and the remote-write
    counters are named without it (``pyroscope_remote_write_queue_dropped``). A family whose type is
    this string keeps ``# HELP`` / ``# TYPE`` / sample names exactly as given."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return other is self

    def __ne__(self, other: object) -> bool:
        return other is not self

    def __hash__(self) -> int:
        return str.__hash__(self)


_GO_COUNTER: Final = _ExactCounterType("counter")


def _go_counter(name: str, documentation: str) -> Metric:
    metric = Metric(name, documentation, "counter")
    metric.type = _GO_COUNTER
    return metric


#: Histogram buckets of the response time: client_golang's DefBuckets.
RESPONSE_TIME_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Histogram:
    """One label set's histogram (cumulative buckets built at scrape time)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(RESPONSE_TIME_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(RESPONSE_TIME_BUCKETS, value)] += 1
        self.sum += value


@dataclass
class TargetStats:
    """Counters of one target, plain numbers bumped on the hot path and read at scrape time."""

    sent: int = 0  # profiles delivered (2xx)
    sent_bytes: int = 0  # body bytes of every request that got a response
    dropped: int = 0  # not accepted into the queue (full queue, or the spool refused the record)
    retries: int = 0
    permanent_failures: int = 0  # 4xx other than 408 / 429, or a request that cannot be sent: not retried
    given_up: int = 0  # retryable failures after max-retries
    requeued: int = 0  # spool records put back at the spool's end after REQUEUE_AFTER_RETRIES retries
    lost_on_shutdown: int = 0  # in-memory items still queued when the workers stopped
    in_flight: int = 0
    last_error: str | None = None
    last_error_time: float | None = None
    last_success_time: float | None = None
    response_time: dict[str, _Histogram] = field(default_factory=dict)  # by status code


class RemoteWriteCollector(Collector):
    """Scrape-time metrics of a RemoteWriter, with Pyroscope's names and label spellings (spec §5)
    plus pyro-core's own (``pyro_core_remote_write_*``)."""

    def __init__(self, writer: RemoteWriter) -> None:
        self.writer = writer

    def describe(self) -> list[Metric]:
        return []  # collected dynamically

    def collect(self) -> Iterator[Metric]:
        targets = self.writer._targets
        camel = ["targetName", "targetAddress"]
        snake = ["target_name", "target_address"]
        sent_bytes = _go_counter(
            "pyroscope_remote_write_client_sent_bytes",
            "Profile body bytes the relay delivered to this target (request bodies, not headers).",
        )
        response = HistogramMetricFamily(
            "pyroscope_remote_write_client_response_time",
            "Seconds from sending a profile to this target until its answer, per HTTP status code.",
            labels=[*camel, "code"],
        )
        workers = GaugeMetricFamily(
            "pyroscope_remote_write_queue_workers_total", "Workers sending to this target.", labels=snake
        )
        capacity = GaugeMetricFamily(
            "pyroscope_remote_write_queue_capacity", "Most profiles this target's queue holds.", labels=snake
        )
        pending = GaugeMetricFamily(
            "pyroscope_remote_write_queue_pending", "Profiles waiting in this target's queue.", labels=snake
        )
        dropped = _go_counter(
            "pyroscope_remote_write_queue_dropped",
            "Profiles this target's full queue refused (never sent).",
        )
        sent = CounterMetricFamily(
            "pyro_core_remote_write_sent", "Profiles delivered to the remote target (2xx).", labels=snake
        )
        retries = CounterMetricFamily(
            "pyro_core_remote_write_retries", "Uploads tried again after a retryable failure.", labels=snake
        )
        permanent = CounterMetricFamily(
            "pyro_core_remote_write_permanent_failures",
            "Profiles the remote target rejected with a 4xx other than 408 and 429, or that could not be "
            "sent at all (not retried).",
            labels=snake,
        )
        given_up = CounterMetricFamily(
            "pyro_core_remote_write_given_up",
            "Profiles given up on after max-retries retryable failures.",
            labels=snake,
        )
        spool_bytes = GaugeMetricFamily(
            "pyro_core_remote_write_spool_bytes", "Bytes of undelivered profiles in the spool.", labels=snake
        )
        spool_entries = GaugeMetricFamily(
            "pyro_core_remote_write_spool_entries", "Undelivered profiles in the spool.", labels=snake
        )
        spool_dropped = CounterMetricFamily(
            "pyro_core_remote_write_spool_dropped",
            "Profiles dropped from the spool because it was full (oldest first).",
            labels=snake,
        )
        spool_requeued = CounterMetricFamily(
            "pyro_core_remote_write_spool_requeued",
            "Spool records put back at the end of the spool after failing several retries in a row.",
            labels=snake,
        )
        for t in targets:
            cfg, stats = t.config, t.stats
            labels = {"targetName": cfg.name, "targetAddress": cfg.address}
            values = [cfg.name, cfg.address]
            sent_bytes.add_sample(sent_bytes.name, labels, stats.sent_bytes)
            for code, hist in sorted(stats.response_time.items()):
                cumulative, buckets = 0, []
                for bound, count in zip((*RESPONSE_TIME_BUCKETS, math.inf), hist.counts, strict=True):
                    cumulative += count
                    buckets.append((_bound(bound), cumulative))
                response.add_metric([*values, code], buckets, hist.sum)
            workers.add_metric(values, cfg.queue_workers)
            capacity.add_metric(values, cfg.queue_size)
            pending.add_metric(values, t.pending)
            dropped.add_sample(
                dropped.name, {"target_name": cfg.name, "target_address": cfg.address}, stats.dropped
            )
            sent.add_metric(values, stats.sent)
            retries.add_metric(values, stats.retries)
            permanent.add_metric(values, stats.permanent_failures)
            given_up.add_metric(values, stats.given_up)
            if t.spool is not None:
                spool_bytes.add_metric(values, t.spool.pending_bytes)
                spool_entries.add_metric(values, t.spool.pending_entries)
                spool_dropped.add_metric(values, t.spool.dropped)
                spool_requeued.add_metric(values, stats.requeued)
        yield from (sent_bytes, response, workers, capacity, pending, dropped)
        yield from (sent, retries, permanent, given_up)
        yield from (spool_bytes, spool_entries, spool_dropped, spool_requeued)


def _bound(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


# =================================================================================================
# The HTTP/1.1 client of http:// targets: httptools (llhttp) parses the responses, trio the sockets
# =================================================================================================

_MAX_RESPONSE_HEAD: Final = 64 * 1024  # response bytes allowed before the final head is complete
_MAX_RESPONSE_BODY: Final = 16 << 20  # a longer answer is a protocol error (its connection is closed)
_KEPT_RESPONSE_BODY: Final = 64 * 1024  # of an answer's body, kept in memory (only a bit is logged)
_ANSWER_GRACE: Final = 1.0  # seconds to read an answer that came while the request was being sent
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 token)
_FORBIDDEN: Final = re.compile(r"[\r\n\x00]")  # never in a header value or request target
_SPACE: Final = re.compile(r"[\x00-\x20\x7f]")  # never in a request target


class _ProtocolError(Exception):
    """The target's answer is not HTTP/1.x as expected: the exchange fails like a network error, and
    its connection is closed."""


class _Oversized(Exception):
    """Raised in a parser callback: the answer's body is over _MAX_RESPONSE_BODY. The exchange ends
    with the status already read, and the connection is closed instead of reading the rest."""


class _Unsendable(_ProtocolError):
    """The request cannot be put on the wire (a header or URL no HTTP client may send: a CR, LF or
    NUL, a name that is not a token, a character outside Latin-1): a permanent failure, never
    retried."""


@dataclass(frozen=True, slots=True)
class _Response:
    status_code: int
    headers: Mapping[str, str]  # lower-cased names
    content: bytes


class _Connection:
    """One keep-alive connection: a trio socket and an httptools response parser, whose callbacks
    (the ``on_*`` methods) collect the response of the current exchange."""

    __slots__ = (
        "chunked",
        "complete",
        "got_bytes",
        "head_bytes",
        "head_done",
        "headers",
        "keep_alive",
        "parser",
        "parts",
        "size",
        "sock",
        "status",
        "surplus",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.got_bytes = False  # some bytes of a response arrived during this exchange
        self.complete = False  # the final response (after any 1xx) is whole
        self.surplus = False  # bytes came after the final response: not reusable
        self.head_bytes = 0  # bytes read while no final head was complete (1xx included)
        self._reset_message()

    def _reset_message(self) -> None:
        self.head_done = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.parts: list[bytes] = []
        self.size = 0
        self.keep_alive = False
        self.chunked = False

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # another response, unasked for
            self.surplus = True
            return
        self._reset_message()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        parser = self.parser
        self.status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()
        self.head_done = True
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        if length is not None and int(length) > _MAX_RESPONSE_BODY and self.status >= 200:
            raise _Oversized  # llhttp checked the digits; the status stands, the body is not read

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        kept = self.size
        self.size += len(body)
        if self.size > _MAX_RESPONSE_BODY:
            raise _Oversized  # the status stands; the rest of the body is not read
        if kept < _KEPT_RESPONSE_BODY:
            self.parts.append(bytes(body[: _KEPT_RESPONSE_BODY - kept]))

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status < 200:  # an interim response (100 Continue, 103): wait for the final one
            self._reset_message()
            return
        self.complete = True

    # -- the exchange -------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        try:
            self._parse(data)
        finally:
            if not self.head_done and not self.complete:  # still no final head: count it
                self.head_bytes += len(data)
        if self.head_bytes > _MAX_RESPONSE_HEAD:
            raise _ProtocolError("response head too large")

    def _parse(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, _Oversized):  # answered; the connection goes with the body
                self.complete, self.keep_alive, self.surplus = True, False, True
                return
            if isinstance(e.__context__, _ProtocolError):
                raise e.__context__ from None
            raise _ProtocolError(str(e)) from None
        except httptools.HttpParserUpgrade:  # a 101: not something a relay speaks
            if not self.complete or self.status == 101:
                raise _ProtocolError("the target switched protocols") from None
            self.surplus = True
        except httptools.HttpParserError as e:
            if not self.complete:
                raise _ProtocolError(str(e) or type(e).__name__) from None
            self.surplus = True  # garbage after the response: the response stands, the connection goes

    async def exchange(self, request: bytes, content: bytes) -> _Response:
        """Send one request (its head, then ``content``), read its final response (1xx skipped).

        A target may answer before it has read the whole request (a 413 for a body too large) and
        close: the send then fails, and whatever answer already arrived is read and returned (the
        connection is not reused) rather than turning a refusal into a network error retried."""
        self._reset()
        sock = self.sock
        try:
            if len(content) < 65536:
                whole = await _send_all(sock, request + content)
            else:  # not worth a copy
                whole = await _send_all(sock, request) and await _send_all(sock, content)
        except OSError:
            with trio.move_on_after(_ANSWER_GRACE), suppress(OSError, _ProtocolError):
                await self._read_answer()
            if not self.complete:
                raise
            self.keep_alive = False
        else:
            await self._read_answer()
            if not whole:  # answered before taking the whole request: the connection cannot go on
                self.keep_alive = False
        return _Response(self.status, self.headers, b"".join(self.parts))

    async def _read_answer(self) -> None:
        sock = self.sock
        while not self.complete:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(65536)
            except BlockingIOError:  # woken for nothing
                continue
            if not data:  # the target closed its side
                if self.head_done and "content-length" not in self.headers and not self.chunked:
                    self.complete = True  # a body delimited by the end of the connection
                    self.keep_alive = False
                    break
                raise _ProtocolError("the target closed the connection")
            self.got_bytes = True
            self._feed(data)

    def reusable(self) -> bool:
        """Both sides are done with a keep-alive exchange and nothing past the response arrived."""
        return self.complete and self.keep_alive and not self.surplus

    def idle_and_clean(self) -> bool:
        """Nothing arrived on this kept connection since its last exchange: no stray answer that the
        next exchange would take for its own, no close by the target. A non-blocking peek."""
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # bytes nobody asked for, or b"": the target closed it


async def _send_all(sock: socket.socket, data: bytes) -> bool:
    """Write all of ``data`` to a non-blocking socket, waiting only when the kernel's buffer is full
    (not a checkpoint by itself: the exchange's wait for the response is). False if the target
    started answering while the buffer was full (a 413 before reading a large body): the rest is
    not sent."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            if await _writable_or_answered(sock):
                return False
            continue
        view = view[sent:]
    return True


async def _writable_or_answered(sock: socket.socket) -> bool:
    """Wait until ``sock`` takes more bytes (False) or has something to read (True: an answer, or the
    target's close). Only a request that fills the kernel's buffer gets here."""
    answered = False
    async with trio.open_nursery() as nursery:

        async def writable() -> None:
            await trio.lowlevel.wait_writable(sock)
            nursery.cancel_scope.cancel()

        async def readable() -> None:
            nonlocal answered
            await trio.lowlevel.wait_readable(sock)
            answered = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(writable)
        nursery.start_soon(readable)
    return answered


def _close(sock: socket.socket) -> None:
    trio.lowlevel.notify_closing(sock)
    sock.close()


class _Http1Client:
    """POSTs to one ``http://`` target over a pool of keep-alive connections: the request head is
    written here (every header checked: a name must be a token; a CR, LF or NUL in a value, or a
    space or control character in the target, is refused as :class:`_ProtocolError` before anything
    is sent), httptools (llhttp, the parser of Node.js) reads the responses: Content-Length, chunked,
    or delimited by the end of the connection, 1xx skipped, head and body capped.

    httpx2 costs 0.5 to 1 ms of CPU per request on this path, and h11 (this client's framing until
    Nov 2026) about 125 µs; this one about 70 µs (bench/test_bench_relay_client.py), most of it the
    two system calls and the one wait of the exchange. A reused
    connection that the target has closed meanwhile (nothing of a response arrived) is retried once
    on a new one (a pyro-core target drops a repeated profile id, so the at-most-one extra delivery is
    harmless). Timeouts are the caller's (a cancel scope); a cancelled exchange closes its
    connection."""

    def __init__(self, address: str, max_idle: int) -> None:
        parts = urlsplit(address)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http:// address: {address!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.rpartition("@")[2]
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._fixed = f"Host: {self.host_header}\r\n"

    def _head(self, url: str, length: int, headers: Sequence[tuple[str, str]]) -> bytes:
        if url.startswith(self._origin) and url[len(self._origin) : len(self._origin) + 1] in ("/", "?"):
            target = url[len(self._origin) :]
            if target.startswith("?"):
                target = "/" + target
        else:
            parts = urlsplit(url)
            target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        if _SPACE.search(target):
            raise _Unsendable(f"cannot send this request: a space or control character in {target!r}")
        lines = [f"POST {target} HTTP/1.1\r\n", self._fixed]
        agent = False
        for name, value in headers:
            if _TOKEN.fullmatch(name) is None or _FORBIDDEN.search(value) is not None:
                raise _Unsendable(f"cannot send this request: illegal header {name!r}: {value!r}")
            agent = agent or name.lower() == "user-agent"
            lines.append(f"{name}: {value}\r\n")
        if not agent:
            lines.append(f"User-Agent: {USER_AGENT}\r\n")
        lines.append(f"Content-Length: {length}\r\n\r\n")
        try:  # header values and the query arrived as bytes read as Latin-1: the same bytes go out
            return "".join(lines).encode("latin-1")
        except UnicodeEncodeError as e:
            raise _Unsendable(f"cannot send this request: {e}") from None

    async def _connect(self) -> _Connection:
        """A new connection. trio connects (name resolution, happy eyeballs, TCP_NODELAY); the
        exchanges then use the plain non-blocking socket with trio's wait_readable / wait_writable:
        one wait per exchange instead of the three scheduler round trips of trio's socket methods."""
        stream = await trio.open_tcp_stream(self.host, self.port)
        sock = socket.socket(fileno=stream.socket.detach())
        sock.setblocking(False)
        return _Connection(sock)

    async def post(self, url: str, *, content: bytes, headers: Sequence[tuple[str, str]]) -> _Response:
        head = self._head(url, len(content), headers)
        while True:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            if reused and not conn.idle_and_clean():
                _close(conn.sock)
                continue
            keep = False
            try:
                response = await conn.exchange(head, content)
                keep = conn.reusable()
                return response
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, _ProtocolError):
                if reused and not conn.got_bytes:
                    continue  # a stale keep-alive connection: once more on a new one
                raise
            finally:
                if keep and len(self._idle) < self.max_idle:
                    self._idle.append(conn)
                else:
                    _close(conn.sock)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn.sock)
        await trio.lowlevel.checkpoint()


_Client = httpx2.AsyncClient | _Http1Client


# =================================================================================================
# The trio shell
# =================================================================================================


class _Target:
    """One target: its queue (in memory, or the spool), its workers and its client."""

    def __init__(
        self,
        config: TargetConfig,
        *,
        spool_dir: Path,
        clock: Callable[[], float],
        rng: random.Random,
        transport: httpx2.AsyncBaseTransport | None,
    ) -> None:
        self.config = config
        self.stats = TargetStats()
        self.rules = RetryRules(config.retry)
        self.clock = clock
        self.rng = rng
        self.transport = transport
        self.base_headers = _target_headers(config)
        self.spool: Spool | None = None
        self._send: trio.MemorySendChannel[RelayItem] | None = None
        self._receive: trio.MemoryReceiveChannel[RelayItem] | None = None
        if config.spool.enabled:
            self.spool = Spool(
                spool_dir,
                max_bytes=config.spool.max_bytes,
                segment_bytes=config.spool.segment_bytes,
                fsync=config.spool.fsync,
            )
        else:
            self._send, self._receive = trio.open_memory_channel[RelayItem](config.queue_size)
        self._lot = trio.lowlevel.ParkingLot()  # idle spool workers
        self._changed = trio.Event()  # set (and replaced) whenever the target may have become idle
        self._append_seq = 0  # spool appends so far
        self._synced_seq = 0  # appends covered by a finished fsync
        self._syncing: trio.Event | None = None
        self._commit_lock = trio.Lock()  # one commit (a worker thread) at a time
        self._stopped = False
        self._outstanding = 0  # in-memory items accepted and not yet finished (queued or in delivery)

    # -- accepting -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items waiting for a worker (not counting the ones being delivered)."""
        if self.spool is not None:
            return self.spool.unread_entries
        assert self._send is not None
        return self._send.statistics().current_buffer_used

    def submit(self, item: RelayItem, record: Callable[[], bytes]) -> None:
        if self.spool is None:
            assert self._send is not None
            try:
                self._send.send_nowait(item)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                self.stats.dropped += 1
            else:
                self._outstanding += 1
            return
        if self._stopped:
            self.stats.dropped += 1
            return
        try:
            accepted = self.spool.append(record())
        except (OSError, ValueError) as e:
            self.stats.dropped += 1
            self._error(f"spool append failed: {e}")
            return
        if accepted:
            self._append_seq += 1
            self._lot.unpark()
        else:
            self.stats.dropped += 1

    # -- durability (spool) ----------------------------------------------------------------------

    async def wait_synced(self) -> None:
        """Return once every record appended before the call is fsynced (group commit)."""
        await _sync_spools([self])

    async def commit(self) -> None:
        spool = self.spool
        if spool is None:
            return
        async with self._commit_lock:
            # The position first: every record before it is done, and every copy a requeue appended
            # for one of them was appended before it, so the sync below covers the copies too.
            position = spool.commit_position()
            await self.wait_synced()
            await trio.to_thread.run_sync(spool.commit, position)

    async def _maintain(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self.commit()
            except OSError as e:
                self._error(f"spool commit failed: {e}")

    # -- delivering ------------------------------------------------------------------------------

    def _error(self, message: str) -> None:
        self.stats.last_error = message
        self.stats.last_error_time = self.clock()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being delivered."""
        if self.spool is not None:
            return self.spool.pending_entries == 0 and self.stats.in_flight == 0
        return self._outstanding == 0

    async def wait_idle(self) -> None:
        while not self.idle:
            await self._changed.wait()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        limits = httpx2.Limits(max_connections=cfg.queue_workers, max_keepalive_connections=cfg.queue_workers)
        client_kwargs: dict[str, Any] = {"timeout": cfg.timeout, "limits": limits}
        if self.transport is not None:
            client_kwargs["transport"] = self.transport
        try:
            async with AsyncExitStack() as stack:
                client: _Client
                if self.transport is None and urlsplit(cfg.address).scheme == "http":
                    lean = _Http1Client(cfg.address, max_idle=cfg.queue_workers)
                    stack.push_async_callback(lean.aclose)
                    client = lean
                else:  # https, or a transport given by a test
                    client = await stack.enter_async_context(httpx2.AsyncClient(**client_kwargs))
                async with trio.open_nursery() as nursery:
                    for _ in range(cfg.queue_workers):
                        nursery.start_soon(self._worker, client)
                    if self.spool is not None:
                        nursery.start_soon(self._maintain, cfg.spool.commit_interval)
                    task_status.started()
        finally:
            self._stopped = True
            if self._send is not None:
                lost = self._send.statistics().current_buffer_used
                if lost:
                    self.stats.lost_on_shutdown += lost
                    log.warning("remote write %s: %d queued profiles lost on shutdown", cfg.name, lost)
            if self.spool is not None:
                with trio.CancelScope(shield=True):
                    try:
                        async with self._commit_lock:
                            await trio.to_thread.run_sync(self.spool.close)
                    except OSError:
                        log.exception("remote write %s: closing the spool failed", cfg.name)

    async def _worker(self, client: _Client) -> None:
        if self.spool is None:
            assert self._receive is not None
            async for item in self._receive:
                self.stats.in_flight += 1
                try:
                    await self._deliver(client, item)
                finally:
                    self.stats.in_flight -= 1
                    self._outstanding -= 1
                    self._notify()
        else:
            spool = self.spool
            while True:
                entry = spool.next_unread()
                if entry is None:
                    await self._lot.park()
                    continue
                await self._deliver_entry(client, spool, entry)

    async def _deliver_entry(self, client: _Client, spool: Spool, entry: SpoolEntry) -> None:
        self.stats.in_flight += 1
        done = False
        try:
            try:
                data = spool.cached(entry)
                if data is None:  # recovered at start, or appended past the memory cache
                    data = await trio.to_thread.run_sync(spool.read, entry)
                item = decode_item(data)
            except (OSError, ValueError) as e:
                log.error("remote write %s: unreadable spool record dropped: %s", self.config.name, e)
                self._error(f"unreadable spool record: {e}")
                self.stats.given_up += 1
                done = True
                return
            # A requeued copy starts its retries again: with a max-retries set, the record keeps its
            # place instead, so that max-retries still ends it.
            requeue_after = REQUEUE_AFTER_RETRIES if self.config.retry.max_retries is None else None
            outcome = await self._deliver(client, item, requeue_after=requeue_after)
            done = self._requeue(spool, entry, data) if outcome is _Outcome.REQUEUE else True
        finally:
            if done:
                spool.ack(entry)  # a no-op after a requeue (the spool finished it)
            else:  # cancelled (shutdown), or could not be requeued: delivered again later
                spool.release(entry)
            self.stats.in_flight -= 1
            self._notify()

    def _requeue(self, spool: Spool, entry: SpoolEntry, data: bytes) -> bool:
        """Append a record that keeps failing while the target takes others again at the spool's
        tail, so that the commit position (the oldest record not done) moves past it and its segment
        can go: one profile that a target keeps refusing with 5xx must not pin every later segment on
        disk. The copy is fsynced before the next commit, which is what makes the original's ack safe
        (a crash before that commit delivers the profile twice: at least once). False if the append
        failed (the original is then released and tried again)."""
        try:
            copy = spool.requeue(entry, data)
        except (OSError, ValueError) as e:
            self._error(f"spool append failed: {e}")
            return False
        if copy is None:  # refused by the spool's bound: counted as dropped by the spool
            self.stats.dropped += 1
            return True
        self._append_seq += 1
        self.stats.requeued += 1
        self._lot.unpark()
        return True

    async def _attempt(self, client: _Client, request: OutgoingRequest) -> tuple[int | None, str | None]:
        """One POST: (status or None for a network error / timeout, Retry-After). Raises _Unsendable
        when the request cannot be put on the wire at all (no retry can help)."""
        cfg, stats = self.config, self.stats
        start = trio.current_time()
        response: httpx2.Response | _Response | None = None
        error: str | None = None
        with trio.move_on_after(cfg.timeout) as scope:
            try:
                response = await client.post(request.url, content=request.body, headers=list(request.headers))
            except _Unsendable:
                raise
            except (
                httpx2.HTTPError,
                OSError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                _ProtocolError,
            ) as e:
                if isinstance(e, httpx2.LocalProtocolError | httpx2.UnsupportedProtocol):
                    raise _Unsendable(_describe(e)) from None
                error = _describe(e)
            except (httpx2.InvalidURL, UnicodeError, ValueError, TypeError) as e:  # httpx2 refused it
                raise _Unsendable(_describe(e)) from None
        if scope.cancelled_caught:
            error = f"timeout after {cfg.timeout:g}s"
        if response is None:
            self._error(f"POST {request.url}: {error}")
            return None, None
        code = str(response.status_code)
        hist = stats.response_time.get(code)
        if hist is None:
            hist = stats.response_time[code] = _Histogram()
        hist.observe(trio.current_time() - start)
        stats.sent_bytes += len(request.body)
        if not 200 <= response.status_code < 300:
            text = response.content[:LOGGED_BODY_BYTES].decode("utf-8", "replace")
            self._error(f"POST {request.url}: HTTP {response.status_code}: {text}")
        return response.status_code, response.headers.get("retry-after")

    async def _deliver(
        self, client: _Client, item: RelayItem, *, requeue_after: int | None = None
    ) -> _Outcome:
        """Send ``item`` until it is delivered, rejected or given up on (DONE), or, with
        ``requeue_after``, until that many retries failed while the target accepted other profiles
        (REQUEUE: the caller puts it back at the end of its spool; during an outage nothing is
        requeued, so a crash then finds no copies). Never raises but for cancellation: one odd profile
        must not stop a worker."""
        cfg, stats = self.config, self.stats
        try:
            request = build_request(cfg, item, base_headers=self.base_headers)
            attempt = 0
            failing_since = 0.0
            while True:
                status, retry_after = await self._attempt(client, request)
                decision = self.rules.decide(
                    attempt,
                    status,
                    retry_after,
                    now=trio.current_time(),
                    wall_now=self.clock(),
                    rand=self.rng.random(),
                )
                if decision.action is Action.SENT:
                    stats.sent += 1
                    stats.last_success_time = self.clock()
                    return _Outcome.DONE
                if decision.action is Action.REJECTED:
                    stats.permanent_failures += 1
                    log.warning(
                        "remote write %s: profile %s rejected, not retried: %s",
                        cfg.name,
                        item.profile_id,
                        stats.last_error,
                    )
                    return _Outcome.DONE
                if decision.action is Action.GIVE_UP:
                    stats.given_up += 1
                    log.warning(
                        "remote write %s: profile %s given up after %d retries: %s",
                        cfg.name,
                        item.profile_id,
                        attempt,
                        stats.last_error,
                    )
                    return _Outcome.DONE
                if attempt == 0:
                    failing_since = self.clock()
                stats.retries += 1
                attempt += 1
                await trio.sleep_until(decision.at)
                if (
                    requeue_after is not None
                    and attempt >= requeue_after
                    and stats.last_success_time is not None
                    and stats.last_success_time > failing_since
                ):  # the target takes other profiles meanwhile: this one is the problem, not the target
                    return _Outcome.REQUEUE
        except _Unsendable as e:
            self._error(f"cannot send profile {item.profile_id}: {e}")
            stats.permanent_failures += 1
            log.warning("remote write %s: profile %s cannot be sent: %s", cfg.name, item.profile_id, e)
        except Exception as e:  # a bug: logged with its traceback, the worker goes on
            log.exception("remote write %s: delivering profile %s failed", cfg.name, item.profile_id)
            self._error(f"delivering profile {item.profile_id} failed: {_describe(e)}")
            stats.permanent_failures += 1
        return _Outcome.DONE


class _Outcome(Enum):
    DONE = "done"  # delivered, rejected or given up on: the record is finished
    REQUEUE = "requeue"  # retried REQUEUE_AFTER_RETRIES times: back to the end of the spool


def _describe(error: BaseException) -> str:
    """``Type: message`` of an exception, or, when it says nothing by itself (an httpx2 ConnectError),
    ``Type (Cause: message)`` with the deepest cause that does: the refused certificate, the refused
    connection."""
    text = str(error)
    if text:
        return f"{type(error).__name__}: {text}"
    seen = {id(error)}
    current = error.__cause__ or error.__context__
    detail = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if str(current):
            detail = f"{type(current).__name__}: {current}"
        current = current.__cause__ or current.__context__
    return f"{type(error).__name__} ({detail})" if detail else type(error).__name__


async def _sync_spools(targets: Sequence[_Target]) -> None:
    """Return once every record appended to these targets' spools before the call is fsynced.

    Group commit: a target whose fsync is already running is waited for (it may cover the wanted
    appends); the others are claimed together and synced one after the other in a single worker
    thread (one thread hop, no nursery, however many spools). A target's ``_syncing`` event marks
    its claim, so one spool is never synced by two threads at once. Raises OSError if an fsync
    fails."""
    wanted = [(t, t._append_seq) for t in targets if t.spool is not None and t.spool.fsync]
    while True:
        behind = [t for t, seq in wanted if t._synced_seq < seq]
        if not behind:
            return
        running = next((t._syncing for t in behind if t._syncing is not None), None)
        if running is not None:
            await running.wait()
            continue
        done = trio.Event()
        covered = [t._append_seq for t in behind]
        spools = [t.spool for t in behind if t.spool is not None]
        for t in behind:
            t._syncing = done
        try:
            await trio.to_thread.run_sync(_sync_each, spools)
            for t, seq in zip(behind, covered, strict=True):
                t._synced_seq = max(t._synced_seq, seq)
        finally:
            for t in behind:
                t._syncing = None
            done.set()


def _sync_each(spools: Sequence[Spool]) -> None:
    for spool in spools:
        spool.sync()


class RemoteWriter:
    """Relays profiles to every configured target (see the module docstring)."""

    def __init__(
        self,
        config: RemoteWriteConfig,
        *,
        registry: CollectorRegistry,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """Spools live under ``data_dir / "remote-write" / <target name>`` and are opened (and recovered)
        here, so a bad spool directory fails at start. ``rng`` drives the backoff jitter; ``transport``
        replaces the network (tests)."""
        self.config = config
        self.clock = clock
        rng = rng if rng is not None else random.Random()
        targets = config.targets if config.active else ()
        self._targets: list[_Target] = [
            _Target(
                t,
                spool_dir=Path(data_dir) / "remote-write" / t.name,
                clock=clock,
                rng=random.Random(rng.random()),
                transport=transport,
            )
            for t in targets
        ]
        self._spooled = [t for t in self._targets if t.spool is not None]
        self.collector = RemoteWriteCollector(self)
        registry.register(self.collector)

    @property
    def disable_local_writes(self) -> bool:
        return self.config.active and self.config.disable_local_writes

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    @property
    def durable(self) -> bool:
        """True when some target spools: the HTTP handler should await wait_durable before its 200."""
        return any(t.config.spool.fsync for t in self._spooled)

    def submit(self, item: RelayItem) -> None:
        """Queue ``item`` for every target. Never blocks, never raises: a full in-memory queue drops the
        item and counts it; a spooled target appends it to its spool (one write, no fsync)."""
        record: bytes | None = None

        def encoded() -> bytes:
            nonlocal record
            if record is None:
                record = encode_item(item)
            return record

        for target in self._targets:
            try:
                target.submit(item, encoded)
            except Exception:  # submit must never raise into the ingest path
                target.stats.dropped += 1
                log.exception("remote write %s: submit failed", target.config.name)

    async def wait_durable(self) -> None:
        """Return once everything submitted so far is fsynced in every spool (one batched fsync per
        spool covers all the appends made before it started). Raises OSError if an fsync fails."""
        await _sync_spools(self._spooled)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every target's workers until cancelled. On the way out, each spool is synced, committed
        and closed; in-memory items still queued are lost (counted in ``status()``)."""
        async with trio.open_nursery() as nursery:
            for target in self._targets:
                await nursery.start(target.run)
            task_status.started()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every queue to empty (call before cancelling ``run``).
        Spooled items not delivered by then stay in the spool, which is committed here."""
        with trio.move_on_after(timeout):
            for target in self._targets:
                await target.wait_idle()
        with trio.CancelScope(shield=True):
            for target in self._spooled:
                try:
                    await target.commit()
                except OSError:
                    log.exception("remote write %s: spool commit failed", target.config.name)

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot: per target its queue, spool, counters, last error and last success."""
        targets = []
        for t in self._targets:
            cfg, s = t.config, t.stats
            spool: dict[str, Any] | None = None
            if t.spool is not None:
                st = t.spool.stats()
                spool = {
                    "entries": st.entries,
                    "bytes": st.bytes,
                    "disk_bytes": st.disk_bytes,
                    "max_bytes": cfg.spool.max_bytes,
                    "segments": st.segments,
                    "dropped": st.dropped,
                    "recovered": st.recovered,
                    "torn_tails": st.torn_tails,
                    "corrupt_records": st.corrupt_records,
                }
            targets.append(
                {
                    "name": cfg.name,
                    "address": cfg.address,
                    "queue": {"depth": t.pending, "capacity": cfg.queue_size},
                    "workers": cfg.queue_workers,
                    "in_flight": s.in_flight,
                    "spool": spool,
                    "sent": s.sent,
                    "sent_bytes": s.sent_bytes,
                    "dropped": s.dropped,
                    "retries": s.retries,
                    "permanent_failures": s.permanent_failures,
                    "given_up": s.given_up,
                    "requeued": s.requeued,
                    "lost_on_shutdown": s.lost_on_shutdown,
                    "last_error": s.last_error,
                    "last_error_time": s.last_error_time,
                    "last_success_time": s.last_success_time,
                }
            )
        return {
            "enabled": self.enabled,
            "disable_local_writes": self.disable_local_writes,
            "targets": targets,
        }

    def status_page(self, accept: str) -> tuple[bytes, str]:
        """``(body, content type)`` of ``/remote-write``: JSON when ``accept`` asks for it, else HTML."""
        status = self.status()
        if "application/json" in accept.lower():
            return json.dumps(status, indent=2).encode(), _JSON
        return _html_page(status, self.clock()).encode(), _HTML


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f"{stamp} ({max(0.0, now - ts):.0f}s ago)"


def _rows(cells: Iterable[tuple[str, object]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in cells)


def _html_page(status: Mapping[str, Any], now: float) -> str:
    sections = []
    if not status["targets"]:
        sections.append("<p>Remote write is not enabled.</p>")
    else:
        mode = "relay only (local writes disabled)" if status["disable_local_writes"] else "local writes on"
        sections.append(f"<p>{html.escape(mode)}</p>")
    for t in status["targets"]:
        spool = t["spool"]
        spool_text = (
            "off"
            if spool is None
            else f"{spool['entries']} entries, {spool['bytes']} / {spool['max_bytes']} bytes, "
            f"{spool['dropped']} dropped"
        )
        cells = [
            ("address", t["address"]),
            ("queue", f"{t['queue']['depth']} / {t['queue']['capacity']}"),
            ("workers", f"{t['workers']} ({t['in_flight']} delivering)"),
            ("spool", spool_text),
            ("sent", f"{t['sent']} profiles, {t['sent_bytes']} bytes"),
            ("dropped", t["dropped"]),
            ("retries", t["retries"]),
            ("permanent failures", t["permanent_failures"]),
            ("given up", t["given_up"]),
            ("requeued in the spool", t["requeued"]),
            ("last success", _when(t["last_success_time"], now)),
            ("last error", f"{t['last_error'] or 'none'} — {_when(t['last_error_time'], now)}"),
        ]
        sections.append(f"<h2>{html.escape(t['name'])}</h2>\n<table>{_rows(cells)}</table>")
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Remote write</title>"
        "<style>body{font-family:sans-serif}th{text-align:left;padding-right:1em}</style></head>"
        f"<body><h1>Remote write</h1>\n{body}\n</body></html>\n"
    )
