# Remote write from a real relay process to targets served by Go's net/http (the server library of
# Pyroscope itself): tests/interop/sink, built at test time with Debian's Go, records every request
# it gets (path, raw query, headers, sha256 of the body) and answers 200.
# Owns: what arrives on the wire at a Go server, byte for byte: the query string relayed exactly as
# the relay received it (percent-encoding and parameter order kept) or with the target's tags merged
# into `name`; the body unchanged (or, for a Connect push with tags, re-encoded); the configured
# credentials, tenant, headers and a distinct profile id; each profile once per target over kept
# connections; https:// targets verified against the CAs of SSL_CERT_FILE, refused without them.
# Must not know: pyro-core's internals (command line and HTTP only).
# Nothing here asserts on wall-clock time; the waits are generous deadlines.
from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gobuild import build_go_program

from pyro_core.server.pprof import StackSample, encode_profile
from pyro_core.server.push import decode_push_request, encode_push_request
from tests.server.procs import Server, eventually, http, start_all, stop_all

PUSH_PATH = "/push.v1.PusherService/Push"
N_INGEST = 40


class Sink:
    """One Go sink process on an ephemeral loopback port."""

    def __init__(self, binary: Path, tls: tuple[Path, Path] | None = None) -> None:
        argv = [str(binary), "-addr", "127.0.0.1:0"]
        if tls is not None:
            argv += ["-tls-cert", str(tls[0]), "-tls-key", str(tls[1])]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        word, _, addr = self.proc.stdout.readline().strip().partition(" ")
        assert word == "listening", word
        self.url = f"{'https' if tls else 'http'}://{addr}"
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.create_default_context(cafile=str(tls[0].parent / "ca.pem"))

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/requests", timeout=30, context=self._context) as resp:
            got: list[dict[str, Any]] = json.loads(resp.read())
        return got

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sink_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_program(tmp_path_factory, "sink", "golang-go")


@pytest.fixture
def sinks(sink_binary: Path) -> Iterator[tuple[Sink, Sink]]:
    a, b = Sink(sink_binary), Sink(sink_binary)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    stop_all(started)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_go_targets_get_every_profile_once_with_query_body_and_headers_as_configured(
    tmp_path: Path, sinks: tuple[Sink, Sink], servers: list[Server]
) -> None:
    a, b = sinks
    relay = Server(
        "relay",
        tmp_path / "relay",
        config={
            "remote-write": {
                "enabled": True,
                "targets": {
                    "a": {
                        "address": a.url,
                        "auth-token": "token-a",
                        "tenant-id": "team-a",
                        "tags": {"env": "relay"},
                        "headers": {"X-Custom": "v1", "X-Scope-OrgID": "not-this-one"},
                    },
                    "b": {"address": b.url, "basic-auth-user": "user", "basic-auth-password": "pa:ss"},
                },
            }
        },
    )
    servers.append(relay)
    start_all(relay)

    # Folded profiles whose query strings an encoder would not write this way: lower-case escapes, a
    # '+' for a space, an empty value and parameters in an unusual order. B must get them verbatim.
    sent: dict[str, bytes] = {}  # query -> body
    now = int(time.time())
    for i in range(N_INGEST):
        query = f"from={now}&name=go.cpu%7bregion%3deu%7d&note=a+b%2F{i}&empty=&format=folded"
        body = f"main;work;f{i} {i + 1}\n".encode()
        status, answer = http("POST", relay.url(f"/ingest?{query}"), body, {"Content-Type": "text/plain"})
        assert status == 200, answer
        sent[query] = body
    raw = encode_profile(
        [StackSample(["main", "pushed"], [10_000_000])], time_nanos=time.time_ns()
    )
    push_labels = [("__name__", "process_cpu"), ("service_name", "go"), ("env", "prod")]
    push_body = encode_push_request([(push_labels, [raw])])
    status, answer = http("POST", relay.url(PUSH_PATH), push_body, {"Content-Type": "application/proto"})
    assert status == 200, answer

    total = N_INGEST + 1
    eventually(
        lambda: len(a.requests()) >= total and len(b.requests()) >= total,
        60.0,
        lambda: f"the sinks got {len(a.requests())} and {len(b.requests())} of {total} requests",
    )
    got_a, got_b = a.requests(), b.requests()
    assert len(got_a) == len(got_b) == total  # once each: no retries, no duplicates

    # Target B: exactly what the relay received, with B's basic auth.
    ingest_b = [r for r in got_b if r["path"] == "/ingest"]
    assert sorted(r["query"] for r in ingest_b) == sorted(sent)
    for r in ingest_b:
        assert r["body_sha256"] == sha256(sent[r["query"]])
        h = r["headers"]
        assert h["Authorization"] == "Basic " + base64.b64encode(b"user:pa:ss").decode()
        assert h["Content-Type"] == "text/plain" and h["User-Agent"] == "pyro-core-remote-write"
        assert "X-Scope-Orgid" not in h and "X-Custom" not in h
    (push_b,) = [r for r in got_b if r["path"] == PUSH_PATH]
    assert push_b["body_sha256"] == sha256(push_body) and push_b["query"] == ""

    # Target A: its tags merged into the name (the rest of the query kept), its token and tenant.
    ingest_a = [r for r in got_a if r["path"] == "/ingest"]
    for r in ingest_a:
        params = urllib.parse.parse_qsl(r["query"], keep_blank_values=True)
        assert [k for k, _ in params] == ["from", "name", "note", "empty", "format"]
        assert dict(params)["name"] == "go.cpu{env=relay,region=eu}"
        h = r["headers"]
        assert h["Authorization"] == "Bearer token-a" and h["X-Scope-Orgid"] == "team-a"
        assert h["X-Custom"] == "v1"
    assert sorted(dict(urllib.parse.parse_qsl(r["query"]))["note"] for r in ingest_a) == sorted(
        f"a b/{i}" for i in range(N_INGEST)
    )
    (push_a,) = [r for r in got_a if r["path"] == PUSH_PATH]
    assert push_a["body_sha256"] != sha256(push_body)  # re-encoded with env=relay

    # One profile id per profile, the same at both targets.
    ids_a = {r["headers"]["X-Pyro-Core-Profile-Id"] for r in got_a}
    ids_b = {r["headers"]["X-Pyro-Core-Profile-Id"] for r in got_b}
    assert len(ids_a) == total and ids_a == ids_b


