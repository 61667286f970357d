"""Tests of the Go memberlist harness (tests/net/golang.py) with real Go nodes only, on 127.0.0.1.

They prove the harness sees what memberlist 0.2.2 does: a cluster forming, a SIGKILLed node failing, a
SIGTERMed node leaving, and encryption keys gating membership.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .golang import GoNode, build_mlnode, free_port

FAST = {"probe_interval_ms": 200}  # suspicion timeout 3 x probe interval: failures seen in ~1 s


@pytest.fixture(scope="session")
def mlnode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mlnode(tmp_path_factory)


@pytest.fixture
def nodes() -> Iterator[list[GoNode]]:
    """Started nodes go here; all are stopped at the end of the test."""
    started: list[GoNode] = []
    yield started
    for node in started:
        node.kill()


def cluster(binary: Path, started: list[GoNode], names: list[str], **kw: object) -> list[GoNode]:
    """Start ``names`` in turn, each joining the first; wait until every node sees all of them alive."""
    for name in names:
        join = [started[0].addr] if started else []
        started.append(GoNode(binary, name, join=join, **kw))  # type: ignore[arg-type]
    want = dict.fromkeys(names, "alive")
    for node in started:
        assert node.wait_members(want, timeout=10), node.output()
    return started


def test_free_port_is_free_for_tcp_and_udp() -> None:
    import socket

    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))


def test_three_nodes_form_a_cluster(mlnode: Path, nodes: list[GoNode]) -> None:
    a, b, c = cluster(mlnode, nodes, ["go-a", "go-b", "go-c"])
    for node in (a, b, c):
        assert node.member_addrs() == {"go-a": a.addr, "go-b": b.addr, "go-c": c.addr}
        assert node.num_members() == 3
        assert node.live_members() == {"go-a", "go-b", "go-c"}
        assert node.errors() == []
    # join events name the joiner; the first one is the node itself
    assert c.events("join")[0]["node"] == "go-c"
    assert {e["node"] for e in a.events("join")} == {"go-a", "go-b", "go-c"}


def test_killed_node_is_seen_dead(mlnode: Path, nodes: list[GoNode]) -> None:
    a, b, c = cluster(mlnode, nodes, ["go-a", "go-b", "go-c"], **FAST)
    c.kill()
    for node in (a, b):
        assert node.wait_for(lambda n: n.members().get("go-c") in ("dead", None), timeout=10), node.output()
        assert node.members()["go-a"] == node.members()["go-b"] == "alive"
        assert node.live_members() == {"go-a", "go-b"}


def test_killed_node_with_default_timing(mlnode: Path, nodes: list[GoNode]) -> None:
    """DefaultLocalConfig: probe every 1 s, suspicion 3 x 1 s; the harness measures ~2 s to suspect, ~5 s to dead."""
    a, b = cluster(mlnode, nodes, ["go-a", "go-b"])
    started = time.monotonic()
    b.kill()
    assert a.wait_members({"go-b": "suspect"}, timeout=5), a.output()
    assert a.wait_members({"go-b": "dead"}, timeout=6), a.output()
    assert 3 <= time.monotonic() - started < 9
    assert a.num_members() == 1


def test_killed_node_restarts_and_rejoins(mlnode: Path, nodes: list[GoNode]) -> None:
    a, b = cluster(mlnode, nodes, ["go-a", "go-b"], **FAST)
    b.kill()
    assert a.wait_members({"go-b": "dead"}, timeout=5), a.output()
    nodes.append(GoNode(mlnode, "go-b", port=b.port, join=[a.addr], **FAST))  # refutes its death
    assert a.wait_members({"go-b": "alive"}, timeout=5), a.output()
    assert [e["node"] for e in a.events("join", "leave")] == ["go-a", "go-b", "go-b", "go-b"]


def test_stopped_node_is_seen_left(mlnode: Path, nodes: list[GoNode]) -> None:
    a, b, c = cluster(mlnode, nodes, ["go-a", "go-b", "go-c"])
    started = time.monotonic()
    assert c.stop() == 0
    assert time.monotonic() - started < 3  # Leave(2s) returns once the broadcast is out
    assert c.events("shutdown"), c.output()
    assert c.events("leave")[-1]["node"] == "go-c"  # it saw itself leave
    for node in (a, b):
        assert node.wait_members({"go-c": "left"}, timeout=5), node.output()
        assert node.num_members() == 2


def test_seconds_flag_leaves_and_exits(mlnode: Path, nodes: list[GoNode]) -> None:
    (a,) = cluster(mlnode, nodes, ["go-a"])
    b = GoNode(mlnode, "go-b", join=[a.addr], seconds=1.5)
    nodes.append(b)
    assert a.wait_members({"go-b": "alive"}, timeout=5), a.output()
    assert b.proc.wait(10) == 0
    assert a.wait_members({"go-b": "left"}, timeout=5), a.output()


def test_compression_off_joins_compression_on(mlnode: Path, nodes: list[GoNode]) -> None:
    a = GoNode(mlnode, "go-a")
    nodes.append(a)
    nodes.append(GoNode(mlnode, "go-b", join=[a.addr], compression=False))
    want = {"go-a": "alive", "go-b": "alive"}
    assert all(n.wait_members(want, timeout=10) for n in nodes), [n.output() for n in nodes]


KEY_1 = bytes(range(16))
KEY_2 = bytes(range(1, 33))


def test_shared_key_forms_a_cluster(mlnode: Path, nodes: list[GoNode]) -> None:
    cluster(mlnode, nodes, ["go-a", "go-b", "go-c"], key=KEY_2)
    assert all(n.errors() == [] for n in nodes)


@pytest.mark.parametrize(("key_a", "key_b"), [(KEY_1, KEY_2), (KEY_1, None), (None, KEY_1)],
                         ids=["different-keys", "joiner-unkeyed", "seed-unkeyed"])  # fmt: skip
def test_different_keys_do_not_form_a_cluster(
    mlnode: Path, nodes: list[GoNode], key_a: bytes | None, key_b: bytes | None
) -> None:
    a = GoNode(mlnode, "go-a", key=key_a)
    nodes.append(a)
    b = GoNode(mlnode, "go-b", key=key_b, join=[a.addr])
    nodes.append(b)
    assert b.wait_for(lambda n: bool(n.errors()), timeout=5), b.output()
    assert "join" in b.errors()[0]
    time.sleep(1.5)  # several gossip and probe rounds
    assert a.members() == {"go-a": "alive"}
    assert b.members() == {"go-b": "alive"}
