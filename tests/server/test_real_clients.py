# The two real Pyroscope clients from PyPI, unchanged, against a real `pyro-core server` process.
# Owns: installing pyroscope-io 0.8.16 (legacy `/ingest`, gzipped pprof, needs cffi) and 1.4.0 (Connect
# push) side by side (same package name: each gets its own `pip install --target` directory), running
# each in a subprocess that profiles a CPU-burning function, and checking that what it sent comes back
# from `/render` (collapsed and JSON), `/labels` and `/label-values`, by app name and tags, and only
# to its tenant when multi-tenancy is on.
# Must not know: the server's internals; everything goes through HTTP as a user's tools would.
#
# What the clients send (observed with a capturing server, see the module constants below):
# - 0.8.16: `POST /ingest?name=<app>&from=<s>&until=<s>&format=pprof&sampleRate=100&spyName=pyspy`,
#   Content-Type binary/octet-stream, Content-Encoding gzip, X-Scope-OrgID, Authorization (Basic when
#   basic_auth_* are given), the http_headers; one pprof (sample type cpu/nanoseconds, period 10 ms)
#   per 10 s window, the tags as string labels on every sample. The name has no `.cpu`: the server
#   names the series `<app>.cpu` after the pprof sample type.
# - 1.4.0: `POST /push.v1.PusherService/Push`, application/proto, gzip, the same auth/tenant/custom
#   headers, User-Agent `pyroscope-rs/pyspy/1.4.0 reqwest`; one series with labels
#   `__name__=process_cpu`, `service_name=<app>`, the tags, `otel.scope.name/version`,
#   `process.runtime.name/version`, and a sample ID (uuid); the server stores `<app>.cpu`.
#
# The installs need PyPI (CI has it). PYRO_CORE_CLIENTS_CACHE=<dir> keeps them between runs. The clients
# burn CPU for BURN_SECONDS; all four client runs (two versions x two servers) overlap, so the module
# takes about BURN_SECONDS + the installs.
from __future__ import annotations

import json
import os
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

import pytest

from tests.server.procs import Server as Process

pytestmark = [
    pytest.mark.slow,  # ~20 s (installs + 12 s of profiling); CI runs it (it does not deselect slow)
    pytest.mark.skipif(sys.platform != "linux", reason="the clients' wheels are manylinux"),
]

CLIENT_VERSIONS = ("0.8.16", "1.4.0")
BURN_SECONDS = 12.0
TENANT = "team-a"
OTHER_TENANT = "team-b"
TAGS = {"env": "ci", "region": "eu-west-1"}
CACHE_ENV = "PYRO_CORE_CLIENTS_CACHE"

# The client program: the burned function's name is unique per client version (dots are not allowed in
# Python names, so 0.8.16 → burn_cpu_for_pyro_core_0_8_16), which tells the two clients' data apart.
CLIENT_SCRIPT = """\
import sys, time
import pyroscope

port, app, tenant, burn_seconds, tags = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
pyroscope.configure(
    application_name=app,
    server_address=f"http://127.0.0.1:{port}",
    tags=dict(kv.split("=", 1) for kv in tags.split(",")),
    tenant_id=tenant,
    http_headers={"X-Pyro-Core-Test": "1"},
)

def FUNCTION():
    deadline = time.monotonic() + burn_seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n

FUNCTION()
pyroscope.shutdown()
print("client done", flush=True)
"""


def burn_function(version: str) -> str:
    return "burn_cpu_for_pyro_core_" + version.replace(".", "_")


def app_name(version: str) -> str:
    return "realclient-" + version.replace(".", "-")


# -- installs ----------------------------------------------------------------------------------------


def install_client(version: str, base: Path) -> Path:
    """`pip install --target base/pyroscope-io-<version> pyroscope-io==<version> cffi` unless done before."""
    target = base / f"pyroscope-io-{version}"
    done = target / ".pyro-core-installed"
    if done.exists():
        return target
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--upgrade",
        "--target",
        str(target),
        f"pyroscope-io=={version}",
        "cffi",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"could not install pyroscope-io=={version} (PyPI needed): {proc.stderr[-2000:]}")
    done.write_text(version)
    return target


@pytest.fixture(scope="session")
def client_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cache = os.environ.get(CACHE_ENV)
    base = Path(cache) if cache else tmp_path_factory.mktemp("pyroscope-clients")
    base.mkdir(parents=True, exist_ok=True)
    return {version: install_client(version, base) for version in CLIENT_VERSIONS}


# -- the server --------------------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    proc: Process
    multitenancy: bool

    def get(self, path: str, tenant: str | None = None) -> tuple[int, bytes]:
        headers = {"X-Scope-OrgID": tenant} if tenant is not None else {}
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def get_ok(self, path: str, tenant: str | None = None) -> bytes:
        status, body = self.get(path, tenant)
        assert status == 200, (path, status, body[:300])
        return body

    def render(self, query: str, fmt: str, tenant: str | None = None) -> bytes:
        until = int(time.time()) + 3600
        q = urllib.parse.urlencode({"query": query, "from": "now-1h", "until": str(until), "format": fmt})
        return self.get_ok(f"/render?{q}", tenant)


def start_server(data: Path, *, multitenancy: bool) -> Server:
    extra = ["-auth.multitenancy-enabled=true"] if multitenancy else []
    proc = Process(data.name, data, extra).start().wait_ready()
    return Server(proc.http, proc, multitenancy)


def stop_server(server: Server) -> str:
    """SIGTERM, then the server's log (for failure messages)."""
    server.proc.stop()
    err = server.proc.proc.stderr if server.proc.proc is not None else None
    return err.read().decode(errors="replace") if err is not None else ""


