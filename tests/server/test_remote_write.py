# The remote-write shell against real targets on loopback: hypercorn (trio worker) serving a tiny ASGI
# app that records what arrives and can be told to fail, be slow, or be down. Time is trio's MockClock
# (with a small autojump threshold so loopback I/O is never mistaken for idleness); no assertion
# depends on wall-clock durations.
from __future__ import annotations

import base64
import gzip
import itertools
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx2
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from pyro_core.server import remote_write
from pyro_core.server.push import decode_push_request, encode_push_request
from pyro_core.server.remote_write import (
    PROFILE_ID_HEADER,
    RelayItem,
    RemoteWriteConfig,
    RemoteWriter,
    _Http1Client,
    _ProtocolError,
    encode_item,
)

NOW = 1_700_000_000.0


# -- a target ---------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    at: float  # trio time


@dataclass
class FakeTarget:
    """Records every request; answers from `script` (status, headers) first, then `default`.
    Like a pyro-core target, it stores a profile id once (`stored`) and counts duplicates."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: int = 200
    delay: float = 0.0
    require: dict[str, str] = field(default_factory=dict)  # headers a request must carry, else 401
    refuse: set[str] = field(default_factory=set)  # profile ids always answered with 500
    requests: list[Received] = field(default_factory=list)
    stored: dict[str, Received] = field(default_factory=dict)
    duplicates: int = 0
    url: str = ""

    async def app(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        req = Received(
            path=scope["path"],
            params=parse_qsl(scope["query_string"].decode(), keep_blank_values=True),
            headers=headers,
            body=body,
            at=trio.current_time(),
        )
        self.requests.append(req)
        if self.delay:
            await trio.sleep(self.delay)
        status, extra = self.script.pop(0) if self.script else (self.default, {})
        if any(headers.get(k.lower()) != v for k, v in self.require.items()):
            status, extra = 401, {}
        if headers.get(PROFILE_ID_HEADER.lower(), "") in self.refuse:
            status, extra = 500, {}
        if status == 200:
            pid = headers.get(PROFILE_ID_HEADER.lower(), "")
            if pid in self.stored:
                self.duplicates += 1
            else:
                self.stored[pid] = req
        answer = b"" if status == 200 else f"status {status} from the target".encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def serving(target: FakeTarget, port: int = 0) -> AsyncIterator[int]:
    """Serve `target` on 127.0.0.1:port until the block ends (then it is down: connections refused)."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        app: Any = target.app
        binds = await nursery.start(
            lambda task_status: hypercorn_serve(
                app, config, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        bound = int(binds[0].rsplit(":", 1)[1])
        target.url = f"http://127.0.0.1:{bound}"
        try:
            yield bound
        finally:
            stop.set()


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0.02))


def item(i: int = 0, *, name: str = "myapp.cpu{env=prod}", org_id: str | None = None) -> RelayItem:
    return RelayItem(
        kind="ingest",
        tenant=org_id or "anonymous",
        org_id=org_id,
        query=urlencode((("name", name), ("from", "1700000000"), ("until", "1700000010"), ("format", "folded"))),
        content_type="text/plain",
        content_encoding=None,
        body=f"main;work;f{i} {i + 1}\n".encode(),
        profile_id=uuid.uuid4().hex,
        received_at=NOW,
    )


def config(targets: dict[str, dict[str, Any]], **top: Any) -> RemoteWriteConfig:
    return RemoteWriteConfig.from_mapping({"enabled": True, "targets": targets, **top})


async def wait_until(predicate: Callable[[], bool], limit: float = 600.0) -> None:
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.05)


@asynccontextmanager
async def relaying(writer: RemoteWriter) -> AsyncIterator[RemoteWriter]:
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            yield writer
        finally:
            nursery.cancel_scope.cancel()


def target_status(writer: RemoteWriter, name: str) -> dict[str, Any]:
    return next(t for t in writer.status()["targets"] if t["name"] == name)


# -- metrics ----------------------------------------------------------------------------------------


