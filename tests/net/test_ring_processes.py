# Real processes gossiping a ring: `pyro-core member -ring.register` instances register in the
# ingester ring through the KV store; `pyro-core ring-status` joins, prints members and rings
# (JSON) and leaves; a kill -9'd instance's heartbeat goes stale; a SIGTERM'd one leaves the ring.
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

from .golang import free_port
from .procs import MemberProcess

RING = ["-ring.register", "-ingester.heartbeat-period=500ms", "-ingester.num-tokens=64"]


def ring_status(port: int) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-m", "pyro_core", "ring-status", f"-memberlist.join=127.0.0.1:{port}",
         "-memberlist.bind-addr=127.0.0.1", "--json"],
        capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def instances(status: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    ring = status["rings"].get("collectors/ring", {"instances": []})
    return {i["id"]: i for i in ring["instances"]}


def wait_status(port: int, predicate, timeout: float) -> dict:  # type: ignore[no-untyped-def, type-arg]
    deadline = time.monotonic() + timeout
    status = ring_status(port)
    while not predicate(status) and time.monotonic() < deadline:
        time.sleep(0.5)
        status = ring_status(port)
    return status


def test_members_register_in_a_gossiped_ring_seen_by_ring_status() -> None:
    ports = [free_port() for _ in range(3)]
    seed = MemberProcess("r0", ports[0], [], RING)
    assert seed.wait_for(lambda p: "up at" in p.output(), 20), seed.output()
    procs = [seed] + [MemberProcess(f"r{i}", ports[i], [ports[0]], RING) for i in (1, 2)]
    try:
        status = wait_status(ports[0], lambda s: len(instances(s)) == 3, 30)
        ring = instances(status)
        assert sorted(ring) == ["r0", "r1", "r2"]
        assert all(i["state"] == "ACTIVE" and i["num_tokens"] == 64 and i["healthy"] for i in ring.values())
        assert abs(sum(i["ownership"] for i in ring.values()) - 100.0) < 0.01
        assert {"r0", "r1", "r2"} <= {m["name"] for m in status["members"]}

        procs[2].kill()  # kill -9: its ring entry stays, its heartbeat goes stale
        status = wait_status(ports[0], lambda s: instances(s)["r2"]["heartbeat_age"] > 4, 30)
        ring = instances(status)
        assert ring["r2"]["heartbeat_age"] > 4 and ring["r1"]["heartbeat_age"] < 3

        assert procs[1].terminate() == 0  # SIGTERM: LEAVING, then a LEFT tombstone clients never see
        status = wait_status(ports[0], lambda s: "r1" not in instances(s), 30)
        assert "r1" not in instances(status)
        assert "left the cluster" in procs[1].output()
    finally:
        for p in procs:
            p.terminate()


def test_ring_status_text_output_and_join_failure() -> None:
    port = free_port()
    seed = MemberProcess("t0", port, [], RING)
    try:
        assert seed.wait_for(lambda p: "up at" in p.output(), 20), seed.output()
        wait_status(port, lambda s: len(instances(s)) == 1, 20)
        out = subprocess.run(
            [sys.executable, "-m", "pyro_core", "ring-status", f"-memberlist.join=127.0.0.1:{port}",
             "-memberlist.bind-addr=127.0.0.1"],
            capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "ring collectors/ring (1 instances)" in out.stdout and "t0" in out.stdout
        bad = subprocess.run(
            [sys.executable, "-m", "pyro_core", "ring-status", f"-memberlist.join=127.0.0.1:{free_port()}",
             "-memberlist.bind-addr=127.0.0.1", "-memberlist.stream-timeout=500ms"],
            capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        assert bad.returncode == 1 and "could not join" in bad.stderr
    finally:
        seed.terminate()