# -- the client runs ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Two servers (multi-tenancy off and on) after both clients ran against each."""

    open: Server
    tenanted: Server
    outputs: dict[tuple[str, bool], str]


def run_clients(
    client_dirs: dict[str, Path], scripts: dict[str, Path], servers: list[Server]
) -> dict[tuple[str, bool], str]:
    """Run every client version against every server at once; wait; return their outputs."""
    tags = ",".join(f"{k}={v}" for k, v in TAGS.items())
    procs: dict[tuple[str, bool], subprocess.Popen[str]] = {}
    for version, target in client_dirs.items():
        env = {**os.environ, "PYTHONPATH": str(target)}  # the client only: no pyro_core, no other client
        for server in servers:
            argv = [sys.executable, str(scripts[version]), str(server.port), app_name(version), TENANT]
            procs[(version, server.multitenancy)] = subprocess.Popen(
                [*argv, str(BURN_SECONDS), tags],
                cwd=tempfile.gettempdir(),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
    outputs: dict[tuple[str, bool], str] = {}
    failures = []
    for key, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=BURN_SECONDS + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        outputs[key] = out
        if proc.returncode != 0 or "client done" not in out:
            failures.append(f"client {key} exited with {proc.returncode}: {out[-2000:]}")
    assert not failures, "\n".join(failures)
    return outputs


@pytest.fixture(scope="module")
def cluster(client_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("real-clients")
    scripts = {}
    for version in CLIENT_VERSIONS:  # one script per version, each with its own function name
        scripts[version] = work / f"client_{version.replace('.', '_')}.py"
        scripts[version].write_text(CLIENT_SCRIPT.replace("FUNCTION", burn_function(version)))
    servers: list[Server] = []
    try:
        servers.append(start_server(work / "open", multitenancy=False))
        servers.append(start_server(work / "tenanted", multitenancy=True))
        outputs = run_clients(client_dirs, scripts, servers)
        yield Cluster(servers[0], servers[1], outputs)
    finally:
        for server in servers:
            log = stop_server(server)
            if "Traceback" in log:
                print(f"server (multitenancy={server.multitenancy}) output:\n{log}")


# -- what comes back ---------------------------------------------------------------------------------


def stored_name(version: str) -> str:
    """Both clients' CPU profiles are stored as `<app>.cpu` (0.8.16: from the pprof sample type `cpu`;
    1.4.0: `__name__=process_cpu`)."""
    return f"{app_name(version)}.cpu"


def collapsed_lines(body: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in body.decode().splitlines():
        stack, _, count = line.rpartition(" ")
        out[stack] = out.get(stack, 0) + int(count)
    return out


def burned(body: bytes, version: str) -> int:
    """The samples whose stack ends in the version's burn function."""
    fn = burn_function(version)
    return sum(v for stack, v in collapsed_lines(body).items() if stack.split(";")[-1] == fn)


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_real_client_profile_is_found_by_name_and_tags(cluster: Cluster, version: str) -> None:
    server = cluster.open
    name = stored_name(version)
    everything = server.render(name, "collapsed")
    assert burned(everything, version) > 0, everything[:2000]
    # the other client's function is not in this app
    other = next(v for v in CLIENT_VERSIONS if v != version)
    assert burned(everything, other) == 0
    for key, value in TAGS.items():
        selected = server.render(f'{name}{{{key}="{value}"}}', "collapsed")
        assert burned(selected, version) == burned(everything, version)
        assert server.render(f'{name}{{{key}="not-{value}"}}', "collapsed") == b""
    regex = server.render(f'{name}{{env=~"c.*",region!="us"}}', "collapsed")
    assert burned(regex, version) == burned(everything, version)


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_real_client_profile_renders_as_flamebearer_json(cluster: Cluster, version: str) -> None:
    name = stored_name(version)
    doc = json.loads(cluster.open.render(f'{name}{{env="ci"}}', "json"))
    fb = doc["flamebearer"]
    assert burn_function(version) in fb["names"]
    assert fb["names"][0] == "total"
    assert fb["numTicks"] >= burned(cluster.open.render(name, "collapsed"), version) > 0
    assert doc["metadata"]["appName"] == name
    assert doc["metadata"]["units"] == "samples"
    assert doc["metadata"]["sampleRate"] == 100


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_real_client_app_and_tags_are_listed(cluster: Cluster, version: str) -> None:
    server = cluster.open
    names = json.loads(server.get_ok("/label-values?label=__name__"))
    assert stored_name(version) in names
    assert app_name(version) not in names  # always with its profile type
    labels = json.loads(server.get_ok("/labels"))
    assert set(TAGS) <= set(labels)
    for key, value in TAGS.items():
        assert value in json.loads(server.get_ok(f"/label-values?label={key}"))
    apps = {a["name"]: a for a in json.loads(server.get_ok("/api/apps"))}
    assert apps[stored_name(version)]["units"] == "samples"


@pytest.mark.parametrize("version", CLIENT_VERSIONS)
def test_real_client_data_is_visible_only_to_its_tenant(cluster: Cluster, version: str) -> None:
    server = cluster.tenanted
    name = stored_name(version)
    mine = server.render(f'{name}{{env="ci"}}', "collapsed", tenant=TENANT)
    assert burned(mine, version) > 0
    assert server.render(name, "collapsed", tenant=OTHER_TENANT) == b""
    assert name in json.loads(server.get_ok("/label-values?label=__name__", tenant=TENANT))
    assert name not in json.loads(server.get_ok("/label-values?label=__name__", tenant=OTHER_TENANT))
    assert not set(TAGS) & set(json.loads(server.get_ok("/labels", tenant=OTHER_TENANT)))
    status, _ = server.get(f"/render?query={name}&format=collapsed")  # no X-Scope-OrgID
    assert status == 401