def test_metrics_exposition_uses_pyroscopes_exact_names_and_labels(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    RemoteWriter(
        config({"my-cluster": {"address": "http://bar:4040", "queue-workers": 4}}),
        registry=registry,
        data_dir=tmp_path,
    )
    text = generate_latest(registry).decode()
    # The seed's example line (prometheus_client prints every value as a float: "0.0" for Go's "0").
    assert re.search(
        r'^pyroscope_remote_write_queue_pending\{target_address="http://bar:4040",target_name="my-cluster"\} 0(\.0)?$',
        text,
        re.M,
    )
    lines = set(text.splitlines())
    # Counters keep Go's names: no "_total" appended, in HELP, TYPE and samples alike.
    assert "# TYPE pyroscope_remote_write_queue_dropped counter" in lines
    assert (
        'pyroscope_remote_write_queue_dropped{target_address="http://bar:4040",target_name="my-cluster"} 0.0'
        in lines
    )
    assert "# TYPE pyroscope_remote_write_client_sent_bytes counter" in lines
    assert (
        'pyroscope_remote_write_client_sent_bytes{targetAddress="http://bar:4040",targetName="my-cluster"} 0.0'
        in lines
    )
    assert "# TYPE pyroscope_remote_write_client_response_time histogram" in lines
    assert (
        'pyroscope_remote_write_queue_workers_total{target_address="http://bar:4040",target_name="my-cluster"} 4.0'
        in lines
    )
    assert (
        'pyroscope_remote_write_queue_capacity{target_address="http://bar:4040",target_name="my-cluster"} 100.0'
        in lines
    )
    assert "_total_total" not in text
    assert "pyroscope_remote_write_queue_dropped_total" not in text


def test_metrics_count_what_happened(tmp_path: Path) -> None:
    target = FakeTarget(script=[(503, {}), (200, {}), (400, {})])
    registry = CollectorRegistry()

    async def main() -> None:
        async with serving(target):
            writer = RemoteWriter(
                config({"t": {"address": target.url, "queue-workers": 1, "min-backoff": "1s"}}),
                registry=registry,
                data_dir=tmp_path,
            )
            async with relaying(writer):
                for i in range(3):
                    writer.submit(item(i))
                await writer.drain(60)
            text = generate_latest(registry).decode()
            labels_camel = f'targetAddress="{target.url}",targetName="t"'
            labels = f'target_address="{target.url}",target_name="t"'
            sent = sum(len(r.body) for r in target.requests)
            assert f"pyroscope_remote_write_client_sent_bytes{{{labels_camel}}} {float(sent)}" in text
            assert (
                f'pyroscope_remote_write_client_response_time_count{{code="200",{labels_camel}}} 2.0' in text
            )
            assert (
                f'pyroscope_remote_write_client_response_time_count{{code="503",{labels_camel}}} 1.0' in text
            )
            assert (
                f'pyroscope_remote_write_client_response_time_count{{code="400",{labels_camel}}} 1.0' in text
            )
            assert f"pyro_core_remote_write_sent_total{{{labels}}} 2.0" in text
            assert f"pyro_core_remote_write_retries_total{{{labels}}} 1.0" in text
            assert f"pyro_core_remote_write_permanent_failures_total{{{labels}}} 1.0" in text

    run(main)


# -- what arrives -----------------------------------------------------------------------------------


def test_headers_auth_tenant_and_tags_arrive_as_configured(tmp_path: Path) -> None:
    basic = "Basic " + base64.b64encode(b"u:p").decode()
    bar = FakeTarget(require={"Authorization": "Bearer tok", "X-Extra-Header": "Value"})
    baz = FakeTarget(require={"Authorization": basic, "X-Scope-OrgID": "t1"})

    async def main() -> None:
        async with serving(bar), serving(baz):
            cfg = config(
                {
                    "bar": {
                        "address": bar.url,
                        "auth-token": "tok",
                        "tags": {"foo": "bar", "env": "staging"},
                        "headers": {"X-Extra-Header": "Value", "Content-Type": "wrong/type"},
                    },
                    "baz": {
                        "address": baz.url + "/",
                        "auth-token": "ignored",
                        "basic-auth-user": "u",
                        "basic-auth-password": "p",
                        "tenant-id": "t1",
                        "headers": {"X-Scope-OrgID": "overridden"},
                    },
                }
            )
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            sent = [item(i, org_id="client-org") for i in range(5)]
            async with relaying(writer):
                for it in sent:
                    writer.submit(it)
                await writer.drain(60)
            for target in (bar, baz):
                assert sorted(target.stored) == sorted(it.profile_id for it in sent)
                assert target.duplicates == 0
            for it in sent:
                got = bar.stored[it.profile_id]
                assert got.path == "/ingest"
                params = dict(got.params)
                assert params["name"] == "myapp.cpu{env=staging,foo=bar}"  # tags merged, overriding
                assert [k for k, _ in got.params] == ["name", "from", "until", "format"]
                assert got.body == it.body
                assert got.headers["content-type"] == "text/plain"  # always the profile's own
                assert got.headers["x-scope-orgid"] == "client-org"  # forwarded when no tenant-id
                other = baz.stored[it.profile_id]
                assert dict(other.params)["name"] == "myapp.cpu{env=prod}"
                assert other.headers["x-scope-orgid"] == "t1"

    run(main)


def test_push_profiles_go_to_the_push_endpoint_with_the_targets_tags(tmp_path: Path) -> None:
    target = FakeTarget()
    body = encode_push_request(
        [({"__name__": "process_cpu", "service_name": "svc", "env": "prod"}, [b"pprof-bytes"])], compress=True
    )
    pushed = RelayItem(
        kind="push",
        tenant="anonymous",
        org_id=None,
        query="",
        content_type="application/proto",
        content_encoding="gzip",
        body=body,
        profile_id=uuid.uuid4().hex,
        received_at=NOW,
    )

    async def main() -> None:
        async with serving(target):
            cfg = config({"t": {"address": target.url, "tags": {"env": "relayed", "cluster": "c1"}}})
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with relaying(writer):
                writer.submit(pushed)
                await writer.drain(60)
        (got,) = target.requests
        assert got.path == "/push.v1.PusherService/Push"
        assert got.headers["content-encoding"] == "gzip"
        assert gzip.decompress(got.body)  # still gzipped
        (series,) = decode_push_request(got.body, "application/proto", "gzip")
        assert series.label_dict() == {
            "__name__": "process_cpu",
            "service_name": "svc",
            "env": "relayed",
            "cluster": "c1",
        }
        assert series.samples[0].raw_profile == b"pprof-bytes"

    run(main)


# -- retries ----------------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(tmp_path: Path) -> None:
    target = FakeTarget(script=[(429, {"Retry-After": "30"})])

    async def main() -> None:
        async with serving(target):
            cfg = config({"t": {"address": target.url, "min-backoff": "10ms", "max-backoff": "100ms"}})
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with relaying(writer):
                writer.submit(item())
                await writer.drain(600)
        first, second = target.requests
        assert 30.0 <= second.at - first.at < 31.0  # virtual time: the backoff alone would be <= 100ms
        assert len(target.stored) == 1
        assert target_status(writer, "t")["retries"] == 1

    run(main)


def test_retry_after_as_an_http_date_is_honoured(tmp_path: Path) -> None:
    target = FakeTarget(script=[(503, {"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"})])  # NOW + 20 s

    async def main() -> None:
        async with serving(target):
            cfg = config({"t": {"address": target.url, "min-backoff": "10ms", "max-backoff": "100ms"}})
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path, clock=lambda: NOW)
            async with relaying(writer):
                writer.submit(item())
                await writer.drain(600)
        first, second = target.requests
        assert 20.0 <= second.at - first.at < 21.0

    run(main)


