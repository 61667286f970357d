# Pure-Python twin of pyro_core._gorand: Go 1.19's math/rand, bit for bit.
# Owns: the reference reading of ``rand.New(rand.NewSource(seed))`` -- the rngSource additive lagged
# Fibonacci generator (607 words, tap 273), its eager seeding, and the rand.Rand draws that dskit's
# shuffle sharding relies on (Uint32, Int63, Int31, Int63n, Int31n, Intn).  Every value is kept as
# a Python int in the range of the Go type it models; 64-bit wrap-around is an explicit mask.
from __future__ import annotations

import operator

from pyro_core._pure.gorand_cooked import RNG_COOKED

__all__ = ["GoRand"]

RNG_LEN = 607  # length of the feedback register
RNG_TAP = 273  # lag of the second tap
INT32_MAX = (1 << 31) - 1  # modulus of the seeding Lehmer generator (a Mersenne prime)
INT63_MASK = (1 << 63) - 1
UINT64_MASK = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
ZERO_SEED = 89482311  # what Go seeds with when seed % (2**31 - 1) == 0

# rngCooked as uint64, ready to XOR into the seeded register.
_COOKED_U64 = tuple(v & UINT64_MASK for v in RNG_COOKED)


def seedrand(x: int) -> int:
    """x[n+1] = 48271 * x[n] mod (2**31 - 1); Go computes the same with Schrage's method."""
    return 48271 * x % INT32_MAX


def _check_int64(value: int, what: str) -> int:
    value = operator.index(value)  # ints (and int-likes) only, as the compiled kernel accepts
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{what} {value} is outside the int64 range")
    return value


def _check_bound(n: int, upper: int, what: str) -> int:
    """Go panics on n <= 0; n above the Go parameter type's maximum cannot be passed at all."""
    n = operator.index(n)
    if not 0 < n <= upper:
        raise ValueError(f"invalid argument to {what}: {n} (must be 0 < n <= {upper})")
    return n


class GoRand:
    """``rand.New(rand.NewSource(seed))`` of Go 1.19."""

    __slots__ = ("_feed", "_tap", "_vec")

    def __init__(self, seed: int) -> None:
        self._tap = 0
        self._feed = 0
        self._vec = [0] * RNG_LEN
        self.seed(seed)

    def __copy__(self) -> GoRand:
        """An independent generator in the same state (the register is copied, not shared)."""
        clone = GoRand.__new__(GoRand)
        clone._tap, clone._feed, clone._vec = self._tap, self._feed, list(self._vec)
        return clone

    def seed(self, seed: int) -> None:
        """rngSource.Seed: reset the register deterministically from ``seed`` (any int64)."""
        seed = _check_int64(seed, "seed")
        self._tap = 0
        self._feed = RNG_LEN - RNG_TAP
        # Go's % truncates toward zero, so the remainder takes the sign of the dividend.
        seed = seed % INT32_MAX if seed >= 0 else -(-seed % INT32_MAX)
        if seed < 0:
            seed += INT32_MAX
        if seed == 0:
            seed = ZERO_SEED
        x = seed
        vec = self._vec
        for i in range(-20, RNG_LEN):
            x = seedrand(x)
            if i >= 0:
                u = x << 40
                x = seedrand(x)
                u ^= x << 20
                x = seedrand(x)
                u ^= x
                u ^= _COOKED_U64[i]
                vec[i] = u & UINT64_MASK  # int64(x) << 40 drops the bits above 64
        # (the loop leaves x unused after the last word, exactly as Go does)

    def uint64(self) -> int:
        """rngSource.Uint64: the next register word, 0 <= value < 2**64."""
        self._tap -= 1
        if self._tap < 0:
            self._tap += RNG_LEN
        self._feed -= 1
        if self._feed < 0:
            self._feed += RNG_LEN
        x = (self._vec[self._feed] + self._vec[self._tap]) & UINT64_MASK
        self._vec[self._feed] = x
        return x

    def int63(self) -> int:
        """Rand.Int63: 0 <= value < 2**63."""
        return self.uint64() & INT63_MASK

    def uint32(self) -> int:
        """Rand.Uint32: uint32(Int63() >> 31)."""
        return self.int63() >> 31

    def int31(self) -> int:
        """Rand.Int31: int32(Int63() >> 32), 0 <= value < 2**31."""
        return self.int63() >> 32

    def int63n(self, n: int) -> int:
        """Rand.Int63n: uniform in [0, n) by rejection sampling; 0 < n < 2**63."""
        n = _check_bound(n, INT64_MAX, "int63n")
        if n & (n - 1) == 0:  # power of two: mask
            return self.int63() & (n - 1)
        limit = INT64_MAX - (1 << 63) % n
        v = self.int63()
        while v > limit:
            v = self.int63()
        return v % n

    def int31n(self, n: int) -> int:
        """Rand.Int31n: uniform in [0, n) by rejection sampling; 0 < n < 2**31."""
        n = _check_bound(n, INT32_MAX, "int31n")
        if n & (n - 1) == 0:  # power of two: mask
            return self.int31() & (n - 1)
        limit = INT32_MAX - (1 << 31) % n
        v = self.int31()
        while v > limit:
            v = self.int31()
        return v % n

    def intn(self, n: int) -> int:
        """Rand.Intn (64-bit int): Int31n for n < 2**31, else Int63n."""
        n = _check_bound(n, INT64_MAX, "intn")
        if n <= INT32_MAX:
            return self.int31n(n)
        return self.int63n(n)
