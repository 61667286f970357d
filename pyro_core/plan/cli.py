# The command lines `pyro-core plan` and `pyro-core bench`: flags in, tables / JSON / report out.
# Owns: the argparse parsers (``add_plan_parser`` / ``add_bench_parser`` for pyro_core/cli.py to mount,
# ``main`` for ``python -m pyro_core.plan``), turning flags and a scenario file into a Scenario, the
# terminal tables, tqdm progress bars (stderr, off when not a TTY or with --quiet), and exit codes:
# 0 done, 2 bad input (one clear line on stderr, never a traceback).
# Must not know: how any figure is computed (pyro_core.plan.plan and .bench do that).
#
# `plan --json` prints one object with the keys: scenario, load (total_ingest_mb_s,
# total_replicated_mb_s, mean_mb_s, max_mb_s, min_mb_s, imbalance, most_loaded, instance_capacity_mb_s,
# max_utilisation, distinct_shards, per_instance_mb_s), overlap (instances, shard_size, pairs,
# combinations, exact, simulated, counts, chi_square, degrees_of_freedom), blast_radius (one entry per
# k), zone_failure, churn (add / remove), gossip (the model), gossip_simulated (null without
# --gossip-simulate), recommendation (null without a capacity), timings.
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pyro_core.plan.scenario import DISTRIBUTIONS, EXAMPLE, ScenarioError, build_scenario, load_scenario_file

PLAN_HELP = "size a cluster: load, overlap, blast radius, churn, gossip and a recommendation"
BENCH_HELP = "measure this machine and write the per-instance capacity `plan --capacity` reads"