def test_400_is_a_permanent_failure_and_not_retried(tmp_path: Path) -> None:
    target = FakeTarget(default=400)

    async def main() -> None:
        async with serving(target):
            writer = RemoteWriter(
                config({"t": {"address": target.url}}), registry=CollectorRegistry(), data_dir=tmp_path
            )
            async with relaying(writer):
                writer.submit(item())
                await writer.drain(600)
        assert len(target.requests) == 1
        st = target_status(writer, "t")
        assert (st["permanent_failures"], st["retries"], st["sent"]) == (1, 0, 0)
        assert "HTTP 400: status 400 from the target" in st["last_error"]

    run(main)


def test_5xx_is_retried_until_max_retries_then_given_up(tmp_path: Path) -> None:
    target = FakeTarget(default=500)

    async def main() -> None:
        async with serving(target):
            cfg = config({"t": {"address": target.url, "max-retries": 3, "max-backoff": "1s"}})
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with relaying(writer):
                writer.submit(item())
                await writer.drain(600)
        assert len(target.requests) == 4
        st = target_status(writer, "t")
        assert (st["retries"], st["given_up"]) == (3, 1)

    run(main)


def test_retry_budget_spreads_retries_of_an_outage(tmp_path: Path) -> None:
    # 20 profiles fail at once; the budget (2 retries/s, burst 1) spaces their retries >= 0.5 s apart.
    target = FakeTarget(script=[(503, {})] * 20)

    async def main() -> None:
        async with serving(target):
            cfg = config(
                {
                    "t": {
                        "address": target.url,
                        "queue-workers": 20,
                        "min-backoff": "1ms",
                        "max-backoff": "1ms",
                        "retry-budget": 2,
                        "retry-burst": 1,
                    }
                }
            )
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with relaying(writer):
                for i in range(20):
                    writer.submit(item(i))
                await writer.drain(600)
        retries = sorted(r.at for r in target.requests[20:])
        assert len(retries) == 20 and len(target.stored) == 20
        assert all(b - a >= 0.5 - 1e-6 for a, b in itertools.pairwise(retries))

    run(main)


# -- outages ----------------------------------------------------------------------------------------


