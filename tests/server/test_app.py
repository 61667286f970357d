# The ASGI app driven directly: hand-built scope/receive/send under trio, a real Storage in tmp_path.
from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from pyro_core.server.app import make_app
from pyro_core.server.pprof import StackSample, encode_multipart, encode_profile
from pyro_core.server.push import encode_push_request
from pyro_core.server.storage import Storage

NOW = 1_700_000_000.0
NS = 10_000_000  # one 10 ms cpu tick in nanoseconds
RANGE = "from=1699999000&until=1700000100"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    s = Storage(tmp_path / "data", fsync=False).open()
    yield s
    s.close()


def call(
    app: Any,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunk: int | None = None,
) -> tuple[int, dict[str, str], bytes]:
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            data = chunks.pop(0)
            return {"type": "http.request", "body": data, "more_body": bool(chunks)}
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    trio.run(app, scope, receive, send)
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], out_headers, b"".join(m.get("body", b"") for m in bodies)


def make(storage: Storage, **kw: Any) -> Any:
    return make_app(storage, clock=lambda: NOW, **kw)


def ingest(
    app: Any, name: str, body: bytes, *, query: str = "", headers: dict[str, str] | None = None
) -> int:
    status, _, out = call(app, "POST", "/ingest", f"name={name}&from=1700000000{query}", headers, body)
    if status == 200:
        assert out == b""
    return status


def render(app: Any, query: str, headers: dict[str, str] | None = None, extra: str = "") -> Any:
    status, hdrs, body = call(app, "GET", "/render", f"query={query}&{RANGE}{extra}", headers)
    assert status == 200, body
    assert hdrs["content-type"] == "application/json"
    return json.loads(body)


def test_folded_ingest_then_render_exact_flamebearer(storage: Storage) -> None:
    app = make(storage)
    assert ingest(app, "myapp.cpu", b"a;b 3\na;c 2\n", query="&spyName=gospy&sampleRate=99") == 200
    doc = render(app, "myapp.cpu")
    assert doc == {
        "version": 1,
        "flamebearer": {
            "names": ["total", "a", "b", "c"],
            "levels": [[0, 5, 0, 0], [0, 5, 0, 1], [0, 3, 3, 2, 0, 2, 2, 3]],
            "numTicks": 5,
            "maxSelf": 3,
        },
        "metadata": {
            "format": "single",
            "spyName": "gospy",
            "sampleRate": 99,
            "units": "samples",
            "name": "myapp.cpu",
            "appName": "myapp.cpu",
            "startTime": 1699999000,
            "endTime": 1700000100,
            "query": "myapp.cpu",
            "maxNodes": 8192,
        },
        "timeline": {"startTime": 1699999000, "samples": [], "durationDelta": 10, "watermarks": {}},
        "groups": {},
        "heatmap": None,
        "annotations": [],
    }
    status, hdrs, body = call(app, "GET", "/pyroscope/render", f"name=myapp.cpu&{RANGE}&format=collapsed")
    assert (status, body) == (200, b"a;b 3\na;c 2\n")
    assert hdrs["content-type"].startswith("text/plain")