# -- parsers -------------------------------------------------------------------------------------------
def _plan_arguments(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("cluster (flags override the scenario file)")
    c.add_argument("--instances", type=int, help="ingester instances")
    c.add_argument("--zones", type=int, help="availability zones (>1: zone-aware replication); default 1")
    c.add_argument("--tokens", type=int, help="tokens per instance (default 128, Pyroscope's)")
    c.add_argument("--replication-factor", type=int, help="replicas per series (default 1, Pyroscope's)")
    c.add_argument("--shard-size", type=int, help="tenant shard size (0 = every instance; default 0)")
    c.add_argument(
        "--fail-instances", type=int, help="k for the blast radius of k failed instances (default 1)"
    )
    t = p.add_argument_group("tenants")
    t.add_argument("--tenants", type=int, help="synthetic tenants to generate")
    t.add_argument(
        "--rate-distribution", choices=DISTRIBUTIONS, help="their ingest rates (default lognormal)"
    )
    t.add_argument("--mean-rate", type=float, help="mean ingest rate per tenant, MB/s (default 1)")
    t.add_argument("--rate-sigma", type=float, help="lognormal sigma (default 1)")
    t.add_argument("--zipf-exponent", type=float, help="zipf exponent (default 1.1)")
    t.add_argument("--scenario", metavar="FILE.yaml", help="YAML scenario (see --example-scenario)")
    t.add_argument("--example-scenario", action="store_true", help="print an example scenario file and exit")
    k = p.add_argument_group("capacity")
    g = k.add_mutually_exclusive_group()
    g.add_argument("--capacity", metavar="FILE", help="capacity JSON written by `pyro-core bench`")
    g.add_argument("--instance-capacity", type=float, metavar="MB/s", help="what one instance ingests")
    k.add_argument("--headroom", type=float, help="share of capacity to keep free (default 0.3)")
    m = p.add_argument_group("memberlist (gossip)")
    m.add_argument("--gossip-interval", type=float, metavar="S", help="seconds between gossip rounds (0.2)")
    m.add_argument("--gossip-nodes", type=int, help="members gossiped to per round (3)")
    m.add_argument("--retransmit-mult", type=int, help="retransmit multiplier (4)")
    m.add_argument("--packet-size", type=int, metavar="BYTES", help="largest gossip packet (1400)")
    m.add_argument("--pushpull-interval", type=float, metavar="S", help="push/pull interval (30)")
    m.add_argument("--gossip-loss", type=float, help="packet loss to plan for, 0..1 (0)")
    m.add_argument("--heartbeat-period", type=float, metavar="S", help="ingester heartbeat period (5)")
    o = p.add_argument_group("output")
    o.add_argument("--seed", type=int, help="seed for tokens, tenants and samples (default 0)")
    o.add_argument("--json", action="store_true", help="print JSON instead of tables")
    o.add_argument("--report", metavar="DIR_OR_FILE.html", help="write an HTML report with plots")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    o.add_argument("--overlap-pairs", type=int, default=20_000, help="tenant pairs to simulate (20000)")
    o.add_argument("--gossip-trials", type=int, default=100, help="Monte Carlo gossip trials (100)")
    o.add_argument(
        "--gossip-simulate",
        type=float,
        default=0.0,
        metavar="S",
        help="also simulate S seconds of the cluster heartbeating through real KV stores and print the "
        "simulated figures beside the model (0: off; it first settles for two heartbeat periods and a "
        "push/pull interval; 60 s at 50 instances take about 30 s)",
    )
    o.add_argument("--no-recommend", action="store_true", help="skip the instance-count search")


def add_plan_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("plan", help=PLAN_HELP, description=PLAN_HELP)
    _plan_arguments(p)
    return p


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("bench", help=BENCH_HELP, description=BENCH_HELP)
    p.add_argument("--quick", action="store_true", help="short runs (well under a minute)")
    p.add_argument("--output", "-o", default="capacity.json", help="capacity JSON to write")
    p.add_argument("--duration", type=float, help="seconds of ingest load (default 10, quick 3)")
    p.add_argument("--connections", type=int, default=16, help="concurrent ingest connections")
    p.add_argument("--load-generator", choices=("auto", "wrk", "builtin"), default="auto")
    p.add_argument("--json", action="store_true", help="print the capacity JSON instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


# -- plan --------------------------------------------------------------------------------------------
def _fail(command: str, message: str) -> int:
    print(f"pyro-core {command}: error: {message}", file=sys.stderr)
    return 2


def read_capacity(path: str) -> float:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"cannot read capacity file {path}: {exc}") from None
    value = data.get("instance_capacity_mb_s") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ScenarioError(f"{path}: no positive instance_capacity_mb_s (write it with pyro-core bench)")
    return float(value)


def scenario_from_args(args: argparse.Namespace) -> Any:
    file_values = load_scenario_file(args.scenario) if args.scenario else {}
    capacity = read_capacity(args.capacity) if args.capacity else args.instance_capacity
    overrides = {
        "instances": args.instances,
        "zones": args.zones,
        "tokens": args.tokens,
        "replication_factor": args.replication_factor,
        "shard_size": args.shard_size,
        "fail_instances": args.fail_instances,
        "instance_capacity": capacity,
        "headroom": args.headroom,
        "seed": args.seed,
        "mix.count": args.tenants,
        "mix.distribution": args.rate_distribution,
        "mix.mean_rate": args.mean_rate,
        "mix.sigma": args.rate_sigma,
        "mix.zipf_exponent": args.zipf_exponent,
        "gossip.interval": args.gossip_interval,
        "gossip.nodes": args.gossip_nodes,
        "gossip.retransmit_mult": args.retransmit_mult,
        "gossip.packet_size": args.packet_size,
        "gossip.push_pull_interval": args.pushpull_interval,
        "gossip.loss": args.gossip_loss,
        "gossip.heartbeat_period": args.heartbeat_period,
    }
    return build_scenario(file_values, overrides)


def progress_factory(quiet: bool) -> Any:
    enabled = not quiet and sys.stderr.isatty()

    @contextlib.contextmanager
    def bar(desc: str, total: int) -> Iterator[Any]:
        from tqdm import tqdm

        with tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, leave=False) as t:
            yield t

    return bar


