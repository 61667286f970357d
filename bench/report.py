#!/usr/bin/env python
# Turns a pytest-benchmark JSON file (``--benchmark-json``) into Markdown tables for bench/RESULTS.md.
# Owns: the per-group tables (time per operation, operations per second, ratio to the group's peer,
# the target and whether this run met it, ratio to published reference figures) and the
# "compiled kernels vs pure twins" table. Reads the ``extra_info`` conventions of
# bench/test_bench_ring.py (``label``, ``ops``, ``unit``, ``impl``, ``kernel``, ``baseline``,
# ``target*``, ``reference_*``); benchmarks without them count one operation per call and are paired
# compiled/pure by their ``[compiled]`` / ``[pure]`` parameter.
# Usage: python bench/report.py bench/results.json [--stat median|min|mean] [--group NAME ...]
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATS = ("median", "min", "mean")


@dataclass
class Row:
    group: str
    name: str
    label: str
    unit: str
    ops: int
    impl: str
    kernel: str | None
    baseline: bool
    seconds: float  # per round (per call of the benchmarked function), the chosen statistic
    seconds_min: float
    rounds: int
    iqr_rel: float  # interquartile range / median of the rounds: a noise indicator
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ns_per_op(self) -> float:
        return self.seconds / self.ops * 1e9

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")


_PARAM_IMPL = re.compile(r"(?<=[\[-])(compiled|pure)(?=[\]-])")


def _row(bench: dict[str, Any], stat: str) -> Row:
    info = dict(bench.get("extra_info") or {})
    stats = bench["stats"]
    name = bench["name"]
    impl = info.get("impl")
    kernel = info.get("kernel")
    if impl is None:
        m = _PARAM_IMPL.search(name)
        impl = m.group(1) if m else "?"
        if m and kernel is None:
            kernel = _PARAM_IMPL.sub("*", name)
    group = bench.get("group") or bench.get("fullname", name).split("::")[0]
    median = stats["median"]
    return Row(
        group=group,
        name=name,
        label=info.get("label", name),
        unit=info.get("unit", "call"),
        ops=int(info.get("ops", 1)),
        impl=impl,
        kernel=kernel,
        baseline=bool(info.get("baseline", False)),
        seconds=stats[stat],
        seconds_min=stats["min"],
        rounds=int(stats["rounds"]),
        iqr_rel=(stats["iqr"] / median) if median else 0.0,
        info=info,
    )


def fmt_time(ns: float) -> str:
    if ns < 1e3:
        return f"{ns:.1f} ns" if ns < 100 else f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f} k/s"
    return f"{per_s:.1f} /s"


def fmt_ratio(r: float) -> str:
    if r >= 100:
        return f"{r:.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def _target(row: Row, baseline: Row | None) -> tuple[str, str]:
    """The target text and whether this run met it ("met" / "NOT met" / "" when not checkable)."""
    info = row.info
    text = info.get("target", "")
    if not text:
        return "", ""
    ok: bool | None = None
    if "target_ratio" in info and baseline is not None:
        ok = row.ops_per_s / baseline.ops_per_s >= float(info["target_ratio"])
    elif "target_ns_per_op" in info:
        ok = row.ns_per_op <= float(info["target_ns_per_op"])
    elif "target_ops_per_s" in info:
        ok = row.ops_per_s >= float(info["target_ops_per_s"])
    return text, "" if ok is None else ("met" if ok else "**NOT met**")


def group_table(group: str, rows: list[Row]) -> list[str]:
    baselines = [r for r in rows if r.baseline]
    baseline = baselines[0] if baselines else None
    has_ref = any("reference_ns_per_op" in r.info for r in rows)
    has_target = any(r.info.get("target") for r in rows)
    units = sorted({r.unit for r in rows})
    head = ["benchmark", f"time per {'/'.join(units)} (min)", "throughput"]
    if baseline is not None:
        head.append(f"vs {baseline.label}")
    if has_ref:
        head.append("vs reference")
    if has_target:
        head += ["target", "this run"]
    head.append("rounds, IQR")
    out = [f"### {group}", ""]
    if baseline is not None:
        out.append(f"Peer: {baseline.label} (ratios are throughput ÷ the peer's; > 1 = faster).")
        out.append("")
    out += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in sorted(rows, key=lambda r: r.ns_per_op):
        cells = [
            r.label + (" *(peer)*" if r is baseline else ""),
            f"{fmt_time(r.ns_per_op)} ({fmt_time(r.seconds_min / r.ops * 1e9)})",
            fmt_rate(r.ops_per_s),
        ]
        if baseline is not None:
            cells.append(fmt_ratio(r.ops_per_s / baseline.ops_per_s))
        if has_ref:
            ref = r.info.get("reference_ns_per_op")
            cells.append(
                f"{fmt_ratio(float(ref) / r.ns_per_op)} faster than {r.info['reference_label']} ({fmt_time(ref)})"
                if ref
                else ""
            )
        if has_target:
            cells += list(_target(r, baseline))
        cells.append(f"{r.rounds}, ±{r.iqr_rel * 100:.0f}%")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def speedup_table(rows: list[Row]) -> list[str]:
    pairs: dict[str, dict[str, Row]] = {}
    for r in rows:
        if r.kernel and r.impl in ("compiled", "pure"):
            pairs.setdefault(r.kernel, {})[r.impl] = r
    lines = [
        "### Compiled kernels vs their pure-Python twins",
        "",
        "| kernel | compiled | pure twin | speed-up |",
        "|---|---|---|---|",
    ]
    n = 0
    for kernel, pair in pairs.items():
        if "compiled" in pair and "pure" in pair:
            c, p = pair["compiled"], pair["pure"]
            lines.append(
                f"| {kernel} | {fmt_time(c.ns_per_op)} | {fmt_time(p.ns_per_op)} | "
                f"{fmt_ratio(p.ns_per_op / c.ns_per_op)} |"
            )
            n += 1
    lines.append("")
    return lines if n else []


def render(data: dict[str, Any], stat: str = "median", groups: list[str] | None = None) -> str:
    rows = [_row(b, stat) for b in data.get("benchmarks", [])]
    if groups:
        rows = [r for r in rows if r.group in groups]
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}) if isinstance(mi.get("cpu"), dict) else {}
    lines = [
        f"Run {data.get('datetime', '?')} — {cpu.get('brand_raw', mi.get('processor', '?'))}, "
        f"{cpu.get('count', '?')} cores, {mi.get('python_implementation', 'Python')} {mi.get('python_version', '?')}. "
        f"Time per operation = the {stat} round ÷ operations per round (min round in brackets); "
        "IQR = interquartile range of the rounds relative to the median (noise).",
        "",
    ]
    by_group: dict[str, list[Row]] = {}
    for r in rows:
        by_group.setdefault(r.group, []).append(r)
    for group, grows in by_group.items():
        lines += group_table(group, grows)
    lines += speedup_table(rows)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__ or "pytest-benchmark JSON → Markdown tables")
    ap.add_argument("json", type=Path, help="file written by pytest --benchmark-json")
    ap.add_argument("--stat", choices=STATS, default="median", help="statistic per round (default median)")
    ap.add_argument("--group", action="append", help="only these groups (repeatable)")
    args = ap.parse_args(argv)
    data = json.loads(args.json.read_text())
    print(render(data, args.stat, args.group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
