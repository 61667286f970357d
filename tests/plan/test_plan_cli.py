# `python -m pyro_core.plan plan|bench` end to end: JSON keys, the report, bad inputs, a real bench run.
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pyro_core.plan.cli import main

SMALL = [
    "plan",
    "--instances",
    "12",
    "--zones",
    "3",
    "--replication-factor",
    "3",
    "--shard-size",
    "3",
    "--tenants",
    "200",
    "--quiet",
    "--overlap-pairs",
    "2000",
    "--gossip-trials",
    "20",
]
KEYS = {
    "scenario",
    "load",
    "overlap",
    "blast_radius",
    "zone_failure",
    "churn",
    "gossip",
    "gossip_simulated",
    "recommendation",
    "timings",
}


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyro_core.plan", *argv],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env=os.environ.copy(),
        timeout=300,
    )


def test_plan_json_output_parses_and_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--json", "--instance-capacity", "80", "--fail-instances", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == KEYS
    assert out["load"]["total_replicated_mb_s"] == pytest.approx(3 * out["load"]["total_ingest_mb_s"])
    assert len(out["load"]["per_instance_mb_s"]) == 12
    assert {b["failed"] for b in out["blast_radius"]} == {1, 2}
    assert all(c["max_instances_changed"] <= 1 for c in out["churn"])
    assert out["recommendation"]["fits"] is True
    assert out["recommendation"]["peak_load_mb_s"] <= out["recommendation"]["usable_capacity_mb_s"]


def test_plan_prints_aligned_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    for heading in (
        "Load per instance",
        "Pairwise tenant overlap",
        "Blast radius",
        "Gossip",
        "Recommendation",
    ):
        assert heading in out


def test_plan_labels_gossip_model_and_simulation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--gossip-simulate", "10", "--no-recommend"]) == 0
    out = capsys.readouterr().out
    gossip = out[out.index("Gossip (") :]
    assert "ring change reaches (model)" in gossip
    header = next(line for line in gossip.splitlines() if line.startswith("per member"))
    assert header.split() == ["per", "member", "model", "simulated"]
    assert "utilisation (model)" in gossip and "simulated: 12 members for 10 s" in gossip
    total = next(line for line in gossip.splitlines() if line.startswith("total, B/s")).split()
    assert len(total) == 4 and total[3] != "-"  # model and simulated figures side by side


def test_plan_report_renders_html_with_readable_pngs(tmp_path: Path) -> None:
    target = tmp_path / "out" / "plan.html"
    assert main([*SMALL, "--report", str(target)]) == 0
    page = target.read_text()
    images = [part.split('"')[0] for part in page.split('<img src="')[1:]]
    assert len(images) == 4
    for name in images:
        png = target.parent / name
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        import matplotlib.image

        pixels = matplotlib.image.imread(png)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400
        assert pixels.std() > 0.01  # not a blank canvas


def test_plan_scenario_file_sets_tenants_and_flags_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "instances: 20\nshard_size: 4\ntenants:\n  - {name: big, rate: 30, shard_size: 8}\n"
        "generate: {count: 50, distribution: zipf}\ngossip: {interval: 0.5}\n"
    )
    assert (
        main(["plan", "--scenario", str(f), "--instances", "24", "--json", "--quiet", "--gossip-trials", "5"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"]["instances"] == 24 and out["scenario"]["tenants"] == 51
    assert out["scenario"]["gossip"]["interval_s"] == 0.5


def test_plan_accepts_the_capacity_file_bench_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap = tmp_path / "cap.json"
    cap.write_text(json.dumps({"instance_capacity_mb_s": 50.0}))
    assert main([*SMALL, "--capacity", str(cap), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["load"]["instance_capacity_mb_s"] == 50.0


@pytest.mark.parametrize(
    ("argv", "yaml_text", "message"),
    [
        (
            ["--instances", "5", "--shard-size", "6", "--tenants", "3"],
            None,
            "shard_size (6) cannot exceed instances (5)",
        ),
        (["--instances", "-3", "--tenants", "3"], None, "instances must be"),
        (["--instances", "5", "--tenants", "-1"], None, "tenants must be"),
        (
            ["--instances", "5", "--tenants", "2", "--replication-factor", "3", "--zones", "2"],
            None,
            "one replica per zone",
        ),
        (["--tenants", "3"], None, "instances is missing"),
        (["--instances", "5"], None, "no tenants"),
        ([], "instances: [1, 2\n", "not valid YAML"),
        ([], "instances: 5\nreplicas: 3\n", "unknown key replicas"),
        ([], "instances: 5\ntenants:\n  - {name: a, rate: 1, colour: red}\n", "unknown key colour"),
        ([], "instances: 5\ntenants:\n  - {name: a, rate: -1}\n", "rate must be a non-negative"),
        (
            ["--capacity", "/nonexistent/cap.json", "--instances", "5", "--tenants", "3"],
            None,
            "cannot read capacity file",
        ),
    ],
)
def test_bad_inputs_exit_2_with_a_clear_error_and_no_traceback(
    tmp_path: Path, argv: list[str], yaml_text: str | None, message: str
) -> None:
    if yaml_text is not None:
        f = tmp_path / "bad.yaml"
        f.write_text(yaml_text)
        argv = [*argv, "--scenario", str(f)]
    res = run_cli("plan", "--quiet", *argv)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("pyro-core plan: error:")


def test_bench_quick_writes_a_capacity_file_that_plan_accepts(tmp_path: Path) -> None:
    cap = tmp_path / "capacity.json"
    res = run_cli("bench", "--quick", "--quiet", "--duration", "2", "-o", str(cap))
    assert res.returncode == 0, res.stderr
    data = json.loads(cap.read_text())
    assert data["instance_capacity_mb_s"] > 0
    assert data["ingest"]["requests"] > 0 and data["ingest"]["errors"] == 0
    names = {f["name"] for f in data["figures"]}
    assert {"ring.get RF=3", "get_many RF=3", "shuffle_shard size 4, uncached"} <= names
    assert "peer in the same run" in res.stdout
    res = run_cli(*SMALL, "--capacity", str(cap), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["load"]["instance_capacity_mb_s"] == pytest.approx(
        data["instance_capacity_mb_s"]
    )


def test_bench_builtin_load_generator_drives_a_real_server(tmp_path: Path) -> None:
    cap = tmp_path / "capacity.json"
    res = run_cli(
        "bench",
        "--quick",
        "--quiet",
        "--duration",
        "1",
        "--connections",
        "4",
        "--load-generator",
        "builtin",
        "-o",
        str(cap),
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(cap.read_text())
    assert data["ingest"]["generator"].startswith("builtin") and data["ingest"]["requests"] > 0