def run_plan(args: argparse.Namespace) -> int:
    """`pyro-core plan`: 0 on success, 2 on bad input."""
    if args.example_scenario:
        print(EXAMPLE, end="")
        return 0
    from pyro_core.plan.plan import run

    try:
        for name in ("overlap_pairs", "gossip_trials", "gossip_simulate"):
            if getattr(args, name) < 0:
                raise ScenarioError(f"--{name.replace('_', '-')} must be ≥ 0")
        scenario = scenario_from_args(args)
        result = run(
            scenario,
            progress=progress_factory(args.quiet),
            overlap_pairs=args.overlap_pairs,
            gossip_trials=args.gossip_trials,
            gossip_simulate=args.gossip_simulate,
            recommend=not args.no_recommend,
        )
        report_path = None
        if args.report:
            from pyro_core.plan.report import ReportError, write_report

            try:
                report_path = write_report(result, args.report)
            except ReportError as exc:
                raise ScenarioError(str(exc)) from None
    except ScenarioError as exc:
        return _fail("plan", str(exc))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(render_plan(result))
    if report_path is not None:
        print(f"report: {report_path}", file=sys.stderr)
    return 0


# -- tables --------------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns: text left, numbers right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        len(cells) > 1 and all(_is_number(r[i]) or r[i] == "-" for r in cells[1:])
        for i in range(len(headers))
    ]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(r, widths, numeric, strict=True))

    out = [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    return "\n".join(s.rstrip() for s in out)


def _is_number(s: str) -> bool:
    return bool(s) and (s[0].isdigit() or (len(s) > 1 and s[0] in "-+." and s[1].isdigit()))


def pct(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if x and abs(x) < 10 ** (-digits) / 100:
        return f"{x * 100:.2g}%"
    return f"{x * 100:.{digits}f}%"


def num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:,.{digits}f}"


def render_gossip(sg: dict[str, Any], gs: dict[str, Any], sim: dict[str, Any] | None) -> list[str]:
    """The gossip section: the model, and the simulation beside it when one ran."""

    def s(key: str, digits: int = 0) -> str:
        return num(sim[key], digits) if sim is not None else "-"

    util = gs["gossip_utilisation"]
    out = [
        f"Gossip (every {sg['interval_s']} s to {sg['nodes']} members, retransmit limit "
        f"{gs['retransmit_limit']}, {sg['loss']:.0%} loss, heartbeat every {sg['heartbeat_period_s']} s)",
        table(
            ["ring change reaches (model)", "seconds"],
            [
                [
                    f"all members, Monte Carlo median ({gs['trials']} trials, "
                    f"{gs['monte_carlo_budget']:.3g} sends each)",
                    num(gs["all_members_median_s"]),
                ],
                ["all members, Monte Carlo p99", num(gs["all_members_p99_s"])],
                ["99.99%, mean field with that budget (- : stops short)", num(gs["mean_field_s"])],
                ["99.99%, Serf's model (unlimited sends)", num(gs["serf_model_s"])],
                [
                    f"missed by gossip ({pct(gs['stop_short_share'], 1)} of trials): push/pull within",
                    num(gs["heal_within_s"], 0),
                ],
            ],
        ),
        table(
            ["per member", "model", "simulated"],
            [
                [
                    f"ring deltas offered ({num(gs['ring_changes_per_s'], 1)} changes/s"
                    f" × {gs['update_bytes']} B"
                    f" × limit {gs['retransmit_limit']}), B/s",
                    num(gs["offered_bytes_per_s"], 0),
                    "-",
                ],
                [
                    f"delta slots ({gs['deltas_per_packet']} per {sg['packet_size']} B packet), deltas/s",
                    num(gs["delta_slots_per_s"], 1),
                    "-",
                ],
                [
                    "deltas sent, deltas/s",
                    num(min(gs["offered_deltas_per_s"], gs["delta_slots_per_s"]), 1),
                    s("deltas_sent_per_s", 1),
                ],
                ["ring delta bytes sent, B/s", num(gs["gossip_bytes_per_s"], 0), s("delta_bytes_per_s")],
                [
                    "sends of each heartbeat (own / forwarded)",
                    f"{num(gs['own_sends'], 1)} / {num(gs['forwarded_sends'], 2)} (mean "
                    f"{num((gs['own_sends'] + (gs['nodes'] - 1) * gs['forwarded_sends']) / gs['nodes'], 2)})",
                    s("transmits_per_change", 2) + (" (mean)" if sim is not None else ""),
                ],
                ["heartbeat lag, mean s", num(gs["heartbeat_lag_mean_s"]), s("heartbeat_lag_mean_s", 2)],
                ["heartbeat lag, p99 s", num(gs["heartbeat_lag_p99_s"], 1), s("heartbeat_lag_p99_s", 1)],
                ["probes, B/s", num(gs["probe_bytes_per_s"], 0), "-"],
                [
                    "UDP in all (deltas + probes), B/s",
                    num(gs["gossip_bytes_per_s"] + gs["probe_bytes_per_s"], 0),
                    s("udp_bytes_per_s"),
                ],
                [
                    f"push/pull ({gs['state_bytes']:,} B each way every {gs['heal_within_s']:.0f} s), B/s",
                    num(gs["push_pull_bytes_per_s"], 0),
                    s("push_pull_bytes_per_s"),
                ],
                ["total, B/s", num(gs["total_bytes_per_s"], 0), s("total_bytes_per_s")],
            ],
        ),
        f"gossip ceiling {num(gs['gossip_ceiling_bytes_per_s'], 0)} B/s (nodes × packet / interval); "
        f"with whole deltas per packet {num(gs['gossip_capacity_bytes_per_s'], 0)} B/s; "
        "utilisation (model) "
        + (pct(util, 1) if util is not None else "unbounded: a delta does not fit a packet"),
    ]
    if util is None or util > 1:
        out.append(
            "  ** saturated: bandwidth stays at the capacity; each member's queue keeps one delta per "
            "instance (a newer heartbeat invalidates the queued one), so heartbeats get fewer sends and "
            f"{pct(gs['gossip_miss_share'], 1)} of members miss each one: ring changes reach them "
            "a heartbeat or a push/pull later (the lag above) **"
        )
    if gs["heartbeat_lag_p99_s"] is not None and gs["heartbeat_lag_p99_s"] >= sg["heartbeat_timeout_s"]:
        out.append(
            f"  ** p99 heartbeat lag ≥ the {sg['heartbeat_timeout_s']:.0f} s heartbeat timeout: members "
            "will see healthy instances as unhealthy **"
        )
    if sim is not None:
        out.append(
            f"simulated: {sim['nodes']} members for {sim['seconds']:.0f} s (seed {sim['seed']}), "
            "real KV stores and lifecyclers on the deterministic SWIM simulation"
        )
    return out


def render_plan(r: dict[str, Any]) -> str:
    sc, load, ov, gs = r["scenario"], r["load"], r["overlap"], r["gossip"]
    out = [
        f"Cluster: {sc['instances']} instances, {sc['zones']} zone(s), {sc['tokens']} tokens each, "
        f"RF {sc['replication_factor']}, shard size {sc['shard_size'] or 'all'}, {sc['tenants']} tenants",
        "",
        "Load per instance (real token ownership × real shuffle shards, replicas included)",
        table(
            ["ingest", "written", "mean", "max", "min", "max/mean", "capacity", "peak use", "shards"],
            [
                [
                    num(load["total_ingest_mb_s"]) + " MB/s",
                    num(load["total_replicated_mb_s"]) + " MB/s",
                    num(load["mean_mb_s"]),
                    num(load["max_mb_s"]),
                    num(load["min_mb_s"]),
                    num(load["imbalance"], 3),
                    num(load["instance_capacity_mb_s"]),
                    pct(load["max_utilisation"], 1),
                    load["distinct_shards"],
                ]
            ],
        ),
        "",
        table(
            ["most loaded", "zone", "MB/s"],
            [[m["instance"], m["zone"] or "-", num(m["mb_s"])] for m in load["most_loaded"]],
        ),
        "",
        f"Pairwise tenant overlap ({ov['pairs']:,} simulated pairs; {ov['combinations']:,} possible shards)",
        table(
            ["shared instances", "exact", "simulated", "pairs"],
            [
                [k, pct(e, 4), pct(s, 4), c]
                for k, (e, s, c) in enumerate(zip(ov["exact"], ov["simulated"], ov["counts"], strict=True))
            ],
        ),
        f"chi-square {ov['chi_square']:.2f} on {ov['degrees_of_freedom']} degrees of freedom",
        "",
        "Blast radius (share of tenants)",
        table(
            ["failed", "lose a replica", "lose quorum", "± stderr", "worst set", "by rate", "method"],
            [
                [
                    f"{b['failed']} instance(s)",
                    pct(b["lose_replica_share"]),
                    pct(b["lose_quorum_share"], 3),
                    pct(b["lose_quorum_stderr"], 3),
                    pct(b["lose_quorum_worst"]),
                    pct(b["lose_quorum_rate_share"], 3),
                    f"{b['method']} ({b['failure_sets']:,} sets)",
                ]
                for b in r["blast_radius"]
            ]
            + [
                [
                    f"zone {z['zone']}",
                    pct(z["lose_replica_share"]),
                    pct(z["lose_quorum_share"], 3),
                    "-",
                    "-",
                    "-",
                    "exact",
                ]
                for z in r["zone_failure"]
            ],
        ),
        "",
        "One instance added / removed",
        table(
            ["change", "instance", "tenants moved", "share", "max instances changed", "zone key space moved"],
            [
                [
                    c["change"],
                    c["instance"],
                    c["tenants_moved"],
                    pct(c["tenants_moved_share"]),
                    c["max_instances_changed"],
                    pct(c["key_space_moved"]),
                ]
                for c in r["churn"]
            ],
        ),
        "",
        *render_gossip(sc["gossip"], gs, r.get("gossip_simulated")),
        "",
    ]
    rec = r["recommendation"]
    if rec is None:
        out.append(
            "Recommendation: none (needs --instance-capacity MB/s or --capacity FILE, without --no-recommend)"
        )
    else:
        verdict = "meets" if rec["fits"] else "does NOT meet (search limit reached)"
        out.append(
            f"Recommendation: {rec['instances']} instances, shard size {rec['shard_size'] or 'all'} "
            f"— peak {num(rec['peak_load_mb_s'])} MB/s of {num(rec['usable_capacity_mb_s'])} usable "
            f"({pct(rec['peak_utilisation'], 1)} of capacity; {verdict} the headroom)"
        )
        out.append(
            f"  lower bound (perfect balance): {rec['lower_bound_instances']} instances; "
            f"imbalance costs {pct(rec['imbalance_cost'], 1)} more"
        )
        if rec.get("method"):
            out.append(f"  search: {rec['method']}")
        conf = rec["configured_shard_size_instances"]
        if rec["configured_shard_size"] and rec["configured_shard_size"] != rec["shard_size"]:
            out.append(
                f"  keeping shard size {rec['configured_shard_size']}: "
                + (
                    f"{conf} instances"
                    + (" (estimated)" if rec.get("configured_shard_size_instances_estimated") else "")
                    if conf is not None
                    else "no count within the search limit"
                )
            )
        if rec["shard_overrides"]:
            big = sorted(rec["shard_overrides"].items(), key=lambda kv: -kv[1])[:10]
            out.append("  per-tenant shard sizes: " + ", ".join(f"{k}={v}" for k, v in big))
    out.append("")
    out.append("timings: " + ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items()))
    return "\n".join(out)


