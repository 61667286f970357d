# Tests of Go 1.19 math/rand (pyro_core._gorand and its pure twin pyro_core._pure.gorand).
# Owns: the Go spec vectors, compiled-vs-pure equivalence (incl. lazy-seeding boundaries and the
# feedback-register wrap), input validation, and the derived rngCooked table
# (tools/derive_go_rng_cooked.py vs Go's rng.go and vs the committed generated file).
from __future__ import annotations

import copy
import importlib.util
import pickle
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core._pure.gorand_cooked import RNG_COOKED

ROOT = Path(__file__).resolve().parent.parent
GO_RNG_GO = Path("/usr/share/go-1.19/src/math/rand/rng.go")  # Debian/Ubuntu golang-1.19-src
DERIVE_SCRIPT = ROOT / "tools" / "derive_go_rng_cooked.py"
COOKED_FILE = ROOT / "pyro_core" / "_pure" / "gorand_cooked.py"

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
M31 = (1 << 31) - 1
RNG_LEN, RNG_TAP = 607, 273

# Spec vectors: rand.New(rand.NewSource(seed)).Uint32() in Go 1.19.
SPEC_UINT32 = [
    (-2305785636457368283, [473989800, 2554148951, 2239962155, 1723562194, 720388420]),
    (-179216323567045239, [389085022, 1129191885, 2938445658]),
    (42, [1602144611, 283469975, 2594563336]),
]

# Further reference outputs, recorded by running Go 1.19.8's math/rand: (seed, method, n, values).
GO_OUTPUTS: list[tuple[int, str, int | None, list[int]]] = [
    (42, "intn", 10, [5, 7, 8, 0, 3, 5, 7, 6]),
    (42, "intn", 1 << 32, [2524941395, 2679871259, 341549032]),
    (42, "int63n", 10**18, [440579354231278675, 608747136543856411, 571782338101878760]),
    (42, "int31n", 1000, [305, 987, 668, 750, 423]),
    (42, "uint64", None, [12663951391086054483, 9832119173398632219, 5571782338101878760]),
    (-2305785636457368283, "int31", None, [236994900, 1277074475, 1119981077]),
    (0, "uint32", None, [4059586549, 1052117029, 2817310706]),
    (89482311, "uint32", None, [4059586549, 1052117029, 2817310706]),
    (INT64_MIN, "uint32", None, [3576951867, 3155860137, 4073607750]),
    (INT64_MAX, "uint32", None, [2596996162, 4039455774, 2854263694]),
]
# Go 1.19.8, seed 42: Uint32 draws number 1300, 1301, 4998, 4999, 5000 (1-based).
GO_SEED42_LATE_UINT32 = {
    1300: 2944118364,
    1301: 1379757524,
    4998: 205072606,
    4999: 2818103135,
    5000: 1850207822,
}


def draws(rng: Any, method: str, count: int, n: int | None = None) -> list[int]:
    fn = getattr(rng, method)
    return [fn(n) if n is not None else fn() for _ in range(count)]


# ---- Go spec vectors, both implementations ----------------------------------------------------------


@pytest.mark.parametrize(("seed", "expected"), SPEC_UINT32)
def test_uint32_matches_go_spec_vectors(impl: Any, seed: int, expected: list[int]) -> None:
    assert draws(impl.gorand.GoRand(seed), "uint32", len(expected)) == expected


@pytest.mark.parametrize(("seed", "method", "n", "expected"), GO_OUTPUTS)
def test_every_draw_method_matches_go_outputs(
    impl: Any, seed: int, method: str, n: int | None, expected: list[int]
) -> None:
    assert draws(impl.gorand.GoRand(seed), method, len(expected), n) == expected


def test_uint32_matches_go_past_the_register_wrap(impl: Any) -> None:
    got = draws(impl.gorand.GoRand(42), "uint32", 5000)
    assert {k: got[k - 1] for k in GO_SEED42_LATE_UINT32} == GO_SEED42_LATE_UINT32


@pytest.mark.parametrize(("seed", "expected"), SPEC_UINT32)
def test_reseeding_one_object_restarts_the_stream(impl: Any, seed: int, expected: list[int]) -> None:
    rng = impl.gorand.GoRand(7)
    for warmup in (0, 3, RNG_TAP + 1, RNG_LEN + 5, 2000):  # reseed from lazy, half-lazy and warm states
        draws(rng, "uint64", warmup)
        rng.seed(seed)
        assert draws(rng, "uint32", len(expected)) == expected


