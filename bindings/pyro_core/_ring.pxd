# C-level interface of pyro_core._ring: the ring lookup kernel and its result type.
# Owns: the object layout of RingCore (flat lookup tables as raw pointers into numpy arrays it
# keeps alive) and ReplicationSet, and the nogil walk other Cython code may call, e.g.
#     from pyro_core._ring cimport RingCore
#     n = ring._find(key, op, chosen_buffer, zone_counters)   # chosen: >= n_instances int32 slots
cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

from pyro_core._gorand cimport GoRand


@cython.final
cdef class ReplicationSet:
    cdef readonly tuple instances
    cdef readonly int max_errors
    cdef readonly int max_unavailable_zones


cdef class RingCore:
    cdef public int replication_factor
    cdef public bint zone_awareness
    cdef public double heartbeat_timeout
    cdef public dict _shard_cache  # (identifier, size) -> (sub-ring, generation)
    cdef public long _gen  # bumped on every description swap
    cdef object _t  # the RingTables the pointers below point into
    cdef list _instances
    cdef object _arrays  # keeps the numpy arrays behind the pointers alive
    cdef tuple _shard_arrays
    cdef list _single  # for RF=1 lookups: one shared, immutable ReplicationSet per instance
    cdef GoRand _rnd  # reused by shard picks: reseeding is O(1), allocating one is not
    cdef const uint32_t* _tokens  # every token, sorted
    cdef const int32_t* _owner  # owner instance of each token
    cdef const int32_t* _zone_of  # zone index of each instance
    cdef const int32_t* _zone_size  # instances per zone
    cdef const uint8_t* _zone_empty  # 1 for the zone named ""
    cdef const uint8_t* _state
    cdef const int64_t* _heartbeat
    cdef const uint8_t* _ro
    cdef const int64_t* _ro_ts
    cdef const int64_t* _reg_ts
    cdef const uint32_t* _ztok  # tokens grouped by zone
    cdef const int32_t* _zown
    cdef const int64_t* _zoff
    cdef object _bucket_arr
    cdef const int32_t* _bucket  # prefix index: first token of each (key >> _bucket_shift) bucket
    cdef int _bucket_shift
    cdef Py_ssize_t _n_tokens
    cdef int _n_instances
    cdef int _n_zones
    cdef int32_t* _scratch  # chosen instances for single lookups (GIL held)
    cdef int32_t* _zscratch  # per-zone found / examined counters
    cdef bint _loaded

    cdef Py_ssize_t _search(self, uint32_t key) noexcept nogil
    cdef int _find(self, uint32_t key, int op, int32_t* chosen, int32_t* zc) noexcept nogil
    cdef bint _healthy(self, int inst, int op, bint check_hb, double now) noexcept nogil
    cdef object _fail(self, uint32_t k, int op, bint check_hb, double t_now, int min_success, int healthy)
