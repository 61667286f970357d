# The ``pyro-core`` command line.
# Owns: argument parsing and terminal output. Subcommands: ``demo`` (a ring and shuffle shards on an
# embedded default), ``member`` (a gossip member with every -memberlist.* flag, optionally
# registered in the ingester ring), ``ring-status`` (join, print members and rings, leave) and
# ``server`` (the HTTP server, pyro_core/server/serve.py, with a gossip member registered in the
# ingester ring; storage stays local).
from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import prometheus_client
import trio
from prometheus_client import CollectorRegistry

from pyro_core import (
    IMPLEMENTATION,
    WRITE,
    RingDesc,
    generate_tokens,
    labels_string,
    overlap_probabilities,
    ring_class,
    shard_combinations,
    token_for,
)
from pyro_core.config import add_config_flags, parse_args_with_config
from pyro_core.flags import (
    MemberlistSettings,
    add_flag,
    add_memberlist_flags,
    memberlist_settings,
    parse_bool,
    parse_duration,
    parse_port,
    parse_positive_int,
)
from pyro_core.memberlist.config import ConfigError
from pyro_core.memberlist.state import MemberEvent
from pyro_core.net.cluster import ClusterMember, RingRegistration
from pyro_core.net.transport import format_address
from pyro_core.plan.cli import add_bench_parser, add_plan_parser, run_bench, run_plan
from pyro_core.ring.errors import RingError
from pyro_core.server.auth import add_auth_flags
from pyro_core.server.overrides import add_limits_flags, add_runtime_config_flags
from pyro_core.status import cluster_status, render_cluster_status

log = logging.getLogger("pyro_core")

DEMO_SERIES = [
    ("anonymous", {"__name__": "process_cpu", "service_name": "checkout"}),
    ("anonymous", {"__name__": "memory", "service_name": "checkout"}),
    ("tenant-1", {"__name__": "process_cpu", "service_name": "foo"}),
    ("tenant-2", {"__name__": "process_cpu", "service_name": "api", "env": "prod"}),
]


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, with a clear message otherwise."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {n}")
        return n

    return parse


def build_demo_ring(instances: int, zones: int, tokens: int, seed: int, now: int) -> RingDesc:
    """An embedded default ring: ``instances`` ingesters named like Pyroscope's, spread over zones."""
    rng = np.random.default_rng(seed)
    desc = RingDesc()
    taken: list[int] = []
    for i in range(instances):
        toks = generate_tokens(tokens, taken, rng)
        taken.extend(toks.tolist())
        desc.add_instance(
            f"ingester-{i}",
            f"10.0.{i // 250}.{i % 250 + 1}:9095",
            zone=f"zone-{chr(ord('a') + i % zones)}" if zones > 1 else "",
            tokens=toks,
            now=now,
        )
    return desc


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    now = 1_700_000_000
    desc = build_demo_ring(args.instances, args.zones, args.tokens, args.seed, now)
    ring = ring_class()(desc, replication_factor=args.replication_factor, zone_awareness=args.zones > 1)
    ownership = ring.ownership()
    series = []
    for tenant, labels in DEMO_SERIES:
        rendered = labels_string(labels)
        token = token_for(tenant, rendered)
        shard = ring.shuffle_shard(tenant, args.shard_size)
        replicas = shard.get(token, WRITE, now)
        series.append(
            {
                "tenant": tenant,
                "labels": rendered,
                "token": token,
                "shard": shard.instance_ids(),
                "replicas": replicas.instance_ids(),
                "max_errors": replicas.max_errors,
            }
        )
    tenants = {
        f"tenant-{i}": ring.shuffle_shard(f"tenant-{i}", args.shard_size).instance_ids() for i in range(1, 6)
    }
    return {
        "implementation": IMPLEMENTATION,
        "instances": [
            {
                "id": i.id,
                "addr": i.addr,
                "zone": i.zone,
                "state": i.state.name,
                "tokens": len(i.tokens),
                "ownership": ownership[i.id],
            }
            for i in ring.instances
        ],
        "replication_factor": args.replication_factor,
        "zone_awareness": args.zones > 1,
        "shard_size": args.shard_size,
        "series": series,
        "shards": tenants,
        "overlap": {
            "instances": 50,
            "shard_size": 4,
            "combinations": shard_combinations(50, 4),
            "probabilities": overlap_probabilities(50, 4),
        },
    }