def test_seed_zero_is_gos_fixed_substitute_seed(impl: Any) -> None:
    # Go seeds with 89482311 when seed % (2**31 - 1) == 0.
    for seed in (0, M31, -M31, 5 * M31):
        assert draws(impl.gorand.GoRand(seed), "uint64", 20) == draws(
            impl.gorand.GoRand(89482311), "uint64", 20
        )


@pytest.mark.parametrize("copier", ["copy", "deepcopy", "pickle"])
@pytest.mark.parametrize("drawn", [0, 5, RNG_TAP + 1, RNG_LEN, 1500])
def test_copied_generator_continues_the_same_stream_independently(impl: Any, copier: str, drawn: int) -> None:
    rng = impl.gorand.GoRand(42)
    draws(rng, "uint64", drawn)
    if copier == "pickle":
        clone = pickle.loads(pickle.dumps(rng))
    else:
        clone = copy.copy(rng) if copier == "copy" else copy.deepcopy(rng)
    expected = draws(impl.gorand.GoRand(42), "uint32", drawn * 2 + 700)[drawn * 2 :]
    assert draws(rng, "uint64", drawn) == draws(clone, "uint64", drawn)  # same continuation...
    assert draws(clone, "uint32", 700) == expected  # ...and the original advancing did not move it
    assert draws(rng, "uint32", 700) == expected


# ---- compiled vs pure ---------------------------------------------------------------------------------