def test_target_down_then_back_with_spool_loses_nothing(tmp_path: Path) -> None:
    target = FakeTarget()

    async def main() -> None:
        async with serving(target) as port:
            url = target.url
        # The target is down now (connections refused).
        cfg = config(
            {"t": {"address": url, "queue-workers": 4, "queue-size": 5, "max-backoff": "2s", "spool": True}}
        )
        writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
        sent = [item(i) for i in range(50)]
        async with relaying(writer):
            for it in sent:
                writer.submit(it)  # far more than queue-size: the spool takes them all
            await writer.wait_durable()
            await trio.sleep(30)
            st = target_status(writer, "t")
            assert st["dropped"] == 0 and st["retries"] > 0 and st["spool"]["entries"] == 50
            async with serving(target, port):
                await writer.drain(600)
                assert target_status(writer, "t")["spool"]["entries"] == 0
        assert sorted(target.stored) == sorted(it.profile_id for it in sent)
        assert target_status(writer, "t")["dropped"] == 0

    run(main)


def test_target_down_without_spool_counts_drops_exactly_and_submit_never_blocks(tmp_path: Path) -> None:
    target = FakeTarget()

    async def main() -> None:
        async with serving(target) as port:
            url = target.url
        cfg = config({"t": {"address": url, "queue-workers": 2, "queue-size": 5, "max-retries": "unlimited"}})
        registry = CollectorRegistry()
        writer = RemoteWriter(cfg, registry=registry, data_dir=tmp_path)
        sent = [item(i) for i in range(40)]
        async with relaying(writer):
            await trio.sleep(0)
            for it in sent[:2]:
                writer.submit(it)
            await trio.sleep(1)  # the two workers now hold one profile each, retrying
            start = trio.current_time()
            for it in sent[2:]:
                writer.submit(it)  # synchronous: no checkpoint, so it cannot have waited
            assert trio.current_time() == start
            st = target_status(writer, "t")
            assert st["dropped"] == 40 - 2 - 5 and st["queue"]["depth"] == 5
            text = generate_latest(registry).decode()
            assert (
                f'pyroscope_remote_write_queue_dropped{{target_address="{url}",target_name="t"}} 33.0' in text
            )
            async with serving(target, port):
                await writer.drain(600)
        assert len(target.stored) == 7
        assert set(target.stored) == {it.profile_id for it in sent[:7]}

    run(main)


def test_slow_target_times_out_and_is_retried(tmp_path: Path) -> None:
    target = FakeTarget(delay=5.0)

    async def main() -> None:
        async with serving(target):
            cfg = config(
                {"t": {"address": target.url, "timeout": "1s", "max-retries": 2, "min-backoff": "1s"}}
            )
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with relaying(writer):
                writer.submit(item())
                await writer.drain(600)
        st = target_status(writer, "t")
        assert (st["retries"], st["given_up"]) == (2, 1)
        assert "timeout" in st["last_error"]

    run(main)


def test_spooled_profiles_survive_a_relay_restart(tmp_path: Path) -> None:
    target = FakeTarget()

    async def main() -> None:
        async with serving(target) as port:
            url = target.url
        cfg = config({"t": {"address": url, "spool": {"max-bytes": "1MiB"}}})
        sent = [item(i) for i in range(10)]
        first = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
        async with relaying(first):
            for it in sent:
                first.submit(it)
            await first.wait_durable()
            await trio.sleep(5)
        # A new relay process over the same data directory delivers them.
        second = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
        assert target_status(second, "t")["spool"]["recovered"] == 10
        async with serving(target, port), relaying(second):
            await second.drain(600)
        assert sorted(target.stored) == sorted(it.profile_id for it in sent)

    run(main)


def test_relay_crash_with_a_spool_loses_nothing_and_duplicates_nothing_committed(tmp_path: Path) -> None:
    # Ten profiles are delivered and committed; the target goes down; ten more are submitted and the
    # relay "dies" (its spool is never synced, committed or closed: kill -9). A new relay over the same
    # data directory recovers exactly the ten undelivered ones and delivers them when the target is back.
    target = FakeTarget()
    sent = [item(i) for i in range(20)]

    async def main() -> None:
        async with serving(target) as port:
            url = target.url
            cfg = config({"t": {"address": url, "queue-workers": 2, "max-backoff": "1s", "spool": True}})
            first = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with trio.open_nursery() as nursery:
                await nursery.start(first.run)
                for it in sent[:10]:
                    first.submit(it)
                await first.drain(600)
                nursery.cancel_scope.cancel()
                dying = first._targets[0].spool
                assert dying is not None
                dying.close = lambda: None  # type: ignore[method-assign]  # the process is gone
        first = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)  # target down now
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            for it in sent[10:]:
                first.submit(it)
            await trio.sleep(5)  # workers retrying against the dead target
            assert target_status(first, "t")["retries"] > 0
            dying = first._targets[0].spool
            assert dying is not None
            dying.close = lambda: None  # type: ignore[method-assign]
            nursery.cancel_scope.cancel()
        second = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
        assert target_status(second, "t")["spool"]["recovered"] == 10
        async with serving(target, port), relaying(second):
            await second.drain(600)
        assert sorted(target.stored) == sorted(it.profile_id for it in sent)
        assert target.duplicates == 0

    run(main)