def print_demo(result: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(
        f"pyro-core demo ({result['implementation']} kernels): {len(result['instances'])} instances, "
        f"replication factor {result['replication_factor']}, "
        f"zone awareness {'on' if result['zone_awareness'] else 'off'}, shard size {result['shard_size']}\n\n"
    )
    out(f"{'instance':<14}{'zone':<9}{'address':<18}{'state':<8}{'tokens':>7}{'owns':>9}\n")
    for i in result["instances"]:
        out(
            f"{i['id']:<14}{i['zone'] or '-':<9}{i['addr']:<18}{i['state']:<8}{i['tokens']:>7}"
            f"{i['ownership'] * 100:>8.2f}%\n"
        )
    out("\nwhere series go (token = FNV-1 32 of tenant + labels, as Pyroscope's distributor):\n")
    for s in result["series"]:
        out(
            f"  {s['tenant']:<10} {s['labels']:<58} token {s['token']:>10} -> {', '.join(s['replicas'])}"
            f" (max errors {s['max_errors']})\n"
        )
    out("\ntenant shards (dskit shuffle sharding):\n")
    for tenant, shard in result["shards"].items():
        out(f"  {tenant:<10} {', '.join(shard)}\n")
    ov = result["overlap"]
    out(
        f"\ntwo tenants of size-{ov['shard_size']} shards on {ov['instances']} instances "
        f"({ov['combinations']:,} possible shards) share:\n"
    )
    for k, p in enumerate(ov["probabilities"]):
        out(f"  {k} instance{'s' if k != 1 else ' '}: {p * 100:9.4f}%\n")


def _log_event(event: MemberEvent) -> None:
    log.info(
        "member %s: %s at %s (%s)",
        event.kind,
        event.node,
        format_address(event.address),
        event.state.name.lower(),
    )


async def _join(member: ClusterMember, settings: MemberlistSettings) -> bool:
    """Resolve and join; False (after logging why) when the join failed and must abort."""
    from pyro_core.net.discovery import DiscoveryError, Resolver
    from pyro_core.net.node import JoinError

    if not settings.join:
        return True
    try:
        if settings.dns_server is not None:
            resolver = Resolver([settings.dns_server[0]], port=settings.dns_server[1])
        else:
            resolver = Resolver()
        addresses = await resolver.resolve(settings.join)
        joined = await member.node.join(addresses)
        log.info("joined the cluster through %d of %d addresses", joined, len(addresses))
    except (DiscoveryError, JoinError) as exc:
        if settings.abort_if_join_fails:
            log.error("%s", exc)
            return False
        log.warning("%s (carrying on alone: -memberlist.abort-if-join-fails=false)", exc)
    return True


async def _rejoin_every(member: ClusterMember, settings: MemberlistSettings) -> None:
    """-memberlist.rejoin-interval: re-resolve the join addresses and join again (heals partitions
    that push/pull alone cannot, e.g. after every member restarted)."""
    from dataclasses import replace

    while True:
        await trio.sleep(settings.rejoin_interval)
        await _join(member, replace(settings, abort_if_join_fails=False))


async def _run_member(settings: MemberlistSettings, registration: RingRegistration | None) -> int:
    """A bare gossip member: join, log membership changes, optionally register in a ring, and on
    SIGTERM/SIGINT leave the ring and the cluster gracefully."""
    member = ClusterMember(
        settings.config,
        settings.transport,
        registration=registration,
        left_ingesters_timeout=settings.left_ingesters_timeout,
        on_event=_log_event,
    )
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(member.run)
            log.info("member %s up at %s", settings.config.name, format_address(addr))
            if not await _join(member, settings):
                nursery.cancel_scope.cancel()
                return 1
            if settings.rejoin_interval > 0 and settings.join:
                nursery.start_soon(_rejoin_every, member, settings)
            if registration is not None:
                await member.register()
                log.info("registering %s in ring %s", registration.instance_id, registration.ring_key)
            async for signum in signals:
                log.info("got %s: leaving the cluster", signal.Signals(signum).name)
                done = False
                async with trio.open_nursery() as leaving:

                    async def on_second_signal() -> None:
                        async for again in signals:
                            log.warning("got %s again: exiting now", signal.Signals(again).name)
                            leaving.cancel_scope.cancel()
                            return

                    leaving.start_soon(on_second_signal)
                    done = await member.shutdown(settings.leave_timeout)
                    leaving.cancel_scope.cancel()
                log.info("left the cluster%s", "" if done else " (not waiting for every broadcast)")
                nursery.cancel_scope.cancel()
                break
    return 0


async def _run_ring_status(settings: MemberlistSettings, as_json: bool) -> int:
    """Join without registering, take the cluster's state from the joining push/pull, print it, leave."""
    member = ClusterMember(settings.config, settings.transport)
    async with trio.open_nursery() as nursery:
        await nursery.start(member.run)
        if not settings.join:
            log.error("ring-status needs -memberlist.join")
            nursery.cancel_scope.cancel()
            return 2
        if not await _join(member, settings):
            nursery.cancel_scope.cancel()
            return 1
        core = member.node.core
        assert core is not None
        status = cluster_status(core, member.store, time.time())
        await member.node.leave(2.0)
        nursery.cancel_scope.cancel()
    sys.stdout.write((json.dumps(status, indent=2) if as_json else render_cluster_status(status)) + "\n")
    return 0


def _settings(args: argparse.Namespace, command: str) -> MemberlistSettings | None:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        return memberlist_settings(args, socket.gethostname())
    except (ConfigError, OSError, ValueError) as exc:
        sys.stderr.write(f"pyro-core {command}: {exc}\n")
        return None


def run_member(args: argparse.Namespace) -> int:
    settings = _settings(args, "member")
    if settings is None:
        return 2
    registration = None
    if args.ring_register:
        registration = RingRegistration(
            instance_id=args.ring_instance_id or settings.config.name,
            instance_addr=args.ring_instance_addr,
            zone=args.ring_instance_availability_zone,
            num_tokens=args.ingester_num_tokens,
            heartbeat_period=args.ingester_heartbeat_period,
            heartbeat_timeout=args.ring_heartbeat_timeout,
        )
    try:
        return trio.run(_run_member, settings, registration)
    except OSError as exc:  # e.g. the port is taken
        sys.stderr.write(f"pyro-core member: {exc}\n")
        return 1


def run_ring_status(args: argparse.Namespace) -> int:
    settings = _settings(args, "ring-status")
    if settings is None:
        return 2
    try:
        return trio.run(_run_ring_status, settings, args.json)
    except OSError as exc:
        sys.stderr.write(f"pyro-core ring-status: {exc}\n")
        return 1


def _http_instance_addr(host: str, port: int, settings: MemberlistSettings) -> str:
    """The address stored in the ring for this server: its HTTP address (a wildcard listen address
    becomes the memberlist advertise address, else this host's address)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = settings.config.advertise_addr
        if not host:
            try:
                host = socket.gethostbyname(socket.gethostname())
            except OSError:
                host = "127.0.0.1"
    return format_address((host, port))


@dataclass(frozen=True)
class _ServerConfig:
    """What run_server checked before starting: auth, per-tenant limits, remote write."""

    auth: Any
    overrides: Any
    remote_write: Any


async def _run_server(args: argparse.Namespace, settings: MemberlistSettings, config: _ServerConfig) -> int:
    """The HTTP server and its cluster member until SIGTERM/SIGINT; then stop HTTP gracefully, leave
    the ring and the cluster, drain remote write and flush the storage."""
    from pyro_core.server.app import make_app
    from pyro_core.server.auth import outgoing_authorization
    from pyro_core.server.backend import ClusterBackend, LocalIngester
    from pyro_core.server.overrides import RuntimeConfigCollector, watch_runtime_config
    from pyro_core.server.remote_write import RemoteWriter
    from pyro_core.server.serve import serve
    from pyro_core.server.storage import Storage

    host, port = args.server_http_listen_address, args.server_http_listen_port
    registration = RingRegistration(
        instance_id=args.ingester_lifecycler_id or settings.config.name,
        instance_addr=_http_instance_addr(host, port, settings),
        zone=args.ingester_availability_zone,
        num_tokens=args.ingester_num_tokens,
        heartbeat_period=args.ingester_heartbeat_period,
        heartbeat_timeout=args.ring_heartbeat_timeout,
    )
    member = ClusterMember(
        settings.config,
        settings.transport,
        registration=registration,
        left_ingesters_timeout=settings.left_ingesters_timeout,
        on_event=_log_event,
    )
    retention = args.pyroscopedb_retention_period or None
    storage = await trio.to_thread.run_sync(
        Storage(args.pyroscopedb_data_path, retention=retention).open
    )
    try:
        ingester = LocalIngester(storage)
        overrides = config.overrides
        registry = CollectorRegistry()
        registry.register(RuntimeConfigCollector(overrides))
        relay = None
        if config.remote_write.active:
            data_dir = Path(args.pyroscopedb_data_path)
            relay = RemoteWriter(config.remote_write, registry=registry, data_dir=data_dir)
        backend = ClusterBackend(
            ingester,
            member,
            replication_factor=args.distributor_replication_factor,
            heartbeat_timeout=args.ring_heartbeat_timeout,
            zone_awareness=args.distributor_zone_awareness_enabled,
            shard_size=lambda tenant: int(overrides.for_tenant(tenant).ingestion_tenant_shard_size),
            querier_shuffle_sharding=args.querier_shuffle_sharding_ingesters_enabled,
            query_lookback=retention or 0.0,
            timeout=args.distributor_remote_timeout,
            authorization=outgoing_authorization(config.auth),
            registry=registry,
        )
        app = make_app(
            storage,
            backend=backend,
            ingester=ingester,
            multitenancy=args.auth_multitenancy_enabled,
            member=member,
            registry=registry,
            overrides=overrides,
            auth=config.auth,
            relay=relay,
        )
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                addr = await nursery.start(member.run)
                await nursery.start(backend.run)
                if relay is not None:
                    await nursery.start(relay.run)
                if args.runtime_config_file:
                    await nursery.start(
                        watch_runtime_config,
                        args.runtime_config_file,
                        args.runtime_config_reload_period,
                        overrides,
                    )
                log.info("member %s up at %s", settings.config.name, format_address(addr))
                http = trio.CancelScope()
                http_done = trio.Event()

                async def run_http(
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    try:
                        with http:
                            await serve(app, host, port, storage=storage, task_status=task_status)
                    finally:
                        http_done.set()

                binds = await nursery.start(run_http)
                log.info("pyro-core server listening on %s", ", ".join(binds))
                if not await _join(member, settings):
                    http.cancel()
                    with trio.CancelScope(shield=True):
                        await http_done.wait()
                    nursery.cancel_scope.cancel()
                    return 1
                if settings.rejoin_interval > 0 and settings.join:
                    nursery.start_soon(_rejoin_every, member, settings)
                await member.register()
                log.info("registering %s in ring %s", registration.instance_id, registration.ring_key)
                async for signum in signals:
                    log.info("got %s: shutting down", signal.Signals(signum).name)
                    async with trio.open_nursery() as leaving:

                        async def on_second_signal() -> None:
                            async for again in signals:
                                log.warning("got %s again: exiting now", signal.Signals(again).name)
                                leaving.cancel_scope.cancel()
                                return

                        leaving.start_soon(on_second_signal)
                        http.cancel()
                        await http_done.wait()
                        if relay is not None:
                            await relay.drain(settings.leave_timeout)
                        done = await member.shutdown(settings.leave_timeout)
                        log.info("left the cluster%s", "" if done else " (not waiting for every broadcast)")
                        leaving.cancel_scope.cancel()
                    nursery.cancel_scope.cancel()
                    break
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(functools.partial(storage.flush, time.time(), force=True))
        storage.close()
        log.info("storage flushed")
    return 0


def run_server(args: argparse.Namespace) -> int:
    from pyro_core.server.auth import AuthConfig, AuthConfigError
    from pyro_core.server.overrides import Limits, Overrides, RuntimeConfigError, load_runtime_config
    from pyro_core.server.relay_config import RemoteWriteConfig, RemoteWriteConfigError

    settings = _settings(args, "server")
    if settings is None:
        return 2
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # like Go's client: no *_created series
    try:  # every configuration error is reported before anything starts
        auth = AuthConfig.from_args(args)
        overrides = Overrides(Limits.from_args(args))
        if args.runtime_config_file:
            overrides.apply(load_runtime_config(args.runtime_config_file))
        remote_write = RemoteWriteConfig.from_mapping(getattr(args, "remote_write", None))
    except (AuthConfigError, RuntimeConfigError, RemoteWriteConfigError, ValueError) as exc:
        sys.stderr.write(f"pyro-core server: {exc}\n")
        return 2
    try:
        return trio.run(_run_server, args, settings, _ServerConfig(auth, overrides, remote_write))
    except OSError as exc:  # e.g. a port is taken or the data path is not writable
        sys.stderr.write(f"pyro-core server: {exc}\n")
        return 1
    except BaseExceptionGroup as group:  # the same, raised inside a nursery (e.g. hypercorn's bind)
        found = _first_os_error(group)
        if found is None:
            raise
        sys.stderr.write(f"pyro-core server: {found}\n")
        return 1


def _first_os_error(group: BaseExceptionGroup[BaseException]) -> OSError | None:
    for exc in group.exceptions:
        if isinstance(exc, OSError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_os_error(exc)
            if inner is not None:
                return inner
    return None


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-core", description="pyro-core: a cluster core for profiling backends"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a ring and shuffle shards on an embedded default")
    demo.add_argument("--instances", type=_int_at_least(1), default=6)
    demo.add_argument("--zones", type=_int_at_least(1), default=3)
    demo.add_argument(
        "--tokens", type=_int_at_least(1), default=128, help="tokens per instance (Pyroscope ingesters: 128)"
    )
    demo.add_argument("--replication-factor", type=_int_at_least(1), default=3)
    demo.add_argument("--shard-size", type=_int_at_least(0), default=3, help="0 = every instance")
    demo.add_argument("--seed", type=int, default=42, help="seed of the token generator")
    demo.add_argument("--json", action="store_true", help="print JSON instead of tables")
    member = sub.add_parser("member", help="run a bare gossip member (no HTTP server)")
    add_memberlist_flags(member)
    add_flag(member, "log.level", choices=["debug", "info", "warn", "error"], default="info")
    add_flag(
        member,
        "ring.register",
        type=parse_bool,
        default=False,
        help="register this member in the ingester ring (collectors/ring) and heartbeat it",
    )
    add_flag(member, "ring.instance-id", default="", help="instance id in the ring (default: the node name)")
    add_flag(member, "ring.instance-addr", default="", help="address stored in the ring (default: advertise)")
    add_flag(member, "ring.instance-availability-zone", default="")
    add_flag(member, "ring.heartbeat-timeout", type=parse_duration, default=60.0)
    add_flag(member, "ingester.num-tokens", type=parse_positive_int, default=128)
    add_flag(member, "ingester.heartbeat-period", type=parse_duration, default=5.0)
    status = sub.add_parser("ring-status", help="join a cluster, print its members and rings, leave")
    add_memberlist_flags(status)
    status.set_defaults(memberlist_bind_port=0)
    add_flag(status, "log.level", choices=["debug", "info", "warn", "error"], default="warn")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    server = sub.add_parser("server", help="run a single-node Pyroscope-compatible HTTP server")
    add_flag(server, "server.http-listen-port", type=parse_port, default=4040)
    add_flag(server, "server.http-listen-address", default="0.0.0.0")
    add_flag(server, "pyroscopedb.data-path", default="./data", help="storage directory (WAL and blocks)")
    add_flag(server, "auth.multitenancy-enabled", type=parse_bool, default=False)
    add_flag(server, "log.level", choices=["debug", "info", "warn", "error"], default="info")
    add_memberlist_flags(server)
    add_flag(
        server, "ingester.lifecycler.id", default="", help="instance id in the ring (default: the node name)"
    )
    add_flag(server, "ingester.num-tokens", type=parse_positive_int, default=128)
    add_flag(server, "ingester.heartbeat-period", type=parse_duration, default=5.0)
    add_flag(server, "ingester.availability-zone", default="", help="this instance's zone in the ring")
    add_flag(
        server,
        "ring.heartbeat-timeout",
        type=parse_duration,
        default=60.0,
        help="an ingester whose heartbeat is older is unhealthy",
    )
    add_flag(
        server,
        "distributor.replication-factor",
        type=_int_at_least(1),
        default=1,
        help="ingesters each series is written to (Pyroscope's default: 1)",
    )
    add_flag(
        server,
        "distributor.ingestion-tenant-shard-size",
        type=_int_at_least(0),
        default=0,
        help="ingesters of each tenant's shuffle shard (0: every ingester)",
    )
    add_flag(server, "distributor.zone-awareness-enabled", type=parse_bool, default=False)
    add_flag(
        server,
        "distributor.remote-timeout",
        type=parse_duration,
        default=10.0,
        help="timeout of a call to another ingester",
    )
    add_flag(
        server,
        "querier.shuffle-sharding-ingesters-enabled",
        type=parse_bool,
        default=False,
        help="query only the tenant's shard (and its members within the retention period)",
    )
    add_config_flags(server)
    add_limits_flags(server)  # after -distributor.ingestion-tenant-shard-size, which it keeps
    add_runtime_config_flags(server)
    add_auth_flags(server)
    add_plan_parser(sub)
    add_bench_parser(sub)
    add_flag(
        server,
        "pyroscopedb.retention-period",
        type=parse_duration,
        default=7 * 86400.0,
        help="delete blocks older than this (0: keep forever); also the querier's shard lookback",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args_with_config(make_parser(), argv)
    if args.command == "plan":
        return run_plan(args)
    if args.command == "bench":
        return run_bench(args)
    if args.command == "member":
        return run_member(args)
    if args.command == "ring-status":
        return run_ring_status(args)
    if args.command == "server":
        return run_server(args)
    if args.command == "demo":
        try:
            result = run_demo(args)
        except RingError as exc:
            sys.stderr.write(f"pyro-core demo: {exc}\n")
            return 1
        try:
            if args.json:
                json.dump(result, sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                print_demo(result)
        except BrokenPipeError:  # e.g. piped into head
            sys.stderr.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
