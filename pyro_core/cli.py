# The ``pyro-core`` command line.
# Owns: argument parsing and terminal output. Subcommands: ``demo`` (a ring and shuffle shards on an
# embedded default) and ``member`` (a bare gossip member with every -memberlist.* flag). The
# server, ring-status, plan and bench commands of later issues join here.
from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import trio

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
from pyro_core.flags import MemberlistSettings, add_flag, add_memberlist_flags, memberlist_settings
from pyro_core.memberlist.config import ConfigError
from pyro_core.memberlist.state import MemberEvent
from pyro_core.net.transport import format_address
from pyro_core.ring.errors import RingError

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


async def _run_member(settings: MemberlistSettings) -> int:
    """A bare gossip member: join, log membership changes, leave gracefully on SIGTERM/SIGINT."""
    from pyro_core.net.discovery import DiscoveryError, Resolver
    from pyro_core.net.node import JoinError, MemberlistNode

    def on_event(event: MemberEvent) -> None:
        log.info(
            "member %s: %s at %s (%s)",
            event.kind,
            event.node,
            format_address(event.address),
            event.state.name.lower(),
        )

    node = MemberlistNode(settings.config, settings.transport, on_event=on_event)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(node.run)
            log.info("member %s up at %s", settings.config.name, format_address(addr))
            if settings.join:
                try:
                    addresses = await Resolver().resolve(settings.join)
                    joined = await node.join(addresses)
                    log.info("joined the cluster through %d of %d addresses", joined, len(addresses))
                except (DiscoveryError, JoinError) as exc:
                    if settings.abort_if_join_fails:
                        log.error("%s", exc)
                        nursery.cancel_scope.cancel()
                        return 1
                    log.warning("%s (carrying on alone: -memberlist.abort-if-join-fails=false)", exc)
            async for signum in signals:
                log.info("got %s: leaving the cluster", signal.Signals(signum).name)
                left = await node.leave(settings.leave_timeout)
                log.info("left the cluster%s", "" if left else " (timed out waiting for the broadcast)")
                nursery.cancel_scope.cancel()
                break
    return 0


def run_member(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        settings = memberlist_settings(args, socket.gethostname())
    except (ConfigError, OSError, ValueError) as exc:
        sys.stderr.write(f"pyro-core member: {exc}\n")
        return 2
    try:
        return trio.run(_run_member, settings)
    except OSError as exc:  # e.g. the port is taken
        sys.stderr.write(f"pyro-core member: {exc}\n")
        return 1


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "member":
        return run_member(args)
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
