# Benchmarks of legacy ingest (issue 4), via pytest-benchmark (not tests: nothing asserts on time).
# Owns: the groups "ingest-parse" and "ingest-http".
#   - ingest-parse: pyro_core.server.ingest.parse_stacks in-process on seeded bodies of a few MiB —
#     folded with short lines (~16 B, all distinct, and all identical), folded with long lines
#     (~420 B, realistic repetition), lines, trie and tree bodies built from the same stacks — beside
#     the floor of the text formats, `bytes.splitlines` alone (the peer: a parser that creates one
#     bytes object per line and does nothing else). extra_info["mb_per_s"] is the body megabytes
#     (1e6 B) parsed per second at the median; the target is ≥ 100 MB/s of folded text.
#   - ingest-http: bench/ingest_wrk.py's scenarios, one round: wrk against hypercorn's trio worker
#     serving a trivial ASGI app (the ceiling) and against one `pyro-core server` process, with small
#     folded and pprof bodies and a large folded body. The figures (req/s, MB/s, p50/p99, ratio to the
#     ceiling) are in extra_info["wrk"] and printed as a Markdown table; the timed round is the whole run.
# Under --benchmark-disable the wrk pass is shortened (1 s runs, a 1 MiB large body).
# Run: python -m pytest bench/test_bench_ingest.py --benchmark-only -s
from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from pyro_core.server.ingest import parse_stacks

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_wrk

PARSE_GROUP = "ingest-parse"
HTTP_GROUP = "ingest-http"
PARSE_BYTES = 4 << 20
TARGET_MB_PER_S = 100.0


# -- bodies ------------------------------------------------------------------------------------------


def short_unique_folded(size: int) -> bytes:
    """`a;b;cNNNNN N` lines (~16 B), every stack distinct."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += b"a;b;c%d %d\n" % (i, i % 100 + 1)
        i += 1
    return bytes(out)


def short_repeated_folded(size: int) -> bytes:
    """~16 B lines drawn from 50 stacks (a body nobody aggregated first)."""
    rng = random.Random(3)
    stacks = [b"main;f%d;g%d" % (i, i * 7) for i in range(50)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(stacks) + b" %d\n" % rng.randint(1, 9)
    return bytes(out)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _stack_trie(stacks: dict[bytes, int]) -> dict[bytes, Any]:
    """Nested {frame: [value, children]} of folded stacks."""
    root: dict[bytes, Any] = {}
    for key, value in stacks.items():
        level = root
        frames = key.split(b";")
        for i, frame in enumerate(frames):
            entry = level.setdefault(frame, [0, {}])
            if i == len(frames) - 1:
                entry[0] += value
            level = entry[1]
    return root


def encode_nodes(stacks: dict[bytes, int], *, tree: bool) -> bytes:
    """A trie body (labels joined with ";" into the child's fragment, several roots) or a tree body
    (one empty root, whole frames) holding ``stacks``, pre-order, iteratively."""
    out = bytearray()
    roots = _stack_trie(stacks)
    if tree:
        out += _uvarint(0) + _uvarint(0) + _uvarint(len(roots))
    todo: list[tuple[bytes, int, dict[bytes, Any]]] = []
    for frame, (value, children) in reversed(list(roots.items())):
        todo.append((frame, value, children))
    while todo:
        label, value, children = todo.pop()
        out += _uvarint(len(label)) + label + _uvarint(value) + _uvarint(len(children))
        for frame, (v, c) in reversed(list(children.items())):
            todo.append((frame if tree else b";" + frame, v, c))
    return bytes(out)


def _workloads() -> dict[str, tuple[str, bytes]]:
    long_folded = ingest_wrk.folded_body(PARSE_BYTES)
    long_stacks = dict(parse_stacks("folded", long_folded))
    short = short_unique_folded(PARSE_BYTES)
    return {
        "folded-short-unique": ("folded", short),
        "folded-short-repeated": ("folded", short_repeated_folded(PARSE_BYTES)),
        "folded-long": ("folded", long_folded),
        "lines-short": ("lines", b"\n".join(line.rpartition(b" ")[0] for line in short.splitlines())),
        "trie": ("trie", encode_nodes(long_stacks, tree=False)),
        "tree": ("tree", encode_nodes(long_stacks, tree=True)),
    }


WORKLOADS = _workloads()
TEXT_FORMATS = ("folded", "lines")


def record_mb_per_s(benchmark: Any, size: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    median = stats.stats.median
    benchmark.extra_info["mb_per_s"] = size / median / 1e6 if median > 0 else float("inf")
    benchmark.extra_info["ns_per_op"] = median * 1e9
    benchmark.extra_info["ops_per_s"] = 1 / median if median > 0 else float("inf")


@pytest.mark.benchmark(group=PARSE_GROUP)
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("impl", ["parser", "splitlines-floor"])
def test_parse(benchmark: Any, workload: str, impl: str) -> None:
    fmt, body = WORKLOADS[workload]
    parse: Callable[[bytes], list[Any]]
    if impl == "splitlines-floor":
        if fmt not in TEXT_FORMATS:
            pytest.skip("the floor applies to the text formats")
        parse = bytes.splitlines
    else:

        def parse(b: bytes) -> list[Any]:
            return parse_stacks(fmt, b)

    lines = body.count(b"\n") + 1
    benchmark.extra_info.update(
        {
            "label": f"{impl}: {workload} ({len(body) / (1 << 20):.1f} MiB, ~{len(body) // lines} B/line)"
            if fmt in ("folded", "lines")
            else f"{impl}: {workload} ({len(body) / (1 << 20):.1f} MiB)",
            "ops": len(body),
            "unit": "byte",
            "impl": "pyro-core" if impl == "parser" else "peer",
            "baseline": impl != "parser",
            "bytes": len(body),
        }
    )
    if fmt == "folded" and impl == "parser":  # the target: bytes of folded text per second
        benchmark.extra_info["target"] = f"≥ {TARGET_MB_PER_S:.0f} MB/s"
        benchmark.extra_info["target_ops_per_s"] = TARGET_MB_PER_S * 1e6
    result = benchmark(parse, body)
    assert result  # something was parsed
    record_mb_per_s(benchmark, len(body))


@pytest.mark.benchmark(group=HTTP_GROUP)
@pytest.mark.skipif(shutil.which("wrk") is None and not Path(ingest_wrk.WRK).exists(), reason="wrk (apt)")
def test_ingest_http_with_wrk(benchmark: Any) -> None:
    full = not getattr(benchmark, "disabled", False)
    duration = 10.0 if full else 1.0
    large = ingest_wrk.LARGE_BYTES if full else 1 << 20
    results = benchmark.pedantic(
        ingest_wrk.run_all,
        args=(duration,),
        kwargs={"large_bytes": large, "warmup": 2.0 if full else 0.0},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        {"label": "wrk: ceiling vs pyro-core server", "ops": 1, "unit": "run", "impl": "pyro-core"}
    )
    benchmark.extra_info["wrk"] = [{k: v for k, v in asdict(r).items() if k != "raw"} for r in results]
    print("\n" + ingest_wrk.markdown(results))
    assert {r.scenario for r in results} >= {"ceiling-small", "folded-small", "pprof-small", "folded-large"}
