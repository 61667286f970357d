# The HTML report of a plan: the terminal tables as HTML plus PNG plots (matplotlib, Agg backend).
# Owns: where the report and its plots go (a directory → report.html inside it; a .html path → that file,
# plots beside it), the four plots (load per instance, overlap simulated vs exact, blast radius, gossip
# spread), and escaping. matplotlib is the optional extra `report`: imported here only, lazily, with a
# clear ReportError when it is missing.
# Must not know: how the figures were computed; it reads the plan's JSON-ready dict only.
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from pyro_core.plan.gossip import serf_fraction


class ReportError(Exception):
    """The report cannot be written (matplotlib missing, path unusable)."""


def _targets(path: str) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix.lower() in (".html", ".htm"):
        return p, p.parent
    return p / "report.html", p


def write_report(result: dict[str, Any], path: str) -> Path:
    """Write the report; return the HTML file's path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("the HTML report needs matplotlib: pip install 'pyro-core[report]'") from None
    out, folder = _targets(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {folder}: {exc}") from None
    stem = out.stem
    plots: list[tuple[str, str]] = []

    def save(fig: Any, name: str, caption: str) -> None:
        file = folder / f"{stem}-{name}.png"
        fig.tight_layout()
        fig.savefig(file, dpi=110)
        plt.close(fig)
        plots.append((file.name, caption))

    load = result["load"]
    per = sorted(load["per_instance_mb_s"], reverse=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(range(len(per)), per, width=1.0, color="#4c72b0")
    ax.axhline(load["mean_mb_s"], color="black", lw=1, label=f"mean {load['mean_mb_s']:.2f} MB/s")
    cap = load["instance_capacity_mb_s"]
    if cap:
        ax.axhline(cap, color="#c44e52", lw=1.5, label=f"capacity {cap:.2f} MB/s")
        ax.axhline(
            cap * (1 - result["scenario"]["headroom"]), color="#c44e52", lw=1, ls="--", label="with headroom"
        )
    ax.set_xlabel("instances, most loaded first")
    ax.set_ylabel("MB/s (replicas included)")
    ax.set_title("Load per instance")
    ax.legend(loc="upper right")
    save(fig, "load", f"Load per instance: max/mean {load['imbalance']:.3f}.")

    ov = result["overlap"]
    ks = list(range(len(ov["exact"])))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar([k - 0.2 for k in ks], ov["exact"], width=0.4, label="exact (hypergeometric)", color="#55a868")
    ax.bar(
        [k + 0.2 for k in ks],
        ov["simulated"],
        width=0.4,
        label="simulated (real shuffle shards)",
        color="#4c72b0",
    )
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(min([p for p in ov["exact"] if p > 0] + [1e-9]), 1e-9))
    ax.set_xlabel("instances two tenants share")
    ax.set_ylabel("probability")
    ax.set_title(f"Tenant overlap, {ov['instances']} instances, shard size {ov['shard_size'] or 'all'}")
    ax.legend()
    save(
        fig,
        "overlap",
        f"{ov['pairs']:,} simulated pairs; chi-square {ov['chi_square']:.2f}"
        f" on {ov['degrees_of_freedom']} d.f.",
    )

    blasts = result["blast_radius"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    xs = [b["failed"] for b in blasts]
    ax.plot(xs, [b["lose_replica_share"] for b in blasts], "o-", label="lose a replica")
    ax.errorbar(
        xs,
        [b["lose_quorum_share"] for b in blasts],
        yerr=[b["lose_quorum_stderr"] for b in blasts],
        fmt="s-",
        label="lose quorum",
    )
    ax.set_xticks(xs)
    ax.set_xlabel("instances failed at once")
    ax.set_ylabel("share of tenants")
    ax.set_title("Blast radius")
    ax.legend()
    save(fig, "blast", "Expected share of tenants harmed when k random instances fail.")

    gs = result["gossip"]
    sg = result["scenario"]["gossip"]
    n = gs["nodes"]
    horizon = max(3.0, (gs["serf_model_s"] or 3.0) * 1.3)
    ts = [horizon * i / 200 for i in range(201)]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(
        ts, [serf_fraction(t, n, sg["nodes"], sg["interval_s"], sg["loss"]) for t in ts], label="Serf's model"
    )
    if gs["all_members_median_s"] is not None:
        ax.axvline(
            gs["all_members_median_s"],
            color="#55a868",
            ls="--",
            label="all members, Monte Carlo median (model)",
        )
    ax.set_xlabel("seconds after the ring change")
    ax.set_ylabel("share of members informed")
    ax.set_title(f"Gossip spread, {n} members")
    ax.legend(loc="lower right")
    save(
        fig,
        "gossip",
        f"Retransmit limit {gs['retransmit_limit']}; per member (model) {gs['total_bytes_per_s']:,.0f} B/s"
        + (
            f", simulated {sim['total_bytes_per_s']:,.0f} B/s"
            if (sim := result.get("gossip_simulated")) is not None
            else ""
        )
        + f"; gossip utilisation (model) {gs['gossip_utilisation'] or float('inf'):.0%}.",
    )

    from pyro_core.plan.cli import render_plan

    body = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}"
        "</figcaption></figure>"
        for name, caption in plots
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>pyro-core capacity plan</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "pre{background:#f6f6f6;padding:1em;"
        "overflow-x:auto}img{max-width:100%}</style></head><body><h1>pyro-core capacity plan</h1>"
        f"{body}<h2>Figures</h2><pre>{html.escape(render_plan(result))}</pre></body></html>\n"
    )
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc}") from None
    return out
