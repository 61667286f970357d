# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# Cython kernel: Go 1.19's math/rand, rand.New(rand.NewSource(seed)), bit for bit.
# Owns: the fast GoRand (lazy O(1) seeding, nogil draws) behind the Python API of its pure twin
# pyro_core/_pure/gorand.py, plus the C-level API declared in bindings/pyro_core/_gorand.pxd.
#
# Lazy seeding.  Go's Seed runs the Lehmer generator x -> 48271 * x mod (2**31 - 1) about 1,841
# times to fill 607 words, and a shuffle-shard lookup then draws only a handful of them.  Since
# x after k steps is 48271**k * x0 mod (2**31 - 1), word i (built from steps 21+3i, 22+3i, 23+3i)
# is three multiplications by precomputed powers; reseed() only stores x0, and a word is computed
# the moment it is read, until it has been written back by a draw.  Which words have been written
# follows from the draw count alone: draw n (1-based) writes slot (334 - n) mod 607 and reads the
# tap slot (-n) mod 607, which draw n - 273 wrote.  So for n <= 273 both operands are still
# unwritten seed words, for 273 < n <= 607 only the feed operand is, and after that none is.
from cpython.number cimport PyNumber_Index
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

# The layout and C API live in bindings/pyro_core/_gorand.pxd (found via cythonize's include_path).
# cythonize's change tracking only looks for a module's own .pxd beside its .pyx, so this
# self-cimport is what makes an edit of that .pxd rebuild this module too.
from pyro_core._gorand cimport GoRand

from pyro_core._pure.gorand_cooked import RNG_COOKED

__all__ = ["GoRand"]

cdef enum:
    RNG_LEN = 607
    RNG_TAP = 273

# Compile-time constants (C macros, so the C compiler folds them: `% INT32_MAX` is no division).
cdef extern from *:
    """
    #define PYRO_GORAND_INT32_MAX UINT64_C(0x7FFFFFFF)
    #define PYRO_GORAND_INT63_MASK UINT64_C(0x7FFFFFFFFFFFFFFF)
    #define PYRO_GORAND_ZERO_SEED INT64_C(89482311)
    """
    const uint64_t INT32_MAX "PYRO_GORAND_INT32_MAX"  # 2**31 - 1, a Mersenne prime
    const uint64_t INT63_MASK "PYRO_GORAND_INT63_MASK"
    const int64_t ZERO_SEED "PYRO_GORAND_ZERO_SEED"  # Go's seed when seed % (2**31 - 1) == 0

# rngCooked as uint64, and for word i the multipliers 48271**(21+3i), **(22+3i), **(23+3i) mod 2**31-1.
cdef uint64_t COOKED[RNG_LEN]
cdef uint64_t POW[RNG_LEN][3]


cdef inline uint64_t mulmod31(uint64_t a, uint64_t b) noexcept nogil:
    """a * b mod (2**31 - 1) for a, b in [1, 2**31 - 2] (so a * b is never 0 mod 2**31 - 1).

    Mersenne reduction: 2**31 = 1 (mod 2**31 - 1), so folding the 62-bit product at bit 31 leaves
    p <= 2 * (2**31 - 1), and p == 2 * (2**31 - 1) would mean a * b = 0; one subtraction finishes.
    """
    cdef uint64_t p = a * b
    p = (p & INT32_MAX) + (p >> 31)
    if p >= INT32_MAX:
        p -= INT32_MAX
    return p


cdef inline uint64_t seeded_word(uint64_t x0, int i) noexcept nogil:
    """vec[i] as Go's Seed leaves it (shifts wrap at 64 bits like int64(x) << 40)."""
    return ((mulmod31(x0, POW[i][0]) << 40) ^ (mulmod31(x0, POW[i][1]) << 20)
            ^ mulmod31(x0, POW[i][2]) ^ COOKED[i])


cdef void _init_tables() except *:
    if len(RNG_COOKED) != RNG_LEN:
        raise RuntimeError("pyro_core._pure.gorand_cooked.RNG_COOKED must hold 607 words")
    cdef int i, j
    cdef uint64_t p = 1
    for i in range(RNG_LEN):
        COOKED[i] = <uint64_t>(<int64_t>RNG_COOKED[i])
    for i in range(20):  # Seed's 20 warm-up steps
        p = mulmod31(p, 48271)
    for i in range(RNG_LEN):
        for j in range(3):
            p = mulmod31(p, 48271)
            POW[i][j] = p


_init_tables()


cdef inline bint written(GoRand rng, int i) noexcept nogil:
    """Whether rng.vec[i] holds a written-back word (else it is computed from x0 when read)."""
    # Draw n writes slot (334 - n) mod 607, so slot i is first written by draw ((333 - i) mod 607) + 1.
    return rng.steps >= (RNG_LEN - RNG_TAP - 1 - i + RNG_LEN) % RNG_LEN + 1


cdef int64_t _as_int64(object value, str what) except? -1:
    """An int (operator.index: no floats) as int64, or ValueError (Go's int64 cannot hold it)."""
    if type(value) is not int:
        value = PyNumber_Index(value)
    try:
        return value
    except OverflowError:
        raise ValueError(f"{what} {value} is outside the int64 range") from None