def test_a_profile_the_target_keeps_refusing_goes_to_the_spools_end_and_does_not_pin_its_segments(
    tmp_path: Path,
) -> None:
    poison, *good = [item(i) for i in range(12)]
    target = FakeTarget(refuse={poison.profile_id})

    async def main() -> None:
        async with serving(target):
            spool = {"segment-bytes": 600, "commit-interval": "100ms"}  # about two records a segment
            retry = {"min-backoff": "10ms", "max-backoff": "50ms"}
            cfg = config({"t": {"address": target.url, "queue-workers": 2, **retry, "spool": spool}})
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with relaying(writer):
                writer.submit(poison)
                for it in good:
                    writer.submit(it)
                await wait_until(lambda: len(target.stored) == len(good), 60)
                # The target takes the others, so the refused one goes back to the end of the
                # spool: the segments behind it are committed and deleted. Once nothing else is
                # delivered, it stays where it is (no copies while the target takes nothing).
                await wait_until(lambda: target_status(writer, "t")["requeued"] >= 1, 60)
                spool_dir = tmp_path / "remote-write" / "t"
                await wait_until(lambda: len(list(spool_dir.glob("*.seg"))) <= 2, 60)
                status = target_status(writer, "t")
                assert status["spool"]["entries"] == 1  # only the refused profile, never dropped
                assert status["permanent_failures"] == status["given_up"] == 0
        assert poison.profile_id not in target.stored and target.duplicates == 0

    run(main)


def test_a_profile_no_client_can_send_is_a_permanent_failure_and_the_worker_goes_on(tmp_path: Path) -> None:
    # An ingest client may send a header value outside ASCII (the relay reads it as Latin-1); httpx2,
    # which serves https:// targets, refuses to encode it. That profile is a permanent failure; the
    # next one is delivered by the same single worker.
    seen: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get(PROFILE_ID_HEADER, ""))
        return httpx2.Response(200)

    async def main() -> None:
        cfg = config({"t": {"address": "https://target.example", "queue-workers": 1}})
        writer = RemoteWriter(
            cfg, registry=CollectorRegistry(), data_dir=tmp_path, transport=httpx2.MockTransport(answer)
        )
        odd, fine = item(0, org_id="t\xe9"), item(1)
        async with relaying(writer):
            writer.submit(odd)
            writer.submit(fine)
            await wait_until(lambda: target_status(writer, "t")["sent"] == 1, 60)
        status = target_status(writer, "t")
        assert (status["permanent_failures"], status["retries"]) == (1, 0)
        assert odd.profile_id in status["last_error"] and seen == [fine.profile_id]

    run(main)


def test_with_max_retries_set_a_refused_profile_keeps_its_place_and_is_given_up(tmp_path: Path) -> None:
    poison, *good = [item(i) for i in range(6)]
    target = FakeTarget(refuse={poison.profile_id})

    async def main() -> None:
        async with serving(target):
            retry = {"min-backoff": "10ms", "max-backoff": "20ms", "max-retries": 12}
            cfg = config({"t": {"address": target.url, "queue-workers": 2, **retry, "spool": True}})
            writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
            async with relaying(writer):
                writer.submit(poison)
                for it in good:
                    writer.submit(it)
                await wait_until(lambda: target_status(writer, "t")["given_up"] == 1, 60)
                status = target_status(writer, "t")
                assert (status["requeued"], status["retries"], status["sent"]) == (0, 12, len(good))
                assert status["spool"]["entries"] == 0

    run(main)


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    cfg = config({"t": {"address": "http://127.0.0.1:1", "spool": {"max-bytes": 1000, "segment-bytes": 400}}})
    registry = CollectorRegistry()
    writer = RemoteWriter(cfg, registry=registry, data_dir=tmp_path)
    sent = [item(i) for i in range(30)]
    for it in sent:
        writer.submit(it)
    st = target_status(writer, "t")
    size = len(encode_item(sent[0]))
    kept = 1000 // size
    assert st["spool"]["entries"] == kept and st["spool"]["dropped"] == 30 - kept and st["dropped"] == 0
    text = generate_latest(registry).decode()
    assert (
        'pyro_core_remote_write_spool_dropped_total{target_address="http://127.0.0.1:1",target_name="t"} '
        + f"{float(30 - kept)}"
        in text
    )
    assert (
        'pyro_core_remote_write_spool_entries{target_address="http://127.0.0.1:1",target_name="t"} '
        + f"{float(kept)}"
        in text
    )


