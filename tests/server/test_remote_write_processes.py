# Remote write between real `pyro-core server` processes on loopback (issue 5's process-level proof).
# Owns: a relay and its targets as separate processes, configured the way an operator would (a YAML
# `-config.file=` with a `remote-write:` section, auth and multi-tenancy flags on the targets), and
# the properties only whole processes show:
#   - every profile ingested through the relay reaches every target exactly once, with the target's
#     tags, tenant, headers and credentials applied; the relay's /metrics match what was sent;
#   - a target that is down (killed, or frozen with SIGSTOP) and comes back: with the spool nothing is
#     lost; without it the drops are exactly the ones /metrics counts, and the relay keeps answering 200;
#   - `kill -9` of a relay holding a full spool: after the restart the spool drains, nothing is lost
#     and the profiles delivered before the kill (never committed) are stored once at the target;
#   - a bad `remote-write:` section stops the server at start: exit code 2, a clear message, no traceback.
# Must not know: pyro-core's internals (everything goes through the command line and HTTP).
# Nothing here asserts on wall-clock time; the waits are generous deadlines.
from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pyro_core.server.pprof import StackSample, encode_profile
from pyro_core.server.push import encode_push_request
from tests.server.procs import Server, collapsed, eventually, http, start_all, stop_all

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

T = TypeVar("T")
NS = 10_000_000  # one 10 ms cpu tick in nanoseconds
PUSH_PATH = "/push.v1.PusherService/Push"
BACKOFF = {"min-backoff": "100ms", "max-backoff": "1s", "retry-budget": 1000, "retry-burst": 1000}


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    stop_all(started)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def wait_holds(server: Server, query: str, want: dict[str, int], tenant: str | None = None) -> None:
    """Until the server holds exactly ``want``; a stack above its value (a duplicate) fails at once."""
    last: dict[str, int] = {}

    def check() -> bool:
        nonlocal last
        server.check_alive()
        last = collapsed(server, query, tenant)
        over = {k: v for k, v in last.items() if v > want.get(k, 0)}
        assert not over, (
            f"{server.name}: more than sent (duplicates or strangers): {sorted(over.items())[:5]}"
        )
        return last == want

    eventually(
        check,
        60.0,
        lambda: (
            f"{server.name} holds {len(last)} of {len(want)} stacks; missing "
            f"{sorted(set(want) - set(last))[:5]}"
        ),
    )


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(server: Server) -> str:
    status, body = http("GET", server.url("/metrics"))
    assert status == 200, body
    return body.decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels`` (exactly one must match)."""
    found: list[float] = []
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if m is None or m.group(1) != name:
            continue
        have = dict(_LABEL_RE.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(3)))
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def target_metric(text: str, name: str, server: Server, target: str) -> float:
    """A remote-write sample of one target (either label spelling of the spec)."""
    if name.startswith("pyroscope_remote_write_client_"):
        return metric(text, name, targetName=target, targetAddress=server.address)
    return metric(text, name, target_name=target, target_address=server.address)


def wait_spool_empty(relay: Server, target: str) -> None:
    """Until the relay's spool for ``target`` holds nothing (every delivery acknowledged)."""
    eventually(
        lambda: relay_status(relay, target)["spool"]["entries"] == 0,
        30,
        lambda: f"spool never emptied: {relay_status(relay, target)}",
    )


def relay_status(relay: Server, target: str) -> dict[str, Any]:
    status, body = http(
        "GET", relay.url("/remote-write"), headers={"Accept": "application/json", **relay.headers}
    )
    assert status == 200, body
    doc = json.loads(body)
    found: dict[str, Any] = next(t for t in doc["targets"] if t["name"] == target)
    return found


# -- profiles ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One profile POSTed to the relay: where, its body and headers, and the stack it adds."""

    path: str
    body: bytes
    headers: dict[str, str]
    stack: str
    value: int


def folded(app: str, fn: str, value: int) -> Sent:
    name = urllib.parse.quote(f"{app}.cpu{{host=relay}}", safe="")
    return Sent(
        f"/ingest?name={name}&format=folded", f"main;{fn} {value}\n".encode(), {}, f"main;{fn}", value
    )


def pprof(app: str, fn: str, value: int) -> Sent:
    body = encode_profile([StackSample(["main", fn], [value * NS])], compress=True)
    name = urllib.parse.quote(f"{app}{{host=relay}}", safe="")
    return Sent(
        f"/ingest?name={name}&format=pprof",
        body,
        {"Content-Type": "application/octet-stream"},
        f"main;{fn}",
        value,
    )


PUSH_LABELS = (("__name__", "process_cpu"), ("service_name", "APP"), ("host", "relay"))