def test_tags_and_flameql_selection(storage: Storage) -> None:
    app = make(storage)
    assert ingest(app, "app.cpu{env=prod}", b"a 1\n") == 200
    assert ingest(app, "app.cpu{env=dev}", b"b 2\n") == 200
    assert ingest(app, "other.cpu", b"c 4\n") == 200
    assert render(app, 'app.cpu{env="prod"}')["flamebearer"]["names"] == ["total", "a"]
    assert render(app, "app.cpu")["flamebearer"]["numTicks"] == 3
    assert render(app, 'app.cpu{env=~"d.*"}')["flamebearer"]["numTicks"] == 2
    status, _, body = call(app, "GET", "/render", f"name=app.cpu{{env=dev}}&{RANGE}")
    assert status == 200 and json.loads(body)["flamebearer"]["numTicks"] == 2
    assert render(app, "app.cpu", extra="&maxNodes=1")["flamebearer"]["names"] == ["total", "other"]
    assert call(app, "GET", "/labels")[2] == b'["__name__", "env"]'
    assert json.loads(call(app, "GET", "/label-values", "label=__name__")[2]) == ["app.cpu", "other.cpu"]
    assert json.loads(call(app, "GET", "/label-values", "label=env")[2]) == ["dev", "prod"]
    assert call(app, "GET", "/label-values")[0] == 400
    apps = json.loads(call(app, "GET", "/api/apps")[2])
    assert apps == [
        {"name": "app.cpu", "spyName": "unknown", "sampleRate": 100, "units": "samples"},
        {"name": "other.cpu", "spyName": "unknown", "sampleRate": 100, "units": "samples"},
    ]


def test_bad_name_and_bad_query_are_400(storage: Storage) -> None:
    app = make(storage)
    status, hdrs, body = call(app, "POST", "/ingest", "name=bad%20name", body=b"a 1\n")
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"
    assert hdrs["content-type"] == "application/json"
    assert call(app, "POST", "/ingest", "", body=b"a 1\n")[0] == 400
    assert call(app, "GET", "/render", "query=app.cpu{env=")[0] == 400
    assert call(app, "GET", "/render", "")[0] == 400
    assert call(app, "GET", "/render", "query=app.cpu&format=pprof")[0] == 400


def test_parse_errors_and_unsupported_formats_are_422(storage: Storage) -> None:
    app = make(storage)
    assert ingest(app, "app.cpu", b"a;b notanumber\n") == 422
    assert ingest(app, "app.cpu", b"x", query="&format=jfr") == 422
    status, _, body = call(app, "POST", "/ingest", "name=app&format=speedscope", body=b"{}")
    assert status == 422 and b"unsupported" in body
    assert ingest(app, "app", b"not a profile", query="&format=pprof") == 422
    assert ingest(app, "app.cpu", b"\x05ab", query="&format=trie") == 422


def test_body_too_large_is_413(storage: Storage) -> None:
    app = make(storage, max_body_bytes=100)
    body = b"a;b 1\n" * 30
    assert ingest(app, "app.cpu", body, headers={"Content-Length": str(len(body))}) == 413
    status, _, _ = call(app, "POST", "/ingest", "name=app.cpu", body=body, chunk=7)  # no Content-Length
    assert status == 413
    assert ingest(app, "app.cpu", b"a;b 1\n" * 10) == 200


def test_multitenancy(storage: Storage) -> None:
    app = make(storage, multitenancy=True)
    assert ingest(app, "app.cpu", b"a 1\n") == 401
    assert call(app, "GET", "/render", f"query=app.cpu&{RANGE}")[0] == 401
    assert ingest(app, "app.cpu", b"a 1\n", headers={"X-Scope-OrgID": ".."}) == 400
    assert ingest(app, "app.cpu", b"a 1\n", headers={"X-Scope-OrgID": "t1"}) == 200
    assert ingest(app, "app.cpu", b"b 5\n", headers={"X-Scope-OrgID": "t2"}) == 200
    t1 = render(app, "app.cpu", {"X-Scope-OrgID": "t1"})["flamebearer"]
    t2 = render(app, "app.cpu", {"X-Scope-OrgID": "t2"})["flamebearer"]
    assert (t1["names"], t1["numTicks"]) == (["total", "a"], 1)
    assert (t2["names"], t2["numTicks"]) == (["total", "b"], 5)
    assert render(app, "app.cpu", {"X-Scope-OrgID": "t3"})["flamebearer"]["numTicks"] == 0
    # Without multi-tenancy the header is ignored: everything is "anonymous".
    single = make(storage)
    assert ingest(single, "app.cpu", b"c 7\n", headers={"X-Scope-OrgID": "t1"}) == 200
    assert render(single, "app.cpu")["flamebearer"]["numTicks"] == 7
    assert storage.apps("anonymous") == ["app.cpu"]