_int64_seeds = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from(
        [0, 1, -1, INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1, M31, -M31, M31 - 1, 89482311]
    ),
    st.integers(INT64_MIN // M31 + 1, INT64_MAX // M31).map(lambda k: k * M31),  # multiples of 2**31 - 1
    st.tuples(st.integers(INT64_MIN // M31, INT64_MAX // M31), st.integers(-3, 3))
    .map(lambda kd: kd[0] * M31 + kd[1])
    .filter(lambda s: INT64_MIN <= s <= INT64_MAX),  # near-multiples
    st.integers(-(1 << 32), 1 << 32),
)

_ops = st.one_of(
    st.tuples(st.sampled_from(["uint64", "int63", "uint32", "int31"]), st.none()),
    st.tuples(
        st.just("int63n"),
        st.one_of(
            st.integers(1, INT64_MAX), st.integers(0, 62).map(lambda e: 1 << e), st.just((1 << 62) + 1)
        ),
    ),
    st.tuples(
        st.just("int31n"),
        st.one_of(st.integers(1, M31), st.integers(0, 30).map(lambda e: 1 << e), st.just((1 << 30) + 1)),
    ),
    st.tuples(st.just("intn"), st.one_of(st.integers(1, 1000), st.integers(1, INT64_MAX), st.just(M31 + 1))),
)


@settings(max_examples=60, deadline=None)
@given(seed=_int64_seeds, ops=st.lists(_ops, min_size=1, max_size=40))
def test_compiled_equals_pure_for_any_seed_and_draw_sequence(
    compiled: Any, pure: Any, seed: int, ops: list[tuple[str, int | None]]
) -> None:
    fast, slow = compiled.gorand.GoRand(seed), pure.gorand.GoRand(seed)
    for method, n in ops:
        assert draws(fast, method, 1, n) == draws(slow, method, 1, n), (seed, method, n)


@settings(max_examples=25, deadline=None)
@given(seed=_int64_seeds, count=st.integers(1300, 2500))
def test_compiled_equals_pure_through_lazy_seeding_and_the_feedback_wrap(
    compiled: Any, pure: Any, seed: int, count: int
) -> None:
    # The compiled kernel computes seed words on demand for the first 607 draws (both operands for
    # draws 1..273), then runs on written-back words; > 2 * 607 draws cover every regime and a wrap.
    assert draws(compiled.gorand.GoRand(seed), "uint64", count) == draws(
        pure.gorand.GoRand(seed), "uint64", count
    )


@settings(max_examples=40, deadline=None)
@given(first=_int64_seeds, second=_int64_seeds, warmup=st.integers(0, 1300))
def test_compiled_reseed_after_any_number_of_draws_equals_fresh_pure(
    compiled: Any, pure: Any, first: int, second: int, warmup: int
) -> None:
    rng = compiled.gorand.GoRand(first)
    draws(rng, "uint64", warmup)
    rng.seed(second)
    assert draws(rng, "uint32", 700) == draws(pure.gorand.GoRand(second), "uint32", 700)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(INT64_MIN + M31, INT64_MAX - M31), sign=st.sampled_from([1, -1]))
def test_seeds_congruent_mod_2_31_minus_1_give_the_same_stream(impl: Any, seed: int, sign: int) -> None:
    # Go reduces the seed mod 2**31 - 1 (remainder with the dividend's sign, then made non-negative).
    assert draws(impl.gorand.GoRand(seed), "uint64", 5) == draws(
        impl.gorand.GoRand(seed + sign * M31), "uint64", 5
    )


@settings(max_examples=30, deadline=None)
@given(seed=_int64_seeds)
def test_draws_stay_in_their_go_ranges(impl: Any, seed: int) -> None:
    rng = impl.gorand.GoRand(seed)
    for _ in range(50):
        assert 0 <= rng.uint64() < 1 << 64
        assert 0 <= rng.int63() < 1 << 63
        assert 0 <= rng.uint32() < 1 << 32
        assert 0 <= rng.int31() < 1 << 31
        assert 0 <= rng.intn(7) < 7
        assert 0 <= rng.int31n(M31) < M31
        assert 0 <= rng.int63n(INT64_MAX) < INT64_MAX


# ---- input validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [INT64_MAX + 1, INT64_MIN - 1, 1 << 64, -(1 << 100)])
def test_seed_outside_int64_raises_value_error(impl: Any, seed: int) -> None:
    with pytest.raises(ValueError):
        impl.gorand.GoRand(seed)
    rng = impl.gorand.GoRand(1)
    with pytest.raises(ValueError):
        rng.seed(seed)


@pytest.mark.parametrize("seed", [1.0, "1", None])
def test_non_integer_seed_raises_type_error(impl: Any, seed: object) -> None:
    with pytest.raises(TypeError):
        impl.gorand.GoRand(seed)


@pytest.mark.parametrize(
    ("method", "n"),
    [
        ("int63n", 0),
        ("int63n", -1),
        ("int63n", INT64_MIN),
        ("int63n", INT64_MAX + 1),
        ("int31n", 0),
        ("int31n", -5),
        ("int31n", M31 + 1),
        ("intn", 0),
        ("intn", -1),
        ("intn", INT64_MAX + 1),
    ],
)
def test_bound_outside_go_parameter_range_raises_value_error(impl: Any, method: str, n: int) -> None:
    rng = impl.gorand.GoRand(1)
    with pytest.raises(ValueError):
        getattr(rng, method)(n)


def test_rejected_bound_does_not_consume_a_draw(impl: Any) -> None:
    rng = impl.gorand.GoRand(42)
    with pytest.raises(ValueError):
        rng.intn(0)
    assert draws(rng, "uint32", 3) == SPEC_UINT32[2][1]


# ---- the derived rngCooked table ---------------------------------------------------------------------


def _load_derive_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("derive_go_rng_cooked", DERIVE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _go_rng_cooked() -> list[int]:
    if not GO_RNG_GO.is_file():
        pytest.fail(f"{GO_RNG_GO} is missing: install Go 1.19's sources (apt-get install golang-1.19-src)")
    source = GO_RNG_GO.read_text()
    match = re.search(r"rngCooked\s*\[rngLen\]int64\s*=\s*\[\.\.\.\]int64\s*\{(.*?)\}", source, re.S)
    if match is None:
        pytest.fail(f"no rngCooked table found in {GO_RNG_GO}")
    return [int(v) for v in re.findall(r"-?\d+", match.group(1))]


def test_cooked_table_holds_607_signed_int64_words() -> None:
    assert len(RNG_COOKED) == RNG_LEN
    assert all(INT64_MIN <= v <= INT64_MAX for v in RNG_COOKED)


def test_derived_cooked_table_equals_go_rng_go() -> None:
    go_table = _go_rng_cooked()
    assert len(go_table) == RNG_LEN
    mismatches = [i for i, (a, b) in enumerate(zip(RNG_COOKED, go_table, strict=True)) if a != b]
    assert mismatches == []


def test_rerunning_the_derivation_reproduces_the_committed_file() -> None:
    derive = _load_derive_script()
    assert derive.render(derive.derive()) == COOKED_FILE.read_text()


@pytest.mark.parametrize("steps", [0, 1, 273, 274, 606, 607, 608, 1214, 3000])
def test_polynomial_jump_equals_direct_simulation_of_gen_cooked(steps: int) -> None:
    derive = _load_derive_script()
    start = derive.srand(1)
    assert derive.register_after(start, steps) == derive.simulate(start, steps)
