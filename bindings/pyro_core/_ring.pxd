# C-level interface of pyro_core._ring: the ring lookup kernel and its result type.
# Owns: the object layout of RingCore — a RingView (flat lookup tables as raw pointers into numpy
# arrays the kernel keeps alive, plus the ring's settings) — and ReplicationSet, and the nogil
# walk other Cython code may call, e.g.
#     from pyro_core._ring cimport RingCore, RingView, _find
#     n = _find(&ring._v, key, op, chosen_buffer, zone_counters)  # chosen: >= n_instances int32 slots
# Copy the RingView (and hold ring._arrays) before releasing the GIL: update() swaps both.
cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

from pyro_core._gorand cimport GoRand


cdef struct RingView:
    const uint32_t* tokens  # every token, sorted
    const int32_t* owner  # owner instance of each token
    const int32_t* zone_of  # zone index of each instance
    const int32_t* zone_size  # instances per zone
    const uint8_t* zone_empty  # 1 for the zone named ""
    const uint8_t* has_tokens  # 1 for instances that own at least one token
    const uint8_t* state
    const int64_t* heartbeat
    const int32_t* bucket  # prefix index: first token of each (key >> bucket_shift) bucket
    int bucket_shift
    Py_ssize_t n_tokens
    int n_instances
    int n_zones
    int rf
    bint zone_aware
    double hb_timeout


@cython.final
cdef class ReplicationSet:
    cdef readonly tuple instances
    cdef readonly int max_errors
    cdef readonly int max_unavailable_zones


cdef class RingCore:
    cdef RingView _v
    cdef public dict _shard_cache  # (identifier, size) -> (sub-ring, generation)
    cdef public long _gen  # bumped on every description swap
    cdef object _t  # the RingTables the pointers point into
    cdef list _instances
    cdef dict _arrays  # keeps the numpy arrays behind the pointers alive (replaced, never mutated)
    cdef list _single  # for RF=1 lookups: one shared, immutable ReplicationSet per instance
    cdef GoRand _rnd  # reused by shard picks: reseeding is O(1), allocating one is not
    cdef const uint8_t* _ro
    cdef const int64_t* _ro_ts
    cdef const int64_t* _reg_ts
    cdef const uint32_t* _ztok  # tokens grouped by zone
    cdef const int32_t* _zown
    cdef const int64_t* _zoff
    cdef int32_t* _scratch  # chosen instances for single lookups (GIL held)
    cdef int32_t* _zscratch  # per-zone found / examined counters
    cdef bint _loaded

    cdef object _fail(self, uint32_t k, uint32_t op, bint check_hb, double t_now, int min_success, int healthy)


cdef int _find(const RingView* v, uint32_t key, uint32_t op, int32_t* chosen, int32_t* zc) noexcept nogil