def test_a_push_with_tags_arrives_at_a_go_target_with_the_labels_merged(
    tmp_path: Path, sinks: tuple[Sink, Sink], servers: list[Server]
) -> None:
    """The re-encoded push body decodes to the original series with the target's tags applied."""
    a, _ = sinks
    relay = Server(
        "relay",
        tmp_path / "relay",
        config={
            "remote-write": {"enabled": True, "targets": {"a": {"address": a.url, "tags": {"env": "relay"}}}}
        },
    )
    servers.append(relay)
    start_all(relay)
    raw = encode_profile(
        [StackSample(["main", "pushed"], [10_000_000])], time_nanos=time.time_ns()
    )
    body = encode_push_request(
        [([("__name__", "process_cpu"), ("service_name", "go"), ("env", "prod")], [raw])]
    )
    status, answer = http("POST", relay.url(PUSH_PATH), body, {"Content-Type": "application/proto"})
    assert status == 200, answer
    (got,) = eventually(lambda: a.requests(), 60.0, "the sink got nothing")
    assert got["path"] == PUSH_PATH and got["headers"]["Content-Type"] == "application/proto"
    assert got["body_bytes"] > 0
    # The sink keeps a digest, not the body: rebuild what the relay must have sent and compare.
    want = encode_push_request(
        [([("__name__", "process_cpu"), ("service_name", "go"), ("env", "relay")], [raw])]
    )
    (series,) = decode_push_request(want, "application/proto")
    assert series.labels[-1] == ("env", "relay")
    assert got["body_sha256"] == sha256(want)


def test_an_https_target_is_verified_against_ssl_cert_file_and_refused_without_it(
    tmp_path: Path, sink_binary: Path, servers: list[Server]
) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    sink = Sink(sink_binary, (tmp_path / "cert.pem", tmp_path / "key.pem"))
    try:
        section = {
            "enabled": True,
            "targets": {"tls": {"address": sink.url, "auth-token": "secret", "max-retries": 0}},
        }
        trusting = Server(
            "trusting",
            tmp_path / "trusting",
            config={"remote-write": section},
            env={"SSL_CERT_FILE": str(tmp_path / "ca.pem")},
        )
        doubting = Server("doubting", tmp_path / "doubting", config={"remote-write": section})
        servers.extend([trusting, doubting])
        start_all(trusting, doubting)
        now = int(time.time())
        for relay, fn in ((trusting, "trusted"), (doubting, "doubted")):
            status, answer = http(
                "POST", relay.url(f"/ingest?name=tls.cpu&from={now}"), f"main;{fn} 1\n".encode()
            )
            assert status == 200, answer

        def given_up() -> bool:
            _, body = http("GET", doubting.url("/remote-write"), headers={"Accept": "application/json"})
            (target,) = json.loads(body)["targets"]
            return bool(target["given_up"] == 1 and "CERTIFICATE_VERIFY_FAILED" in (target["last_error"] or ""))

        eventually(given_up, 60.0, "the relay without the CA did not refuse the certificate")
        (got,) = eventually(lambda: sink.requests(), 60.0, "nothing arrived over https")
        assert got["path"] == "/ingest" and got["headers"]["Authorization"] == "Bearer secret"
        assert got["body_sha256"] == sha256(b"main;trusted 1\n")
        assert len(sink.requests()) == 1  # the doubting relay sent nothing it could not verify
    finally:
        sink.stop()
