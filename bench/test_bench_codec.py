# Benchmarks of the ring codecs beside their peers, via pytest-benchmark (not tests: nothing here
# asserts on wall-clock time).
# Owns: the groups "codec-encode", "codec-decode" and "codec-roundtrip" on the 600 x 128 ring
# (conftest's ring_desc_600): the native codec (pyro_core/ring/codec.py), dskit's "ringDesc" codec
# (pyro_core/ring/dskit_codec.py), and in the same run the peers that show what the native design
# buys — msgpack with tokens as plain int lists (the group's baseline), the same msgpack layout with
# tokens as bytes but one array per instance (the row layout the native codec did not choose), and
# JSON via orjson. Peer decoders build the same RingDesc but skip all validation (they call
# InstanceDesc._trusted directly), so they are lower bounds: the comparison favours them.
# Encoded sizes are recorded in extra_info["bytes"]. Run:
#   python -m pytest bench/test_bench_codec.py --benchmark-only
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest

from pyro_core import RingDesc
from pyro_core.ring.codec import decode_ring, encode_ring
from pyro_core.ring.dskit_codec import decode_dskit, encode_dskit
from pyro_core.ring.model import InstanceDesc, InstanceState

UNIT = "ring (600 x 128 tokens)"
NATIVE_TARGET_NS = 1_000_000  # encode + decode of the 600 x 128 ring <= 1 ms
_STATES = tuple(sorted(InstanceState, key=int))


# -- helpers (extra_info conventions of bench/test_bench_ring.py, read by bench/report.py) ----------
def run(
    benchmark: Any,
    fn: Callable[[], object],
    *,
    label: str,
    impl: str,
    size: int,
    baseline: bool = False,
    target: str | None = None,
    target_ns: float | None = None,
) -> None:
    info: dict[str, Any] = {
        "label": label,
        "ops": 1,
        "unit": UNIT,
        "impl": impl,
        "baseline": baseline,
        "bytes": size,
    }
    if target is not None:
        info["target"] = target
    if target_ns is not None:
        info["target_ns_per_op"] = target_ns
    benchmark.extra_info.update(info)
    benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        median = stats.stats.median
        benchmark.extra_info["ns_per_op"] = median * 1e9
        benchmark.extra_info["ops_per_s"] = 1 / median if median > 0 else float("inf")


# -- peers ---------------------------------------------------------------------------------------
def _row(key: str, inst: InstanceDesc, tokens: object) -> list[object]:
    return [
        key,
        inst.addr,
        inst.timestamp,
        int(inst.state),
        tokens,
        inst.zone,
        inst.registered_timestamp,
        inst.read_only,
        inst.read_only_updated_timestamp,
        inst.versions,
    ]


def msgpack_lists_encode(desc: RingDesc) -> bytes:
    """One msgpack array per instance, tokens as a list of ints."""
    return msgpack.packb([_row(k, i, i.tokens.tolist()) for k, i in desc.instances.items()])  # type: ignore[no-any-return]


def msgpack_lists_decode(data: bytes) -> RingDesc:
    trusted = InstanceDesc._trusted
    out: dict[str, InstanceDesc] = {}
    for k, addr, ts, st, toks, zone, reg, ro, rou, ver in msgpack.unpackb(data, strict_map_key=False):
        tokens = np.array(toks, dtype=np.uint32)
        tokens.flags.writeable = False
        out[k] = trusted(k, addr, ts, _STATES[st], tokens, zone, reg, ro, rou, ver)
    return RingDesc._trusted(out)


def msgpack_rows_encode(desc: RingDesc) -> bytes:
    """One msgpack array per instance, tokens as little-endian uint32 bytes (the row layout)."""
    return msgpack.packb([_row(k, i, i.tokens.tobytes()) for k, i in desc.instances.items()])  # type: ignore[no-any-return]


def msgpack_rows_decode(data: bytes) -> RingDesc:
    trusted = InstanceDesc._trusted
    frombuffer = np.frombuffer
    out: dict[str, InstanceDesc] = {}
    for k, addr, ts, st, toks, zone, reg, ro, rou, ver in msgpack.unpackb(
        data, strict_map_key=False, use_list=False
    ):
        out[k] = trusted(k, addr, ts, _STATES[st], frombuffer(toks, "<u4"), zone, reg, ro, rou, ver)
    return RingDesc._trusted(out)


