# C-level interface of pyro_core._gorand: Go 1.19's math/rand (rand.New(rand.NewSource(seed))).
# Owns: the GoRand object layout and the nogil draw methods other Cython modules call, e.g.
#     from pyro_core._gorand cimport GoRand
#     cdef GoRand rng = GoRand(0)          # or GoRand.__new__(GoRand): a valid, seed-0 generator
#     rng.reseed(seed)                     # O(1): the register is filled lazily
#     token = rng.next_uint32()            # Go's rand.Rand.Uint32()
# The bounded draws take Go's precondition n > 0 unchecked (Go panics; here the result is undefined).
cimport cython
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


# final: no subclass can override these methods, so inside _gorand they call each other directly
# (inlined); a cimporting module calls each through one vtable pointer.
@cython.final
cdef class GoRand:
    # Go's rngSource: the 607-word feedback register and its two pointers.
    cdef int tap
    cdef int feed
    # Draws since the last reseed, saturating at 607: until every word has been written back,
    # an unwritten word vec[i] is computed from the seed (x0) when it is read, not stored.
    cdef int steps
    # The seed reduced mod 2**31 - 1 to [1, 2**31 - 2]: the start of the seeding Lehmer generator.
    cdef uint64_t x0
    cdef uint64_t vec[607]

    cdef void reseed(self, int64_t seed) noexcept nogil
    cdef uint64_t next_uint64(self) noexcept nogil
    cdef int64_t next_int63(self) noexcept nogil
    cdef uint32_t next_uint32(self) noexcept nogil
    cdef int32_t next_int31(self) noexcept nogil
    cdef int64_t next_int63n(self, int64_t n) noexcept nogil
    cdef int32_t next_int31n(self, int32_t n) noexcept nogil
    cdef int64_t next_intn(self, int64_t n) noexcept nogil