cdef class GoRand:
    """``rand.New(rand.NewSource(seed))`` of Go 1.19."""

    def __cinit__(self):
        self.reseed(0)

    def __init__(self, seed):
        self.reseed(_as_int64(seed, "seed"))

    # ---- C-level API (see _gorand.pxd) -------------------------------------------------------

    cdef void reseed(self, int64_t seed) noexcept nogil:
        """rngSource.Seed, lazily: O(1), the register is computed on demand."""
        seed = seed % <int64_t>INT32_MAX  # C's % truncates like Go's: the sign of the dividend
        if seed < 0:
            seed += INT32_MAX
        if seed == 0:
            seed = ZERO_SEED
        self.x0 = <uint64_t>seed
        self.tap = 0
        self.feed = RNG_LEN - RNG_TAP
        self.steps = 0

    cdef uint64_t next_uint64(self) noexcept nogil:
        """rngSource.Uint64."""
        cdef int tap = self.tap - 1
        cdef int feed = self.feed - 1
        cdef uint64_t x
        if tap < 0:
            tap += RNG_LEN
        if feed < 0:
            feed += RNG_LEN
        self.tap = tap
        self.feed = feed
        if self.steps >= RNG_LEN:  # steady state: every word has been written back
            x = self.vec[feed] + self.vec[tap]
        else:
            if self.steps >= RNG_TAP:  # the tap word was written by draw n - 273
                x = seeded_word(self.x0, feed) + self.vec[tap]
            else:
                x = seeded_word(self.x0, feed) + seeded_word(self.x0, tap)
            self.steps += 1
        self.vec[feed] = x
        return x

    cdef int64_t next_int63(self) noexcept nogil:
        """Rand.Int63."""
        return <int64_t>(self.next_uint64() & INT63_MASK)

    cdef uint32_t next_uint32(self) noexcept nogil:
        """Rand.Uint32: uint32(Int63() >> 31)."""
        return <uint32_t>(self.next_int63() >> 31)

    cdef int32_t next_int31(self) noexcept nogil:
        """Rand.Int31: int32(Int63() >> 32)."""
        return <int32_t>(self.next_int63() >> 32)

    cdef int64_t next_int63n(self, int64_t n) noexcept nogil:
        """Rand.Int63n; requires n > 0."""
        cdef int64_t v, limit
        if n & (n - 1) == 0:  # power of two: mask
            return self.next_int63() & (n - 1)
        limit = <int64_t>(INT63_MASK - (<uint64_t>1 << 63) % <uint64_t>n)
        v = self.next_int63()
        while v > limit:
            v = self.next_int63()
        return v % n

    cdef int32_t next_int31n(self, int32_t n) noexcept nogil:
        """Rand.Int31n; requires n > 0."""
        cdef int32_t v, limit
        if n & (n - 1) == 0:  # power of two: mask
            return self.next_int31() & (n - 1)
        limit = <int32_t>(INT32_MAX - (<uint32_t>1 << 31) % <uint32_t>n)
        v = self.next_int31()
        while v > limit:
            v = self.next_int31()
        return v % n

    cdef int64_t next_intn(self, int64_t n) noexcept nogil:
        """Rand.Intn (64-bit int); requires n > 0."""
        if n <= <int64_t>INT32_MAX:
            return self.next_int31n(<int32_t>n)
        return self.next_int63n(n)

    # ---- Python API (same as pyro_core._pure.gorand.GoRand) ------------------------------------

    def seed(self, seed):
        """rngSource.Seed: reset the generator from ``seed`` (any int64)."""
        self.reseed(_as_int64(seed, "seed"))

    def __reduce__(self):
        """Pickle/copy support: the register with its pointers (unwritten words are not stored)."""
        cdef int i
        words = [self.vec[i] if written(self, i) else 0 for i in range(RNG_LEN)]
        return (GoRand, (0,), (self.tap, self.feed, self.steps, self.x0, words))

    def __setstate__(self, state):
        tap, feed, steps, x0, words = state
        if not (0 <= tap < RNG_LEN and feed == (tap + RNG_LEN - RNG_TAP) % RNG_LEN
                and 0 <= steps <= RNG_LEN and (steps == RNG_LEN or tap == (RNG_LEN - steps) % RNG_LEN)
                and 0 < x0 < INT32_MAX and len(words) == RNG_LEN):
            raise ValueError("not a GoRand state")
        cdef int i
        for i in range(RNG_LEN):
            self.vec[i] = words[i]
        self.tap, self.feed, self.steps, self.x0 = tap, feed, steps, x0

    def uint64(self):
        """rngSource.Uint64: 0 <= value < 2**64."""
        return self.next_uint64()

    def int63(self):
        """Rand.Int63: 0 <= value < 2**63."""
        return self.next_int63()

    def uint32(self):
        """Rand.Uint32: 0 <= value < 2**32."""
        return self.next_uint32()

    def int31(self):
        """Rand.Int31: 0 <= value < 2**31."""
        return self.next_int31()

    def int63n(self, n):
        """Rand.Int63n: uniform in [0, n); 0 < n < 2**63."""
        cdef int64_t m = _as_int64(n, "int63n argument")
        if m <= 0:
            raise ValueError(f"invalid argument to int63n: {n} (must be 0 < n <= {2**63 - 1})")
        return self.next_int63n(m)

    def int31n(self, n):
        """Rand.Int31n: uniform in [0, n); 0 < n < 2**31."""
        cdef int64_t m = _as_int64(n, "int31n argument")
        if m <= 0 or m > <int64_t>INT32_MAX:
            raise ValueError(f"invalid argument to int31n: {n} (must be 0 < n <= {2**31 - 1})")
        return self.next_int31n(<int32_t>m)

    def intn(self, n):
        """Rand.Intn (64-bit int): uniform in [0, n); 0 < n < 2**63."""
        cdef int64_t m = _as_int64(n, "intn argument")
        if m <= 0:
            raise ValueError(f"invalid argument to intn: {n} (must be 0 < n <= {2**63 - 1})")
        return self.next_intn(m)