def test_other_stack_formats(storage: Storage) -> None:
    app = make(storage)
    assert ingest(app, "lines.cpu", b"a;b\na;b\na;c\n", query="&format=lines") == 200
    assert render(app, "lines.cpu")["flamebearer"]["numTicks"] == 3
    gz = gzip.compress(b"x;y 4\n")
    assert ingest(app, "gz.cpu", gz, headers={"Content-Encoding": "gzip"}) == 200
    assert call(app, "GET", "/render", f"query=gz.cpu&{RANGE}&format=collapsed")[2] == b"x;y 4\n"


def test_pprof_ingest_raw_gzip_and_multipart(storage: Storage) -> None:
    app = make(storage)
    profile = encode_profile(
        [
            StackSample(["main", "f"], [3 * NS], {"region": "eu"}),
            StackSample(["main", "g"], [NS], {"region": "eu"}),
        ]
    )
    assert ingest(app, "py{env=prod}", profile, query="&format=pprof&spyName=pyspy") == 200
    doc = render(app, 'py.cpu{env="prod",region="eu"}')
    assert doc["flamebearer"]["numTicks"] == 4
    assert doc["metadata"]["spyName"] == "pyspy"
    gz = gzip.compress(profile)
    hdrs = {"Content-Encoding": "gzip", "Content-Type": "binary/octet-stream"}
    assert ingest(app, "gz", gz, query="&format=pprof", headers=hdrs) == 200
    assert render(app, "gz.cpu")["flamebearer"]["numTicks"] == 4
    body, content_type = encode_multipart({"profile": gzip.compress(profile)})
    assert ingest(app, "form", body, headers={"Content-Type": content_type}) == 200
    status, _, out = call(app, "GET", "/render", f"query=form.cpu&{RANGE}&format=collapsed")
    assert (status, out) == (200, b"main;f 3\nmain;g 1\n")
    body, content_type = encode_multipart({"other": b"x"})
    assert ingest(app, "form", body, headers={"Content-Type": content_type}) == 422


def _push_profile() -> bytes:
    return encode_profile([StackSample(["main", "work"], [5 * NS])], time_nanos=int(NOW * 1e9))


@pytest.mark.parametrize("content_type", ["application/proto", "application/json"])
@pytest.mark.parametrize("compress", [False, True])
def test_push(storage: Storage, content_type: str, compress: bool) -> None:
    app = make(storage)
    labels = {"__name__": "process_cpu", "service_name": "svc", "env": "prod", "otel.scope.name": "x"}
    body = encode_push_request([(labels, [_push_profile()])], content_type=content_type, compress=compress)
    headers = {"Content-Type": content_type}
    if compress:
        headers["Content-Encoding"] = "gzip"
    status, hdrs, out = call(app, "POST", "/push.v1.PusherService/Push", headers=headers, body=body)
    assert (status, hdrs["content-type"]) == (200, content_type)
    assert out == (b"{}" if content_type == "application/json" else b"")
    doc = render(app, 'svc.cpu{env="prod"}')
    assert doc["flamebearer"]["names"] == ["total", "main", "work"]
    assert doc["flamebearer"]["numTicks"] == 5
    assert doc["metadata"]["sampleRate"] == 100
    assert storage.label_names("anonymous") == ["__name__", "env", "otel.scope.name"]


def test_push_sample_id_deduplicates(storage: Storage) -> None:
    from pyro_core.server.push import PushSeries, RawSample

    app = make(storage)
    series = PushSeries(
        labels=(("__name__", "process_cpu"), ("service_name", "svc")),
        samples=(RawSample(_push_profile(), "id-1"),),
    )
    body = encode_push_request([series])
    for _ in range(2):
        assert (
            call(
                app,
                "POST",
                "/push.v1.PusherService/Push",
                headers={"Content-Type": "application/proto"},
                body=body,
            )[0]
            == 200
        )
    assert render(app, "svc.cpu")["flamebearer"]["numTicks"] == 5


