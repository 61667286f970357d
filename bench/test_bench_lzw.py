# Benchmarks of memberlist's LZW (pyro_core._lzw vs its pure twin), via pytest-benchmark (not tests:
# nothing here asserts on wall-clock time).
# Owns: one group per payload and direction, "lzw-decompress <payload>" and "lzw-compress <payload>",
# each with the compiled kernel, the pure-Python twin, and zlib as the throughput peer (zlib.compress /
# zlib.decompress at the default level on the same payload; a different format, there as a reference
# for what a C codec in the standard library does with these bytes).
# Payloads, built from fixed seeds:
#   push-pull-100  a memberlist push/pull of 100 node states (msgpack, raw strings), compressible
#   ring-kv-1MiB   a push/pull of 100 node states plus dskit KV user state holding three rings
#                  (600, 600 and 400 instances x 128 tokens, protobuf + snappy as dskit sends them);
#                  about 1 MiB of near-random bytes (LZW grows it by about a quarter), which is
#                  what a Pyroscope push/pull stream mostly carries
# Sizes, compressed sizes and MB/s (payload bytes per second, median round) go in extra_info.
# Run: python -m pytest bench/test_bench_lzw.py --benchmark-only
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from pyro_core import RingDesc, _impl, generate_tokens
from pyro_core.ring.dskit_codec import KeyValuePair, encode_dskit, encode_kv_pair

PAYLOADS = ("push-pull-100", "ring-kv-1MiB")
PEER = "zlib"
UPDATE_MILLIS = 1_700_000_000_000
NOW = UPDATE_MILLIS // 1000
ZONES = ("zone-a", "zone-b", "zone-c")


def node_states(n: int) -> list[bytes]:
    """memberlist pushNodeState maps as Go encodes them (raw strings, byte-sorted keys)."""
    states = (
        {
            "Addr": bytes((10, 0, i // 250, i % 250 + 1)),
            "Incarnation": 1000 + i,
            "Meta": b"",
            "Name": f"ingester-{i:03d}".encode(),
            "Port": 7946,
            "State": 0,
            "Vsn": bytes((1, 5, 2, 0, 0, 0)),
        }
        for i in range(n)
    )
    return [bytes(msgpack.packb(state, use_bin_type=False)) for state in states]


def push_pull(n_nodes: int, user_state: bytes = b"") -> bytes:
    """[6] + pushPullHeader + node states + user state: the plaintext memberlist LZW-compresses."""
    header = {"Join": False, "Nodes": n_nodes, "UserStateLen": len(user_state)}
    return (
        b"\x06"
        + bytes(msgpack.packb(header, use_bin_type=False))
        + b"".join(node_states(n_nodes))
        + user_state
    )


def ring(component: str, n_instances: int, seed: int) -> RingDesc:
    """``n_instances`` ACTIVE instances x 128 random tokens over three zones, from a fixed seed."""
    rng = np.random.default_rng(seed)
    desc = RingDesc()
    taken = np.empty(0, dtype=np.uint32)
    for i in range(n_instances):
        tokens = generate_tokens(128, taken, rng)
        taken = np.concatenate([taken, tokens])
        addr = f"10.1.{i // 250}.{i % 250 + 1}:9095"
        desc.add_instance(f"{component}-{i:03d}", addr, zone=ZONES[i % 3], tokens=tokens, now=NOW)
    return desc


def kv_user_state(rings: dict[str, RingDesc]) -> bytes:
    """dskit's push/pull user state: every key as [u32 BE length][KeyValuePair]."""
    parts = []
    for key, desc in rings.items():
        pair = encode_kv_pair(KeyValuePair(key, encode_dskit(desc), "ringDesc", False, UPDATE_MILLIS))
        parts.append(struct.pack(">I", len(pair)) + pair)
    return b"".join(parts)


@pytest.fixture(scope="session")
def lzw_payloads(ring_desc_600: RingDesc) -> dict[str, bytes]:
    rings = {
        "ring": ring_desc_600,
        "store-gateway": ring("store-gateway", 600, seed=4),
        "compactor": ring("compactor", 400, seed=5),
    }
    return {"push-pull-100": push_pull(100), "ring-kv-1MiB": push_pull(100, kv_user_state(rings))}


def _run(
    benchmark: Any,
    fn: Callable[[], bytes],
    *,
    payload: str,
    direction: str,
    impl: str,
    size: int,
    compressed: int,
    slow: bool,
) -> None:
    """Time ``fn`` and record the fields bench/report.py reads (label, ops, unit, impl, kernel, baseline)."""
    who = {"compiled": "pyro_core._lzw", "pure": "pure twin", PEER: "zlib (peer)"}[impl]
    benchmark.group = f"lzw-{direction} {payload}"
    benchmark.extra_info.update(
        {
            "label": f"{who}: {direction} {payload} ({size:,} B)",
            "ops": 1,
            "unit": "payload",
            "impl": impl,
            "kernel": f"LZW {direction} {payload}" if impl != PEER else None,
            "baseline": impl == PEER,
            "bytes": size,
            "compressed_bytes": compressed,
        }
    )
    if slow:
        benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    else:
        benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    median = stats.stats.median if stats is not None else 0.0
    if median > 0:
        benchmark.extra_info["MB_per_s"] = size / median / 1e6


@pytest.mark.parametrize("impl", [*_impl.IMPLEMENTATIONS, PEER])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_bench_decompress(benchmark: Any, lzw_payloads: dict[str, bytes], payload: str, impl: str) -> None:
    data = lzw_payloads[payload]
    if impl == PEER:
        stream = zlib.compress(data)
        fn: Callable[[], bytes] = lambda: zlib.decompress(stream)  # noqa: E731
    else:
        lzw = _impl.kernels(impl).lzw
        stream = lzw.compress(data)
        fn = lambda: lzw.decompress(stream)  # noqa: E731
    assert fn() == data
    _run(
        benchmark,
        fn,
        payload=payload,
        direction="decompress",
        impl=impl,
        size=len(data),
        compressed=len(stream),
        slow=impl == "pure" and len(data) > 100_000,
    )


@pytest.mark.parametrize("impl", [*_impl.IMPLEMENTATIONS, PEER])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_bench_compress(benchmark: Any, lzw_payloads: dict[str, bytes], payload: str, impl: str) -> None:
    data = lzw_payloads[payload]
    compress: Callable[[bytes], bytes] = zlib.compress if impl == PEER else _impl.kernels(impl).lzw.compress
    _run(
        benchmark,
        lambda: compress(data),
        payload=payload,
        direction="compress",
        impl=impl,
        size=len(data),
        compressed=len(compress(data)),
        slow=impl == "pure" and len(data) > 100_000,
    )