def test_wait_durable_batches_fsyncs(tmp_path: Path, monkeypatch: Any) -> None:
    calls = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)  # the spool's fsyncs (and any other's meanwhile)
    cfg = config({"t": {"address": "http://127.0.0.1:1", "spool": True}})
    writer = RemoteWriter(cfg, registry=CollectorRegistry(), data_dir=tmp_path)
    calls.clear()

    async def main() -> None:
        async def handler(i: int) -> None:
            writer.submit(item(i))
            await writer.wait_durable()

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(handler, i)

    run(main)
    assert 1 <= len(calls) <= 4  # 50 concurrent requests, a handful of fsyncs (plus the dir once)


# -- status -----------------------------------------------------------------------------------------


def test_status_page_is_json_or_html(tmp_path: Path) -> None:
    writer = RemoteWriter(
        config({"a<b": {"address": "http://bar:4040", "spool": True}}),
        registry=CollectorRegistry(),
        data_dir=tmp_path,
    )
    body, ctype = writer.status_page("application/json")
    assert ctype == "application/json"
    import json

    (t,) = json.loads(body)["targets"]
    assert t["name"] == "a<b" and t["queue"] == {"depth": 0, "capacity": 100} and t["spool"]["entries"] == 0
    page, ctype = writer.status_page("text/html")
    assert ctype.startswith("text/html") and b"a&lt;b" in page and b"a<b" not in page


def test_disabled_remote_write_accepts_and_ignores(tmp_path: Path) -> None:
    writer = RemoteWriter(RemoteWriteConfig(), registry=CollectorRegistry(), data_dir=tmp_path)
    writer.submit(item())
    assert not writer.enabled and not writer.disable_local_writes
    assert writer.status()["targets"] == []


# -- the HTTP/1.1 client of http:// targets (httptools parses the answers) -------------------------------


async def raw_server(
    nursery: trio.Nursery, answers: list[bytes], requests: list[bytes], *, close_after: int | None = None
) -> int:
    """A TCP server on 127.0.0.1 that reads each request (head + Content-Length body) and writes the
    next of ``answers``; it closes a connection after ``close_after`` answers on it."""
    listeners = await nursery.start(trio.serve_tcp, lambda s: _raw_conn(s, answers, requests, close_after), 0)
    return int(listeners[0].socket.getsockname()[1])


async def _raw_conn(
    stream: trio.SocketStream, answers: list[bytes], requests: list[bytes], close_after: int | None
) -> None:
    buf = b""
    served = 0
    async with stream:
        try:
            while close_after is None or served < close_after:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                while len(buf) < length:
                    buf += await stream.receive_some(65536)
                requests.append(head + b"\r\n\r\n" + buf[:length])
                buf = buf[length:]
                await stream.send_all(answers.pop(0))
                served += 1
        except trio.BrokenResourceError:  # the client reset the connection (it gave up on an answer)
            return