def test_push_errors_are_connect_json(storage: Storage) -> None:
    app = make(storage, multitenancy=True, max_body_bytes=1000)
    path = "/push.v1.PusherService/Push"
    proto = {"Content-Type": "application/proto"}
    status, hdrs, body = call(app, "POST", path, headers=proto, body=b"")
    assert status == 401 and json.loads(body)["code"] == "unauthenticated"
    assert hdrs["content-type"] == "application/json"
    proto["X-Scope-OrgID"] = "t"
    status, _, body = call(app, "POST", path, headers=proto, body=b"\xff\xff\xff")
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"
    no_service = encode_push_request([({"__name__": "process_cpu"}, [_push_profile()])])
    status, _, body = call(app, "POST", path, headers=proto, body=no_service)
    assert status == 400 and b"service_name" in body
    bad_profile = encode_push_request([({"service_name": "s"}, [b"garbage"])])
    assert call(app, "POST", path, headers=proto, body=bad_profile)[0] == 400
    # Connect maps resource_exhausted to 429 (the legacy /ingest answers 413).
    status, _, body = call(app, "POST", path, headers=proto, body=b"x" * 2000)
    assert status == 429 and json.loads(body)["code"] == "resource_exhausted"
    status, _, body = call(app, "POST", path, headers={**proto, "Content-Type": "text/plain"}, body=b"x")
    assert status == 400


def test_ready_metrics_and_unknown_routes(storage: Storage) -> None:
    registry = CollectorRegistry()
    app = make(storage, registry=registry, multitenancy=True)
    status, _, body = call(app, "GET", "/ready")
    assert (status, body.strip()) == (200, b"ready")
    assert ingest(app, "app.cpu", b"a 1\n", headers={"X-Scope-OrgID": "t1"}) == 200
    assert ingest(app, "app.cpu", b"a x\n", headers={"X-Scope-OrgID": "t1"}) == 422
    assert ingest(app, "app.cpu", b"a 1\n") == 401
    status, hdrs, body = call(app, "GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain")
    text = body.decode()
    assert 'pyroscope_ingest_profiles_total{tenant="t1"} 1\n' in text
    assert 'pyroscope_ingest_bytes_total{tenant="t1"} 4\n' in text
    assert 'pyroscope_ingest_errors_total{status="422",tenant="t1"} 1\n' in text
    assert 'pyroscope_ingest_errors_total{status="401",tenant=""} 1\n' in text
    assert call(app, "GET", "/nope")[0] == 404
    assert call(app, "GET", "/ingest")[0] == 405