def orjson_encode(desc: RingDesc) -> bytes:
    """JSON: an object per instance keyed by id, tokens as a list (numpy arrays serialised natively)."""
    return orjson.dumps(
        {
            k: {
                "addr": i.addr,
                "timestamp": i.timestamp,
                "state": int(i.state),
                "tokens": i.tokens,
                "zone": i.zone,
                "registered_timestamp": i.registered_timestamp,
                "read_only": i.read_only,
                "read_only_updated_timestamp": i.read_only_updated_timestamp,
                "versions": {str(v): n for v, n in i.versions.items()},
            }
            for k, i in desc.instances.items()
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def orjson_decode(data: bytes) -> RingDesc:
    trusted = InstanceDesc._trusted
    out: dict[str, InstanceDesc] = {}
    for k, d in orjson.loads(data).items():
        tokens = np.array(d["tokens"], dtype=np.uint32)
        tokens.flags.writeable = False
        out[k] = trusted(
            k,
            d["addr"],
            d["timestamp"],
            _STATES[d["state"]],
            tokens,
            d["zone"],
            d["registered_timestamp"],
            d["read_only"],
            d["read_only_updated_timestamp"],
            {int(v): n for v, n in d["versions"].items()},
        )
    return RingDesc._trusted(out)


CODECS: dict[str, tuple[Callable[[RingDesc], bytes], Callable[[bytes], RingDesc], str, str]] = {
    # name: (encode, decode, label, impl)
    "native": (encode_ring, decode_ring, "pyro-core native (msgpack columns, token bytes)", "pyro-core"),
    "dskit": (encode_dskit, decode_dskit, "pyro-core dskit ringDesc (protobuf + snappy)", "pyro-core"),
    "msgpack-lists": (
        msgpack_lists_encode,
        msgpack_lists_decode,
        "msgpack, tokens as int lists, no validation",
        "peer",
    ),
    "msgpack-rows": (
        msgpack_rows_encode,
        msgpack_rows_decode,
        "msgpack rows, tokens as bytes, no validation",
        "peer",
    ),
    "orjson": (orjson_encode, orjson_decode, "JSON (orjson), no validation", "peer"),
}
BASELINE = "msgpack-lists"


@pytest.fixture(scope="module")
def encoded(ring_desc_600: RingDesc) -> dict[str, bytes]:
    out = {}
    for name, (encode, decode, _, _) in CODECS.items():
        out[name] = encode(ring_desc_600)
        assert decode(out[name]) == ring_desc_600, name  # every peer really round-trips
    return out


# ====================================================================================================
# codec-encode / codec-decode / codec-roundtrip: one ring per round
# ====================================================================================================
@pytest.mark.benchmark(group="codec-encode")
@pytest.mark.parametrize("name", list(CODECS))
def test_encode(benchmark: Any, name: str, ring_desc_600: RingDesc, encoded: dict[str, bytes]) -> None:
    encode, _, label, impl = CODECS[name]
    run(
        benchmark,
        lambda: encode(ring_desc_600),
        label=f"{label}: encode",
        impl=impl,
        size=len(encoded[name]),
        baseline=name == BASELINE,
    )


@pytest.mark.benchmark(group="codec-decode")
@pytest.mark.parametrize("name", list(CODECS))
def test_decode(benchmark: Any, name: str, encoded: dict[str, bytes]) -> None:
    _, decode, label, impl = CODECS[name]
    data = encoded[name]
    run(benchmark, lambda: decode(data), label=f"{label}: decode", impl=impl, size=len(data), baseline=name == BASELINE)


@pytest.mark.benchmark(group="codec-roundtrip")
@pytest.mark.parametrize("name", list(CODECS))
def test_encode_decode(benchmark: Any, name: str, ring_desc_600: RingDesc, encoded: dict[str, bytes]) -> None:
    encode, decode, label, impl = CODECS[name]
    native = name == "native"
    run(
        benchmark,
        lambda: decode(encode(ring_desc_600)),
        label=f"{label}: encode + decode",
        impl=impl,
        size=len(encoded[name]),
        baseline=name == BASELINE,
        target="≤ 1 ms" if native else None,
        target_ns=NATIVE_TARGET_NS if native else None,
    )
