# Convergence models for gossip dissemination, as bench/test_bench_gossip.py uses them.
# Owns: only the rendering of the "gossip-convergence" benchmark tables (``render_results``) and the
# command line below. The models themselves (Serf's published figures and logistic model, the discrete
# epidemic model with and without the retransmit limit, the push-gossip Monte Carlo) live in
# pyro_core/plan/gossip.py, which explains them, and are re-exported here under their old names.
# Must not know: the SWIM core or I/O.
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script from a checkout: use the checkout's pyro_core
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyro_core.plan.gossip import (
    PUBLISHED,
    epidemic_final_reach,
    epidemic_time,
    model_vs_published,
    push_gossip_trials,
    retransmit_limit,
    serf_convergence_time,
    serf_fraction,
    serf_rate,
)

__all__ = [
    "PUBLISHED",
    "epidemic_final_reach",
    "epidemic_time",
    "model_vs_published",
    "push_gossip_trials",
    "render_results",
    "retransmit_limit",
    "serf_convergence_time",
    "serf_fraction",
    "serf_rate",
]


def _fmt(x: object, unit: str = " s") -> str:
    return "—" if x is None else f"{x:.2f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def render_results(data: dict[str, Any]) -> str:
    """Markdown tables of the "gossip-convergence" group of a pytest-benchmark JSON file (the simulated
    figures bench/test_bench_gossip.py records in extra_info; bench/report.py shows only wall times).
    A p99 of "—" in a Monte Carlo column: more than 1% of its trials stop short of the target (the
    retransmit budget ran out first); pyro-core's p99 then shows how long push/pull took to heal it."""
    rows = [b["extra_info"] for b in data.get("benchmarks", []) if b.get("group") == "gossip-convergence"]
    conv = [r for r in rows if "trials" in r]
    idle = [r for r in rows if "udp_packets_sent_per_member_s" in r]
    out = [
        "| update | nodes | loss | trials | pyro-core median | pyro-core p99 | push MC staggered median / p99"
        " | push MC rounds median / p99 | mean field (unlimited) | Serf model | Serf published | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in conv:
        short = r["mc_push_staggered_stopped_short"]
        short_rounds = r["mc_push_rounds_stopped_short"]
        out.append(
            f"| {r['update']} | {r['nodes']} | {r['loss']:.0%} | {r['trials']} | {_fmt(r.get('sim_median_s'))}"
            f" | {_fmt(r.get('sim_p99_s'))} | {_fmt(r['mc_push_staggered_median_s'])} /"
            f" {_fmt(r['mc_push_staggered_p99_s'])}{f' ({short:.1%} stop short)' if short else ''}"
            f" | {_fmt(r['mc_push_rounds_median_s'])} / {_fmt(r['mc_push_rounds_p99_s'])}"
            f"{f' ({short_rounds:.1%} stop short)' if short_rounds else ''}"
            f" | {_fmt(r['model_push_unlimited_s'])} | {_fmt(r['model_s'])} | {_fmt(r['published_s'])}"
            f" | {_fmt(r['wall_s'])} |"
        )
    if idle:
        out += [
            "",
            "| nodes | UDP packets sent / member / s | UDP bytes sent / member / s | bytes per packet"
            " | push/pull interval | push/pull state (LZW) | push/pull bytes sent / member / s | total B/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in idle:
            out.append(
                f"| {r['nodes']} | {r['udp_packets_sent_per_member_s']} | {r['udp_bytes_sent_per_member_s']}"
                f" | {r['udp_bytes_per_packet']} | {r['push_pull_interval_s']:.0f} s"
                f" | {r['push_pull_state_bytes']} B ({r['push_pull_state_bytes_lzw']} B)"
                f" | {r['push_pull_bytes_sent_per_member_s']} | {r['total_bytes_sent_per_member_s']} |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    # python bench/gossip_model.py                  the model beside Serf's published figures
    # python bench/gossip_model.py results.json     the gossip-convergence tables of a benchmark run
    if len(sys.argv) > 1:
        with open(sys.argv[1]) as fh:
            print(render_results(json.load(fh)))
        sys.exit(0)
    print("nodes  loss  published  model  mean-field (unlimited)  (memberlist limit)  reach")
    for n, p, pub, model in model_vs_published():
        lim = retransmit_limit(n)
        print(
            f"{n:6d} {p:4.0%} {pub:9.1f} {model:6.1f} {epidemic_time(n, loss=p):12.1f}"
            f" {epidemic_time(n, loss=p, transmit_limit=lim):20.1f}"
            f" {epidemic_final_reach(n, loss=p, transmit_limit=lim):.6f}"
        )
