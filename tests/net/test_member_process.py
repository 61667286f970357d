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


def test_member_processes_gossip_over_mutual_tls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    tls = [
        "-memberlist.tls-enabled",
        f"-memberlist.tls-cert-path={tmp_path / 'cert.pem'}",
        f"-memberlist.tls-key-path={tmp_path / 'key.pem'}",
        f"-memberlist.tls-ca-path={tmp_path / 'ca.pem'}",
        "-memberlist.tls-server-name=localhost",
    ]
    ports = [free_port() for _ in range(3)]
    seed = MemberProcess("t0", ports[0], [], tls)
    assert seed.wait_for(lambda p: "up at" in p.output(), 20), seed.output()
    procs = [seed] + [MemberProcess(f"t{i}", ports[i], [ports[0]], tls) for i in (1, 2)]
    plain = None
    try:
        for p in procs:
            assert p.wait_for(lambda p: p.alive() == {"t0", "t1", "t2"}, 30), p.output()
        plain = MemberProcess("intruder", free_port(), [ports[0]], ["-memberlist.stream-timeout=1s"])
        assert plain.proc.wait(30) == 1  # no TLS: cannot join, and says so
        assert "could not join" in plain.output()
        assert "intruder" not in procs[0].states()
    finally:
        for p in procs:
            p.terminate()
        if plain is not None:
            plain.terminate()


def test_member_process_joins_through_a_dns_srv_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    import trio

    from .test_discovery import ZONE, dns_server

    ports = [free_port() for _ in range(2)]
    ZONE[("_memberlist._tcp.proc.test.", "SRV")] = [f"0 0 {p} seeds.proc.test." for p in ports]
    ZONE[("seeds.proc.test.", "A")] = ["127.0.0.1"]
    started: list[int] = []
    stop = threading.Event()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            started.append(await nursery.start(dns_server))
            while not stop.is_set():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    while not started:
        threading.Event().wait(0.01)
    seeds: list[MemberProcess] = []
    newcomer = None
    try:
        for i in range(2):  # one at a time: s1 joins s0, which must be listening first
            seeds.append(MemberProcess(f"s{i}", ports[i], [ports[0]] if i else []))
            assert seeds[-1].wait_for(lambda p: "up at" in p.output(), 20), seeds[-1].output()
        assert seeds[1].wait_for(lambda p: p.alive() == {"s0", "s1"}, 20), seeds[1].output()
        newcomer = MemberProcess(
            "dns-joiner",
            free_port(),
            [],
            ["-memberlist.join=dnssrv+_memberlist._tcp.proc.test", f"-memberlist.dns-server=127.0.0.1:{started[0]}"],
        )
        names = {"s0", "s1", "dns-joiner"}
        assert newcomer.wait_for(lambda p: p.alive() == names, 30), newcomer.output()
        assert "joined the cluster through 2 of 2 addresses" in newcomer.output()
    finally:
        for p in [*seeds, newcomer]:
            if p is not None:
                p.terminate()
        stop.set()
        thread.join(5)