def test_lean_client_reads_every_response_framing_and_reuses_connections() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        answers = [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
            b"3;ext=1\r\nbus\r\n1\r\ny\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ]
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, answers, requests)
            client = _Http1Client(f"http://127.0.0.1:{port}/prefix", max_idle=4)
            url = f"http://127.0.0.1:{port}/prefix/ingest?name=a%7Bb%3Dc%7D"
            r1 = await client.post(url, content=b"main 1\n", headers=[("X-Scope-OrgID", "t1")])
            r2 = await client.post(url, content=b"", headers=[])
            r3 = await client.post(url, content=b"x" * 100_000, headers=[])  # head and body sent apart
            assert (r1.status_code, r1.content) == (200, b"ok")
            assert (r2.status_code, r2.content, r2.headers["retry-after"]) == (503, b"busy", "7")
            assert (r3.status_code, r3.content) == (200, b"")
            assert len(client._idle) == 1  # one connection served all three
            first = requests[0].decode()
            assert first.startswith("POST /prefix/ingest?name=a%7Bb%3Dc%7D HTTP/1.1\r\n")
            assert f"Host: 127.0.0.1:{port}\r\n" in first and "X-Scope-OrgID: t1\r\n" in first
            assert "User-Agent: pyro-core-remote-write\r\n" in first
            assert first.endswith("Content-Length: 7\r\n\r\nmain 1\n")
            assert len(requests[2]) > 100_000
            with pytest.raises(_ProtocolError):
                await client.post(url, content=b"", headers=[("X-Evil", "a\r\nInjected: 1")])
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_keeps_no_connection_that_sent_more_than_the_answer_nor_one_that_upgrades() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        answers = [
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok,  # an interim response, then 200
            ok + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # an answer nobody asked for
            ok + b"garbage",  # bytes that are not HTTP after the answer
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        ]
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, answers, requests)
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            url = f"http://127.0.0.1:{port}/ingest"
            r = await client.post(url, content=b"a", headers=[])
            assert (r.status_code, r.content, "link" in r.headers) == (200, b"ok", False)
            assert len(client._idle) == 1
            for _ in range(2):  # the answer stands; the connection does not
                r = await client.post(url, content=b"b", headers=[])
                assert (r.status_code, r.content) == (200, b"ok") and client._idle == []
            with pytest.raises(_ProtocolError, match="switched protocols"):
                await client.post(url, content=b"c", headers=[])
            assert client._idle == [] and len(requests) == 4
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_sends_a_body_larger_than_the_socket_buffers_whole() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        body = bytes(range(256)) * (32 * 1024)  # 8 MiB: the kernel takes it in pieces
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], requests)
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            r = await client.post(f"http://127.0.0.1:{port}/ingest", content=body, headers=[])
            assert r.status_code == 200 and requests[0].endswith(b"\r\n\r\n" + body)
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_never_takes_a_late_stray_answer_for_the_next_requests_own() -> None:
    async def main() -> None:
        got: list[bytes] = []

        async def strays(stream: trio.SocketStream) -> None:
            with suppress(trio.BrokenResourceError):  # the client drops the connection with the stray
                await _answer_with_strays(stream)

        async def _answer_with_strays(stream: trio.SocketStream) -> None:
            async with stream:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                    while len(buf) < length:
                        buf += await stream.receive_some(65536)
                    body, buf = buf[:length], buf[length:]
                    got.append(body)
                    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    if body == b"first":  # then, later, an answer nobody asked for
                        await trio.sleep(0.05)
                        await stream.send_all(b"HTTP/1.1 400 Stale\r\nContent-Length: 5\r\n\r\nstale")

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, strays, 0)
            port = int(listeners[0].socket.getsockname()[1])
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            url = f"http://127.0.0.1:{port}/ingest"
            assert (await client.post(url, content=b"first", headers=[])).status_code == 200
            await trio.sleep(0.2)  # the stray answer is in the kept connection's buffer now
            r = await client.post(url, content=b"second", headers=[])
            assert (r.status_code, r.content) == (200, b"ok")  # on a new connection, its own answer
            assert got == [b"first", b"second"]
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(main)


@pytest.mark.parametrize("closes", [True, False], ids=["then-closes", "keeps-it-open"])
def test_lean_client_reads_a_refusal_sent_before_the_body_was_taken(closes: bool) -> None:
    # Closing with most of the body unread makes the client's send fail (reset or broken pipe); a
    # target that keeps the connection open and reads nothing more leaves the send blocked. Either
    # way the 413 is the answer, not a network error to retry.
    async def main() -> None:
        async def refuses(stream: trio.SocketStream) -> None:
            async with stream:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    buf += await stream.receive_some(65536)
                close = b"Connection: close\r\n" if closes else b""
                await stream.send_all(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n" + close + b"\r\nbig")
                if closes:
                    await trio.sleep(0.2)
                else:
                    await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, refuses, 0)
            port = int(listeners[0].socket.getsockname()[1])
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            with trio.fail_after(30):  # the caller's timeout would otherwise end it as a network error
                r = await client.post(f"http://127.0.0.1:{port}/ingest", content=b"x" * (64 << 20), headers=[])
            assert (r.status_code, r.content) == (413, b"big") and client._idle == []
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_keeps_only_the_start_of_a_long_answer_and_reuses_the_connection() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        long = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"y" * 300_000
        answers = [long, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, answers, requests)
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            url = f"http://127.0.0.1:{port}/ingest"
            r = await client.post(url, content=b"a", headers=[])
            assert r.status_code == 200 and r.content == b"y" * remote_write._KEPT_RESPONSE_BODY
            assert len(client._idle) == 1
            assert (await client.post(url, content=b"b", headers=[])).status_code == 200
            assert len(requests) == 2 and len(client._idle) == 1
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_retries_a_stale_keep_alive_connection_once_and_reads_to_close() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        answers = [ok, ok, b"HTTP/1.0 202 Accepted\r\n\r\nuntil the end"]
        async with trio.open_nursery() as nursery:
            # The server closes every connection after one answer, without saying so.
            port = await raw_server(nursery, answers, requests, close_after=1)
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            url = f"http://127.0.0.1:{port}/ingest"
            assert (await client.post(url, content=b"a", headers=[])).status_code == 200
            await trio.sleep(0.1)  # the server has closed the kept connection by now
            assert (await client.post(url, content=b"b", headers=[])).status_code == 200
            r = await client.post(url, content=b"c", headers=[])
            assert (r.status_code, r.content) == (202, b"until the end")
            assert client._idle == []  # a body delimited by the close is not reusable
            assert [q.rsplit(b"\r\n\r\n", 1)[1] for q in requests] == [b"a", b"b", b"c"]
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_refuses_forbidden_header_characters_before_connecting() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, [], requests)
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            url = f"http://127.0.0.1:{port}/ingest"
            for bad in (
                ("X-Evil", "a\r\nInjected: 1"),
                ("X-Evil", "a\nb"),
                ("X-Evil", "a\x00b"),
                ("A:B", "v"),
            ):
                with pytest.raises(_ProtocolError):
                    await client.post(url, content=b"x", headers=[bad])
            with pytest.raises(_ProtocolError):
                await client.post(url, content=b"x", headers=[("X-Evil\r\nInjected", "v")])
            assert requests == [] and client._idle == []
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_caps_the_response_head_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_write, "_MAX_RESPONSE_BODY", 10)

    async def main() -> None:
        requests: list[bytes] = []
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"  # at the cap: fine
        answers = [
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",  # declared too large: not read at all
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n67890\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\n0123456789A",  # delimited by the close
            ok,
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            b"SMTP ready\r\n\r\n",
        ]
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, answers, requests)
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            url = f"http://127.0.0.1:{port}/ingest"
            with pytest.raises(_ProtocolError, match="head too large"):
                await client.post(url, content=b"x", headers=[])
            assert client._idle == []  # a failed exchange closes its connection
            # A body over the cap: the status stands (a 2xx is a delivery, not a retry), the body is
            # cut where the cap was crossed, and the connection is closed instead of read on.
            for content in (b"", b"012345", b""):
                r = await client.post(url, content=b"x", headers=[])
                assert (r.status_code, r.content) == (200, content) and client._idle == []
            assert (await client.post(url, content=b"x", headers=[])).content == b"0123456789"
            for _ in range(3):
                with pytest.raises(_ProtocolError):
                    await client.post(url, content=b"x", headers=[])
            assert len(requests) == 8  # no retry: each failure had response bytes
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(main)


