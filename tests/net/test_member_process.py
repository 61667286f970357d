# Real processes on loopback: `pyro-core member` clusters form through -memberlist.join, survive a
# kill -9 (the others mark the member dead), re-admit it on restart, and leave gracefully on
# SIGTERM — over dskit's TCP transport (the default) and memberlist's UDP+TCP transport.
from __future__ import annotations

import pytest

from .golang import free_port
from .procs import MemberProcess


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_five_member_processes_form_a_cluster_survive_kill_9_and_readmit(transport: str) -> None:
    ports = [free_port() for _ in range(5)]
    extra = [f"-memberlist.transport={transport}"]
    seed = MemberProcess("p0", ports[0], [], extra)
    assert seed.wait_for(lambda p: "up at" in p.output(), 20), seed.output()
    procs = [seed] + [MemberProcess(f"p{i}", ports[i], [ports[0]], extra) for i in range(1, 5)]
    names = {f"p{i}" for i in range(5)}
    try:
        for p in procs:
            assert p.wait_for(lambda p: p.alive() == names, 30), p.output()
        procs[3].kill()  # kill -9: no goodbye
        survivors = procs[:3] + procs[4:]
        for p in survivors:
            assert p.wait_for(lambda p: p.states().get("p3") == "dead", 60), p.output()
        procs[3] = MemberProcess("p3", ports[3], [ports[0]], extra)  # restarted with the same name
        for p in procs:
            assert p.wait_for(lambda p: p.alive() == names, 60), p.output()
        assert procs[2].terminate() == 0  # SIGTERM: leave gracefully
        for p in procs[:2] + procs[3:]:
            assert p.wait_for(lambda p: p.states().get("p2") == "left", 30), p.output()
    finally:
        for p in procs:
            p.terminate()


def test_member_fails_clearly_when_no_join_address_answers() -> None:
    proc = MemberProcess("lonely", free_port(), [free_port()], ["-memberlist.stream-timeout=500ms"])
    assert proc.proc.wait(30) == 1
    proc._reader.join(2)
    assert "could not join any of" in proc.output()
