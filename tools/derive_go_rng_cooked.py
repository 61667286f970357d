#!/usr/bin/env python3
"""Derive Go's ``math/rand`` ``rngCooked`` table and write ``pyro_core/_pure/gorand_cooked.py``.

Go's table is the state of an additive lagged Fibonacci generator (length 607, tap 273) seeded
with ``srand(1)`` and then stepped 7.8e12 times (the recipe of Go's ``gen_cooked.go``).  Stepping
7.8e12 times directly would take hours, so this script jumps there instead:

* Every value the generator writes is one more element of the sequence
  ``z[k] = z[k - 607] + z[k - 273]  (mod 2**64)``, whose first 607 elements ``z[0..606]`` are the
  seeded register.  With pointers ``tap = 0`` and ``feed = 334`` stepping downwards, element
  ``z[k]`` lives in register slot ``(333 - k) mod 607``; after ``N`` steps the register holds
  ``z[N .. N + 606]``.
* Because the recurrence is linear, ``z[k] = sum_j r[j] * z[j]`` where ``r(x) = x**k`` modulo the
  characteristic polynomial ``x**607 - x**334 - 1`` (coefficients mod 2**64).  More generally
  ``z[N + i] = sum_j r[j] * z[j + i]`` with ``r = x**N mod P``, so one polynomial power by
  square-and-multiply plus the first 1,213 directly simulated elements give the whole register.

The result is checked against a direct simulation for small step counts before it is written.
``--check`` compares with the committed file instead of writing it (exit status 1 on a mismatch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

LENGTH = 607  # register length of Go's rngSource
TAP = 273  # lag of the second tap
STEPS = 7_800_000_000_000  # gen_cooked.go: 7.8e12 calls of vrand() after srand(1)
SEED = 1
M31 = (1 << 31) - 1  # modulus of the seeding Lehmer generator
U64 = (1 << 64) - 1

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "pyro_core" / "_pure" / "gorand_cooked.py"

U64Array = npt.NDArray[np.uint64]


def seedrand(x: int) -> int:
    """One step of the seeding Lehmer generator: 48271 * x mod (2**31 - 1)."""
    return 48271 * x % M31


def srand(seed: int) -> list[int]:
    """The register gen_cooked.go's srand(seed) builds (note its shifts of 20 and 10), as uint64."""
    seed %= M31  # seed is a small non-negative int here, so Go's and Python's % agree
    if seed == 0:
        seed = 89482311
    x = seed
    vec = [0] * LENGTH
    for i in range(-20, LENGTH):
        x = seedrand(x)
        if i >= 0:
            u = x << 20
            x = seedrand(x)
            u ^= x << 10
            x = seedrand(x)
            u ^= x
            vec[i] = u
    return vec


def simulate(vec: list[int], steps: int) -> list[int]:
    """Step gen_cooked.go's vrand() ``steps`` times on a copy of ``vec`` (reference, small steps)."""
    vec = list(vec)
    tap, feed = 0, LENGTH - TAP
    for _ in range(steps):
        tap = (tap - 1) % LENGTH
        feed = (feed - 1) % LENGTH
        vec[feed] = (vec[feed] + vec[tap]) & U64
    return vec


def slot_of(k: int) -> int:
    """Register slot holding sequence element z[k] (z[0..606] are the seeded register)."""
    # Step n (1-based) writes slot (334 - n) mod 607, and that is element z[n + 606].
    return (LENGTH - TAP - (k - (LENGTH - 1))) % LENGTH


def sequence_prefix(vec: list[int], count: int) -> list[int]:
    """z[0 .. count-1]: the seeded register unrolled into sequence order, then extended."""
    z = [0] * count
    for k in range(LENGTH):
        z[k] = vec[slot_of(k)]
    for k in range(LENGTH, count):
        z[k] = (z[k - LENGTH] + z[k - TAP]) & U64
    return z


def polymulmod(a: U64Array, b: U64Array) -> U64Array:
    """a * b mod (x**607 - x**334 - 1), coefficients mod 2**64 (numpy uint64 arithmetic wraps)."""
    prod = np.zeros(2 * LENGTH - 1, dtype=np.uint64)
    for i in np.flatnonzero(a):
        prod[i : i + LENGTH] += a[i] * b
    # x**d = x**(d - 273) + x**(d - 607): fold the high coefficients down in blocks of at most 273
    # (a block's targets at d - 273 all lie below the block, so each block folds in one go).
    top = 2 * LENGTH - 2
    while top >= LENGTH:
        low = max(LENGTH, top - TAP + 1)
        block = prod[low : top + 1].copy()
        prod[low : top + 1] = 0
        prod[low - TAP : top + 1 - TAP] += block
        prod[low - LENGTH : top + 1 - LENGTH] += block
        top = low - 1
    return prod[:LENGTH]


def x_power(n: int) -> U64Array:
    """x**n mod (x**607 - x**334 - 1) by square-and-multiply."""
    result = np.zeros(LENGTH, dtype=np.uint64)
    result[0] = 1
    base = np.zeros(LENGTH, dtype=np.uint64)
    base[1] = 1
    with np.errstate(over="ignore"):
        while n:
            if n & 1:
                result = polymulmod(result, base)
            n >>= 1
            if n:
                base = polymulmod(base, base)
    return result


def register_after(vec: list[int], steps: int) -> list[int]:
    """The register after ``steps`` calls of vrand(), computed by the polynomial jump."""
    r = [int(c) for c in x_power(steps)]
    z = sequence_prefix(vec, 2 * LENGTH - 1)
    out = [0] * LENGTH
    for i in range(LENGTH):
        out[slot_of(steps + i)] = sum(r[j] * z[i + j] for j in range(LENGTH)) & U64
    return out


def to_int64(u: int) -> int:
    return u - (1 << 64) if u >> 63 else u


def self_check() -> None:
    """The jump must agree with direct simulation, including across several register wraps."""
    start = srand(SEED)
    for steps in (0, 1, 2, 272, 273, 274, 333, 334, 335, 606, 607, 608, 1213, 2500, 4096):
        if register_after(start, steps) != simulate(start, steps):
            raise AssertionError(f"polynomial jump disagrees with simulation after {steps} steps")


def derive() -> tuple[int, ...]:
    """Go's rngCooked: the full 64-bit register (as int64) after srand(1) and 7.8e12 steps."""
    self_check()
    return tuple(to_int64(u) for u in register_after(srand(SEED), STEPS))


def render(table: tuple[int, ...]) -> str:
    lines = [
        "# GENERATED by tools/derive_go_rng_cooked.py -- do not edit; re-run that script instead.",
        "# The rngCooked table of Go's math/rand, derived from the algorithm of Go's",
        "# math/rand/gen_cooked.go (Copyright The Go Authors; BSD-style license): the 607-word",
        "# additive lagged Fibonacci register after srand(1) and 7.8e12 steps, as signed int64.",
        "# Owns: the table only; pyro_core/_pure/gorand.py and pyro_core/_gorand.pyx XOR it into",
        "# the seeded register.",
        "",
        "RNG_COOKED: tuple[int, ...] = (",
    ]
    lines += [f"    {v}," for v in table]
    lines.append(")")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    text = render(derive())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; re-run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
