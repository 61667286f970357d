# Interop with real hashicorp/memberlist (Go, Debian's 0.2.2): a Go node joins a pyro-core cluster
# and a pyro-core member joins a Go cluster; both sides list every member as alive; with Go's
# compression on and off, with a shared encryption key; and each side sees the other's crash.
from __future__ import annotations

from pathlib import Path

import pytest

from .golang import GoNode, build_mlnode, free_port
from .procs import MemberProcess

UDP = ["-memberlist.transport=udp"]
KEY = bytes(range(16))


@pytest.fixture(scope="module")
def mlnode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mlnode(tmp_path_factory)


def start_pyro(name: str, join: list[int], extra: list[str] | None = None) -> MemberProcess:
    proc = MemberProcess(name, free_port(), join, UDP + (extra or []))
    assert proc.wait_for(lambda p: "up at" in p.output(), 20), proc.output()
    return proc


def go_sees(node: GoNode, names: set[str]) -> bool:
    members = node.members()
    return all(members.get(n) == "alive" for n in names)


@pytest.mark.parametrize("compression", [True, False])
def test_go_node_joins_a_pyro_core_cluster(mlnode: Path, compression: bool) -> None:
    a = start_pyro("py-a", [])
    b = start_pyro("py-b", [a.port])
    try:
        with GoNode(mlnode, "go-c", join=[f"127.0.0.1:{a.port}"], compression=compression) as go:
            names = {"py-a", "py-b", "go-c"}
            assert go.wait_for(lambda n: go_sees(n, names), 30), go.output()
            for p in (a, b):
                assert p.wait_for(lambda p: p.alive() == names, 30), p.output()
            go.kill()  # kill -9 of the Go node: pyro-core detects it
            for p in (a, b):
                assert p.wait_for(lambda p: p.states().get("go-c") == "dead", 60), p.output()
    finally:
        a.terminate()
        b.terminate()


def test_pyro_core_member_joins_a_go_cluster_and_leaves_gracefully(mlnode: Path) -> None:
    with GoNode(mlnode, "go-a") as ga, GoNode(mlnode, "go-b", join=[ga.addr]) as gb:
        port = ga.addr.rsplit(":", 1)[1]
        py = start_pyro("py-c", [int(port)])
        try:
            names = {"go-a", "go-b", "py-c"}
            assert py.wait_for(lambda p: p.alive() == names, 30), py.output()
            for g in (ga, gb):
                assert g.wait_for(lambda n: go_sees(n, names), 30), g.output()
            assert py.terminate() == 0  # SIGTERM: a graceful leave Go nodes see as "left"
            for g in (ga, gb):
                assert g.wait_for(lambda n: n.members().get("py-c") in ("left", None), 30), g.output()
        finally:
            py.terminate()


def test_encrypted_cluster_of_go_and_pyro_core(mlnode: Path) -> None:
    a = start_pyro("py-a", [], [f"-memberlist.encryption-key={KEY.hex()}"])
    try:
        with GoNode(mlnode, "go-b", join=[f"127.0.0.1:{a.port}"], key=KEY) as go:
            names = {"py-a", "go-b"}
            assert go.wait_for(lambda n: go_sees(n, names), 30), go.output()
            assert a.wait_for(lambda p: p.alive() == names, 30), a.output()
        with GoNode(mlnode, "go-x", join=[f"127.0.0.1:{a.port}"], key=bytes(16)) as wrong:
            assert not wrong.wait_for(lambda n: "py-a" in n.live_members(), 5)
    finally:
        a.terminate()
