# Benchmarks of Go 1.19 math/rand (pyro_core._gorand vs its pure twin), via pytest-benchmark.
# Owns: the shuffle-shard shaped workload (reseed + 4 Uint32 draws) and a 100,000-draw stream,
# each for the compiled kernel and the pure-Python twin.  Run: python -m pytest bench/test_bench_gorand.py
from __future__ import annotations

from typing import Any

import pytest

from pyro_core import _impl

SEEDS = [(i * 0x9E3779B97F4A7C15) % (1 << 64) - (1 << 63) for i in range(1, 257)]  # spread over int64
STREAM_DRAWS = 100_000


@pytest.fixture(params=_impl.IMPLEMENTATIONS)
def gorand(request: pytest.FixtureRequest) -> Any:
    return _impl.kernels(request.param).gorand


def _describe(benchmark: Any, gorand: Any, label: str, ops: int, unit: str) -> None:
    """The fields bench/report.py reads: per-operation times and the compiled/pure pairing."""
    impl = "pure" if gorand.__name__.startswith("pyro_core._pure") else "compiled"
    benchmark.extra_info.update(
        {
            "label": f"{label} ({'pure twin' if impl == 'pure' else 'compiled'})",
            "ops": ops,
            "unit": unit,
            "impl": impl,
            "kernel": label,
        }
    )


def test_bench_seed_and_4_uint32(benchmark: Any, gorand: Any) -> None:
    """One shuffle-shard zone lookup: reseed, then 4 Uint32 draws (256 seeds per round)."""
    rng = gorand.GoRand(0)

    def run() -> int:
        acc = 0
        for seed in SEEDS:
            rng.seed(seed)
            acc ^= rng.uint32() ^ rng.uint32() ^ rng.uint32() ^ rng.uint32()
        return acc

    _describe(benchmark, gorand, "GoRand reseed + 4 uint32 draws", len(SEEDS), "seed")
    benchmark(run)


def test_bench_new_object_and_4_uint32(benchmark: Any, gorand: Any) -> None:
    """As Go code writes it: rand.New(rand.NewSource(seed)) per lookup, then 4 Uint32 draws."""
    cls = gorand.GoRand

    def run() -> int:
        acc = 0
        for seed in SEEDS:
            rng = cls(seed)
            acc ^= rng.uint32() ^ rng.uint32() ^ rng.uint32() ^ rng.uint32()
        return acc

    _describe(benchmark, gorand, "GoRand(seed) + 4 uint32 draws", len(SEEDS), "seed")
    benchmark(run)


def test_bench_stream_of_100k_uint32(benchmark: Any, gorand: Any) -> None:
    """A long stream from one seed: mostly the steady-state lagged-Fibonacci step."""

    def run() -> int:
        rng = gorand.GoRand(42)
        draw = rng.uint32
        acc = 0
        for _ in range(STREAM_DRAWS):
            acc ^= draw()
        return acc

    _describe(benchmark, gorand, "GoRand uint32 stream", STREAM_DRAWS, "draw")
    benchmark.pedantic(run, rounds=5 if gorand.__name__.startswith("pyro_core._pure") else 20, iterations=1)