# -- bench ---------------------------------------------------------------------------------------------
def run_bench(args: argparse.Namespace) -> int:
    """`pyro-core bench`: 0 on success, 2 on bad input, 1 if the measurement failed."""
    from pyro_core.plan.bench import BenchError, render_bench, run_bench_suite

    if args.connections < 1 or (args.duration is not None and not args.duration > 0):
        return _fail("bench", "--connections and --duration must be positive")
    try:
        result = run_bench_suite(
            quick=args.quick,
            duration=args.duration,
            connections=args.connections,
            generator=args.load_generator,
            log=(lambda s: None) if args.quiet or args.json else (lambda s: print(s, file=sys.stderr)),
        )
    except BenchError as exc:
        print(f"pyro-core bench: {exc}", file=sys.stderr)
        return 1
    try:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        return _fail("bench", f"cannot write {args.output}: {exc}")
    print(json.dumps(result, indent=1) if args.json else render_bench(result))
    if not args.json:
        print(f"\ncapacity written to {args.output}: pyro-core plan --capacity {args.output} ...")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyro_core.plan", description="pyro-core capacity planning"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_plan_parser(sub)
    add_bench_parser(sub)
    args = parser.parse_args(argv)
    return run_plan(args) if args.command == "plan" else run_bench(args)