def push_labels(app: str) -> list[tuple[str, str]]:
    return [(k, app if v == "APP" else v) for k, v in PUSH_LABELS]


def push(app: str, fn: str, value: int) -> Sent:
    raw = encode_profile([StackSample(["main", fn], [value * NS])], time_nanos=time.time_ns())
    body = encode_push_request([(push_labels(app), [raw])])
    return Sent(PUSH_PATH, body, {"Content-Type": "application/proto"}, f"main;{fn}", value)


def mixed_profiles(app: str, n: int, prefix: str = "f") -> list[Sent]:
    """``n`` profiles, each adding one distinct stack: mostly folded, every 8th pprof, every 10th push."""
    out: list[Sent] = []
    for i in range(n):
        fn, value = f"{prefix}{i}", i % 9 + 1
        make = push if i % 10 == 9 else pprof if i % 8 == 7 else folded
        out.append(make(app, fn, value))
    return out


def send_all(relay: Server, profiles: list[Sent]) -> None:
    """POST every profile to the relay; each must be accepted (200)."""
    for p in profiles:
        status, body = http("POST", relay.url(p.path), p.body, {**p.headers, **relay.headers})
        assert status == 200, (p.path, status, body)


def want_of(profiles: list[Sent]) -> dict[str, int]:
    return {p.stack: p.value for p in profiles}