def test_lifespan(storage: Storage) -> None:
    app = make(storage)
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    trio.run(app, {"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# -- the internal ingester API and the backend seam ---------------------------------------------------


def test_internal_endpoints_store_and_answer_like_a_peer_would_ask(storage: Storage) -> None:
    from pyro_core.server.internal import (
        PUSH_PATH,
        QUERY_PATH,
        QueryRequest,
        SeriesWrite,
        decode_query_result,
        encode_push,
        encode_query,
    )

    app = make(storage)
    w = SeriesWrite({"__name__": "peer.cpu", "env": "x"}, NOW, {b"a;b": 3}, "pid-1", "gospy", 100, "samples")
    for _ in range(2):  # a retried push with the same profile id is stored once
        status, _, out = call(app, "POST", PUSH_PATH, body=encode_push("anonymous", [w]))
        assert status == 200, out
    status, _, out = call(app, "POST", QUERY_PATH, body=encode_query(QueryRequest("anonymous", "peer.cpu", NOW - 60, NOW + 60)))
    assert status == 200
    series, meta = decode_query_result(out)
    assert [t for _, t in series.values()] == [{b"a;b": 3}]
    assert meta == {"peer.cpu": ("gospy", 100, "samples")}
    assert render(app, "peer.cpu")["flamebearer"]["numTicks"] == 3


@pytest.mark.parametrize("path", ["/internal/ingester/push", "/internal/ingester/query", "/internal/ingester/labels"])
def test_internal_endpoints_refuse_malformed_bodies_with_400(storage: Storage, path: str) -> None:
    app = make(storage)
    for body in (b"", b"\xc1garbage", json.dumps({"a": 1}).encode()):
        status, _, out = call(app, "POST", path, body=body)
        assert status == 400, out
        assert json.loads(out)["code"] == "invalid_argument"
    status, _, _ = call(app, "GET", path)
    assert status == 405


def test_a_backend_that_cannot_reach_quorum_answers_503_with_its_reason(storage: Storage) -> None:
    from pyro_core.server.backend import BackendError

    class Unavailable:
        async def push(self, tenant: str, writes: Any) -> None:
            raise BackendError(503, "failed to push 1 of 1 series: only 1 of 3 replicas acknowledged series 0")

        async def query(self, *a: Any) -> Any:
            raise BackendError(503, "only 1 of 3 ingesters answered")

        async def labels(self, *a: Any) -> Any:
            raise BackendError(503, "only 1 of 3 ingesters answered")

    app = make(storage, backend=Unavailable())
    status, _, out = call(app, "POST", "/ingest", "name=x.cpu", body=b"a 1\n")
    assert status == 503 and b"only 1 of 3 replicas" in out
    status, _, out = call(app, "GET", "/render", "query=x.cpu")
    assert status == 503 and b"ingesters answered" in out
    status, _, out = call(app, "GET", "/labels")
    assert status == 503


# -- per-tenant limits, auth, remote-write wiring -------------------------------------------------------


def limited(storage: Storage, runtime: dict[str, Any] | None = None, **defaults: Any) -> Any:
    from pyro_core.server.overrides import Limits, Overrides, parse_runtime_config

    overrides = Overrides(Limits(**defaults))
    if runtime is not None:
        overrides.apply(parse_runtime_config(runtime))
    return make(storage, overrides=overrides, multitenancy=True)


def test_a_tenant_over_its_ingestion_rate_gets_429_and_others_do_not(storage: Storage) -> None:
    # 1 KiB/s with a 2 KiB burst for tenant "small" only (a runtime override); the default is large.
    app = limited(storage, {"overrides": {"small": {"ingestion_rate_mb": 1 / 1024, "ingestion_burst_size_mb": 2 / 1024}}})
    body = b"main;f 1\n" * 100  # 900 bytes
    small = {"X-Scope-OrgID": "small"}
    assert ingest(app, "a.cpu", body, headers=small) == 200
    assert ingest(app, "a.cpu", body, headers=small) == 200
    status, _, out = call(app, "POST", "/ingest", "name=a.cpu&from=1700000000", small, body)
    assert status == 429 and b"rate limit" in out.lower()
    assert ingest(app, "a.cpu", body, headers={"X-Scope-OrgID": "big"}) == 200


def test_label_and_time_limits_refuse_with_400(storage: Storage) -> None:
    app = limited(storage, max_label_names_per_series=2)
    t = {"X-Scope-OrgID": "t"}
    status, _, out = call(app, "POST", "/ingest", "name=a.cpu{x=1,y=2}&from=1700000000", t, b"f 1\n")
    assert status == 400 and b"label names" in out
    status, _, out = call(app, "POST", "/ingest", f"name=a.cpu&from={int(NOW) - 7200}", t, b"f 1\n")
    assert status == 400 and b"older than" in out
    status, _, out = call(app, "POST", "/ingest", f"name=a.cpu&from={int(NOW) + 3600}", t, b"f 1\n")
    assert status == 400 and b"future" in out


def test_deep_stacks_are_truncated_to_the_depth_limit(storage: Storage) -> None:
    app = limited(storage, max_profile_stacktrace_depth=3)
    t = {"X-Scope-OrgID": "t"}
    assert ingest(app, "a.cpu", b"a;b;c;d;e 2\na;b;c 1\n", headers=t) == 200
    status, _, out = call(app, "GET", "/render", f"query=a.cpu&{RANGE}&format=collapsed", t)
    assert status == 200 and out == b"a;b;c 3\n"


def test_query_length_and_max_nodes_limits(storage: Storage) -> None:
    app = limited(storage, max_query_length=3600.0, max_flamegraph_nodes_max=100)
    t = {"X-Scope-OrgID": "t"}
    status, _, out = call(app, "GET", "/render", "query=a.cpu&from=now-2h&until=now", t)
    assert status == 400 and b"exceeds the limit" in out
    status, _, out = call(app, "GET", "/render", "query=a.cpu&from=now-1h&maxNodes=1000", t)
    assert status == 400 and b"maxNodes" in out
    status, _, _ = call(app, "GET", "/render", "query=a.cpu&from=now-1h&maxNodes=50", t)
    assert status == 200


def test_auth_guards_every_path_but_ready_and_metrics(storage: Storage) -> None:
    from pyro_core.server.auth import AuthConfig, encode_basic

    app = make(storage, auth=AuthConfig(bearer_tokens=("s3cret",), basic_username="u", basic_password="p:w"))
    for method, path in (("POST", "/ingest"), ("GET", "/render"), ("GET", "/labels"), ("POST", "/internal/ingester/push")):
        status, headers, _ = call(app, method, path, "name=a.cpu")
        assert status == 401 and headers["www-authenticate"].startswith(("Bearer", "Basic"))
        status, _, _ = call(app, method, path, "name=a.cpu", {"Authorization": "Bearer wrong"})
        assert status == 401
    assert call(app, "GET", "/ready")[0] == 200
    assert call(app, "GET", "/metrics")[0] == 200
    assert ingest(app, "a.cpu", b"f 1\n", headers={"Authorization": "Bearer s3cret"}) == 200
    assert ingest(app, "a.cpu", b"f 2\n", headers={"Authorization": encode_basic("u", "p:w")}) == 200
    status, _, out = call(app, "GET", "/render", f"query=a.cpu&{RANGE}&format=collapsed", {"Authorization": "Bearer s3cret"})
    assert status == 200 and out == b"f 3\n"


def test_a_relay_id_header_makes_a_repeated_profile_count_once(storage: Storage) -> None:
    app = make(storage)
    for _ in range(3):
        assert ingest(app, "a.cpu", b"f 1\n", headers={"X-Pyro-Core-Profile-Id": "abc"}) == 200
    assert ingest(app, "a.cpu", b"f 1\n") == 200
    _, _, out = call(app, "GET", "/render", f"query=a.cpu&{RANGE}&format=collapsed")
    assert out == b"f 2\n"


def test_concurrent_ingests_share_fsyncs_and_every_acknowledged_one_is_durable(tmp_path: Path) -> None:
    # 40 requests at once on the event loop: they go into the WAL inline and wait for group fsyncs
    # run by one worker thread; all of them survive a reopen (no close: as after kill -9).
    s = Storage(tmp_path / "d", fsync=True).open()
    app = make(s)
    statuses: list[int] = []

    async def one(i: int) -> None:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": f"main;f{i} 1\n".encode(), "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/ingest", "query_string": b"name=g.cpu&from=1700000000", "headers": []}
        await app(scope, receive, send)
        statuses.append(sent[0]["status"])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(one, i)

    trio.run(main)
    assert statuses == [200] * 40
    assert s.wal.fsyncs < 40  # shared
    reopened = Storage(tmp_path / "d", fsync=True).open()
    from pyro_core.server.flameql import parse

    assert reopened.query("anonymous", parse("g.cpu"), 0, 2e9).total == 40
    reopened.close()
    s.close()