def test_lean_client_does_not_retry_once_response_bytes_arrived_nor_keep_a_closing_connection() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        answers = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Le",  # then the server closes
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        ]
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, answers, requests, close_after=2)
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            url = f"http://127.0.0.1:{port}/ingest"
            assert (await client.post(url, content=b"a", headers=[])).status_code == 200
            assert len(client._idle) == 1
            with pytest.raises(_ProtocolError):  # reused, but part of a response came: not stale
                await client.post(url, content=b"b", headers=[])
            assert len(requests) == 2 and client._idle == []
            assert (await client.post(url, content=b"c", headers=[])).status_code == 204
            assert client._idle == []  # the target said it closes
            nursery.cancel_scope.cancel()

    run(main)


def test_a_cancelled_exchange_closes_its_connection() -> None:
    async def main() -> None:
        closed = trio.Event()

        async def stalls(stream: trio.SocketStream) -> None:
            async with stream:
                buf = b""
                while b"\r\n\r\nx" not in buf:
                    buf += await stream.receive_some(65536)
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")  # 3 bytes short
                try:
                    while await stream.receive_some(65536):
                        pass
                except trio.BrokenResourceError:
                    pass
                closed.set()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, stalls, 0)
            port = int(listeners[0].socket.getsockname()[1])
            client = _Http1Client(f"http://127.0.0.1:{port}", max_idle=4)
            with trio.move_on_after(5) as scope:
                await client.post(f"http://127.0.0.1:{port}/ingest", content=b"x", headers=[])
            assert scope.cancelled_caught and client._idle == []
            with trio.fail_after(5):
                await closed.wait()
            nursery.cancel_scope.cancel()

    run(main)


# -- a hostile target: whatever it answers, the exchange ends in a response or a clean failure ------------

_ANSWER_PIECES = [
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 503 Busy\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 99999999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"X-\xff\xfe: \x80\r\n",
    b"\r\n",
    b"abc",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"\x00\x01\x02",
    b"\n",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=st.lists(st.sampled_from(_ANSWER_PIECES) | st.binary(max_size=40), max_size=12), close=st.booleans())
def test_any_answer_ends_the_exchange_in_a_response_or_a_clean_failure(answer: list[bytes], close: bool) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        conn = remote_write._Connection(ours)
        theirs.sendall(b"".join(answer))
        if close:
            theirs.shutdown(socket.SHUT_WR)
        try:
            with trio.move_on_after(0.2):  # an answer that never completes waits for the caller's timeout
                try:
                    response = await conn.exchange(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n", b"x")
                except (_ProtocolError, OSError):
                    assert not conn.reusable()
                else:
                    assert 200 <= response.status_code <= 999  # a final answer: 1xx are skipped
                    assert isinstance(response.content, bytes)
        finally:
            ours.close()
            theirs.close()

    trio.run(main)