def relay_config(targets: dict[str, dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"remote-write": {"enabled": True, **top, "targets": targets}}


# -- 1. a relay and two targets ----------------------------------------------------------------------


def test_every_profile_reaches_both_targets_once_with_their_tenant_tags_headers_and_auth(
    servers: list[Server], tmp_path: Path
) -> None:
    a = Server(
        "target-a",
        tmp_path / "a",
        ["-auth.bearer-token=token-of-a", "-auth.multitenancy-enabled=true"],
        headers={"Authorization": "Bearer token-of-a"},
    )
    b = Server(
        "target-b",
        tmp_path / "b",
        ["-auth.basic-username=relay", "-auth.basic-password=s3cret", "-auth.multitenancy-enabled=true"],
        headers={"Authorization": basic("relay", "s3cret")},
    )
    targets = {
        "cluster-a": {
            "address": a.address,
            "auth-token": "token-of-a",
            "tenant-id": "team-a",  # overrides the X-Scope-OrgID of `headers`
            "tags": {"env": "prod"},
            "headers": {"X-Scope-OrgID": "not-this-one"},
            **BACKOFF,
        },
        "cluster-b": {
            "address": b.address + "/",
            "basic-auth-user": "relay",
            "basic-auth-password": "s3cret",
            "auth-token": "ignored-basic-wins",
            "headers": {"X-Scope-OrgID": "team-b"},  # B requires a tenant: only `headers` gives one
            **BACKOFF,
        },
    }
    relay = Server("relay", tmp_path / "relay", config=relay_config(targets))
    servers.extend([a, b, relay])
    start_all(a, b, relay)

    profiles = mixed_profiles("rw", 50)
    assert len({p.stack for p in profiles}) == 50
    send_all(relay, profiles)
    want = want_of(profiles)

    wait_holds(a, 'rw.cpu{env="prod"}', want, tenant="team-a")  # tags and tenant applied
    wait_holds(b, 'rw.cpu{host="relay"}', want, tenant="team-b")  # headers applied
    assert collapsed(a, 'rw.cpu{env="prod",host="relay"}', tenant="team-a") == want
    assert collapsed(a, "rw.cpu", tenant="not-this-one") == {}
    assert collapsed(a, "rw.cpu", tenant="anonymous") == {}
    assert collapsed(b, 'rw.cpu{env="prod"}', tenant="team-b") == {}  # A's tags are A's only
    assert collapsed(relay, "rw.cpu") == want  # local writes stay on
    # The targets really require what the relay sent.
    assert (
        http("GET", a.url("/render?query=rw.cpu&format=collapsed"), headers={"X-Scope-OrgID": "team-a"})[0]
        == 401
    )
    assert (
        http("GET", b.url("/render?query=rw.cpu&format=collapsed"), headers={"X-Scope-OrgID": "team-b"})[0]
        == 401
    )

    # /metrics of the relay: what was sent, per target, under the spec's names and label spellings.
    sizes_b = sum(len(p.body) for p in profiles)
    # A's tags are merged into the push series' labels, so its push bodies are re-encoded.
    sizes_a = sum(
        len(encode_push_request([([*push_labels("rw"), ("env", "prod")], [_raw_of(p)])]))
        if p.path == PUSH_PATH
        else len(p.body)
        for p in profiles
    )
    text = scrape(relay)
    for server, target, size in ((a, "cluster-a", sizes_a), (b, "cluster-b", sizes_b)):
        assert target_metric(text, "pyroscope_remote_write_client_sent_bytes", server, target) == size
        count = "pyroscope_remote_write_client_response_time_count"
        assert metric(text, count, targetName=target, targetAddress=server.address, code="200") == 50
        assert target_metric(text, "pyroscope_remote_write_queue_dropped", server, target) == 0
        assert target_metric(text, "pyroscope_remote_write_queue_pending", server, target) == 0
        assert target_metric(text, "pyroscope_remote_write_queue_capacity", server, target) == 100
        assert target_metric(text, "pyro_core_remote_write_sent_total", server, target) == 50
        assert target_metric(text, "pyro_core_remote_write_retries_total", server, target) == 0
        # The seed's own line, exactly as shown there (Go's number formatting: "0", not "0.0").
        line = f'pyroscope_remote_write_queue_pending{{target_address="{server.address}",target_name="{target}"}} 0'
        assert line in text.splitlines(), line
    # The seed's address is kept as configured, minus a trailing slash.
    assert "cluster-b" in text and b.address + "/" not in text

    status = relay_status(relay, "cluster-b")
    assert (status["sent"], status["dropped"], status["queue"]["depth"], status["last_error"]) == (
        50,
        0,
        0,
        None,
    )
    status_code, page = http("GET", relay.url("/remote-write"))
    assert status_code == 200 and b"cluster-a" in page and b"<html" in page


def _raw_of(p: Sent) -> bytes:
    from pyro_core.server.push import decode_push_request

    (series,) = decode_push_request(p.body, "application/proto", None)
    (sample,) = series.samples
    return sample.raw_profile


# -- 2. a target down for a while, then back ---------------------------------------------------------


def test_with_the_spool_a_target_that_was_down_gets_every_profile_exactly_once(
    servers: list[Server], tmp_path: Path
) -> None:
    target = Server("target", tmp_path / "target")
    spool = {"enabled": True, "commit-interval": "200ms"}
    relay = Server(
        "relay",
        tmp_path / "relay",
        config=relay_config(
            {"t": {"address": target.address, "queue-workers": 4, "spool": spool, **BACKOFF}}
        ),
    )
    servers.extend([target, relay])
    start_all(target, relay)

    before = mixed_profiles("sp", 5, prefix="up")
    send_all(relay, before)
    wait_holds(target, "sp.cpu", want_of(before))
    wait_spool_empty(relay, "t")  # the relay has the target's answers too: nothing in flight

    target.kill()
    during = mixed_profiles("sp", 40, prefix="down")
    send_all(relay, during)  # 200 for every one: the relay does not wait for the target
    st = relay_status(relay, "t")
    assert st["spool"]["entries"] == 40 and st["dropped"] == 0
    assert st["last_error"] is not None and st["sent"] == 5

    target.start().wait_ready()  # same port and data directory
    wait_holds(target, "sp.cpu", want_of(before + during))

    def drained() -> bool:
        s = relay_status(relay, "t")
        return bool(s["spool"]["entries"] == 0 and s["in_flight"] == 0)

    eventually(drained, 30, "the spool never drained")
    text = scrape(relay)
    assert target_metric(text, "pyroscope_remote_write_queue_dropped", target, "t") == 0
    assert target_metric(text, "pyroscope_remote_write_queue_pending", target, "t") == 0
    assert target_metric(text, "pyro_core_remote_write_spool_entries", target, "t") == 0
    assert target_metric(text, "pyro_core_remote_write_sent_total", target, "t") == 45
    assert target_metric(text, "pyro_core_remote_write_given_up_total", target, "t") == 0
    assert target_metric(text, "pyro_core_remote_write_retries_total", target, "t") > 0
    assert collapsed(target, "sp.cpu") == want_of(before + during)


def test_without_the_spool_exactly_the_dropped_profiles_are_missing_and_the_relay_keeps_answering(
    servers: list[Server], tmp_path: Path
) -> None:
    target = Server("target", tmp_path / "target")
    # One worker, a queue of 5, one retry: a frozen target holds the worker's request, 5 wait in the
    # queue and every later profile is dropped — a count that does not depend on timing.
    cfg = {"address": target.address, "queue-size": 5, "queue-workers": 1, "max-retries": 1, "timeout": "60s"}
    relay = Server("relay", tmp_path / "relay", config=relay_config({"t": {**cfg, **BACKOFF}}))
    servers.extend([target, relay])
    start_all(target, relay)

    # Frozen (SIGSTOP): the kernel still accepts the connection, nobody answers.
    target.signal(signal.SIGSTOP)
    frozen = mixed_profiles("nd", 30, prefix="frozen")
    send_all(relay, frozen)
    text = scrape(relay)
    assert target_metric(text, "pyroscope_remote_write_queue_dropped", target, "t") == 30 - 1 - 5
    assert target_metric(text, "pyroscope_remote_write_queue_pending", target, "t") == 5
    target.signal(signal.SIGCONT)
    delivered = frozen[:6]
    wait_holds(target, "nd.cpu", want_of(delivered))

    # Killed: every profile fails (two tries) or is dropped; together exactly the ones sent.
    target.kill()
    lost = mixed_profiles("nd", 12, prefix="dead")
    send_all(relay, lost)

    def accounted() -> bool:
        s = relay_status(relay, "t")
        return bool(
            s["dropped"] + s["given_up"] == 24 + 12 and s["queue"]["depth"] == 0 and not s["in_flight"]
        )

    eventually(accounted, 30, lambda: f"not every lost profile is counted: {relay_status(relay, 't')}")

    target.start().wait_ready()
    after = mixed_profiles("nd", 4, prefix="back")
    send_all(relay, after)
    delivered += after
    wait_holds(target, "nd.cpu", want_of(delivered))

    text = scrape(relay)
    dropped = target_metric(text, "pyroscope_remote_write_queue_dropped", target, "t")
    given_up = target_metric(text, "pyro_core_remote_write_given_up_total", target, "t")
    assert dropped + given_up == len(frozen) + len(lost) - 6  # every profile not delivered, and no more
    assert target_metric(text, "pyro_core_remote_write_sent_total", target, "t") == len(delivered)
    assert target_metric(text, "pyroscope_remote_write_queue_pending", target, "t") == 0


# -- 3. kill -9 of a relay with a full spool ---------------------------------------------------------


def test_a_relay_killed_with_a_full_spool_delivers_it_after_restart_without_loss_or_duplicates(
    servers: list[Server], tmp_path: Path
) -> None:
    target = Server("target", tmp_path / "target")
    # The delivered offset is committed only every hour (or on a graceful stop): after kill -9 the
    # relay sends again what it had delivered, and the pyro-core target must store it once.
    spool = {"enabled": True, "commit-interval": "1h"}
    cfg = {"address": target.address, "queue-workers": 4, "spool": spool, **BACKOFF}
    relay = Server(
        "relay", tmp_path / "relay", config=relay_config({"t": cfg}, **{"disable-local-writes": True})
    )
    servers.extend([target, relay])
    start_all(target, relay)

    delivered = mixed_profiles("k9", 10, prefix="early")
    send_all(relay, delivered)
    wait_holds(target, "k9.cpu", want_of(delivered))
    wait_spool_empty(relay, "t")  # the relay has the target's answers too: nothing in flight
    target.kill()
    spooled = mixed_profiles("k9", 30, prefix="spooled")
    send_all(relay, spooled)  # each 200 only once the record is fsynced in the spool
    status, body = http("GET", relay.url("/render?query=k9.cpu&from=now-1h"))
    assert status == 400 and b"pure relay" in body
    assert relay_status(relay, "t")["spool"]["entries"] == 30

    relay.kill()
    relay.start()
    target.start()
    relay.wait_ready()
    target.wait_ready()
    wait_holds(target, "k9.cpu", want_of(delivered + spooled))

    def drained() -> dict[str, Any] | None:
        s = relay_status(relay, "t")
        return s if s["spool"]["entries"] == 0 and s["in_flight"] == 0 else None

    st = eventually(drained, 30, "the spool never drained")
    assert st is not None
    assert st["spool"]["recovered"] == 40  # nothing was committed before the kill
    assert st["sent"] == 40 and st["dropped"] == 0 and st["given_up"] == 0
    assert collapsed(target, "k9.cpu") == want_of(delivered + spooled)


# -- 4. configuration errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"enabled": True}, "remote-write: enabled, but no targets are configured"),
        (
            {"enabled": True, "targets": {"t": {"address": "bar:4040"}}},
            "remote-write.targets.t.address: 'bar:4040' is not an http:// or https:// URL",
        ),
        (
            {"enabled": True, "targets": {"t": {"address": "http://bar:4040", "queue_size": 5}}},
            "remote-write.targets.t: unknown key 'queue_size'",
        ),
    ],
    ids=["no-targets", "not-a-url", "unknown-key"],
)
def test_a_bad_remote_write_section_stops_the_server_at_start_with_a_clear_message(
    tmp_path: Path, section: dict[str, Any], message: str
) -> None:
    server = Server("bad", tmp_path / "bad", config={"remote-write": section})
    proc = subprocess.run(
        server.argv(), cwd=tempfile.gettempdir(), capture_output=True, timeout=60, env=os.environ.copy()
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())  # nothing started
