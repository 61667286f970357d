# cython: language_level=3
# Compiled ring kernels (twin: pyro_core/_pure/ring.py): the dskit ring walk, the quorum filter,
# the nogil batch lookup and the shuffle-shard walk, over the flat tables of pyro_core.ring.tables.
# Owns: speed. The rules are the twin's; tests feed both the same inputs and compare the outputs.
# Must not know: how tables are built, caches, clocks (``now`` is passed in).
# The C-level layout of its classes is declared in bindings/pyro_core/_ring.pxd.
cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import numpy as np
cimport numpy as cnp

from pyro_core._gorand cimport GoRand

from pyro_core.ring.errors import EmptyRingError, InvalidRingError, TooManyUnhealthyInstancesError
from pyro_core.ring.model import RingDesc
from pyro_core.ring.replication import not_enough_replicas_message

try:  # CPython's built-in md5 is several times cheaper per call than OpenSSL's for short inputs
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover
    from hashlib import md5 as _md5

from operator import index as _index

cnp.import_array()

DEF WRITE_OP = 0x1E0001


cdef class ReplicationSet:
    """Instances to send an operation to, in ring-walk order, and the failures it tolerates.

    ``max_errors`` applies without zone awareness; with zone awareness (all-instances sets)
    ``max_unavailable_zones`` says how many whole zones may fail instead.
    """


    def __init__(self, instances=(), int max_errors=0, int max_unavailable_zones=0):
        self.instances = tuple(instances)
        self.max_errors = max_errors
        self.max_unavailable_zones = max_unavailable_zones

    def instance_ids(self):
        return [i.id for i in self.instances]

    def addresses(self):
        return [i.addr for i in self.instances]

    def __len__(self):
        return len(self.instances)

    def __eq__(self, other):
        try:
            return (self.max_errors == other.max_errors
                    and self.max_unavailable_zones == other.max_unavailable_zones
                    and self.instances == tuple(other.instances))
        except AttributeError:
            return NotImplemented

    __hash__ = None

    def __repr__(self):
        return (f"ReplicationSet(instances={self.instance_ids()!r}, max_errors={self.max_errors}, "
                f"max_unavailable_zones={self.max_unavailable_zones})")


cdef inline ReplicationSet _new_set(tuple instances, int max_errors):
    cdef ReplicationSet rs = ReplicationSet.__new__(ReplicationSet)
    rs.instances = instances
    rs.max_errors = max_errors
    rs.max_unavailable_zones = 0
    return rs


cdef inline int64_t _seed(str identifier, str zone):
    """dskit ShuffleShardSeed: md5(identifier [+ NUL + zone]), first 8 bytes big-endian, as int64."""
    cdef bytes data = identifier.encode()
    if zone:
        data += b"\x00" + zone.encode()
    cdef bytes d = _md5(data).digest()
    cdef const unsigned char* p = d
    cdef uint64_t v = 0
    cdef int j
    for j in range(8):
        v = (v << 8) | p[j]
    return <int64_t>v


cdef inline int _bucket_bits(Py_ssize_t n_tokens):
    """About four buckets per token, between 2**4 and 2**16 buckets."""
    cdef int bits = 4
    while bits < 16 and (1 << bits) < 4 * n_tokens:
        bits += 1
    return bits


cdef inline Py_ssize_t search_token(const uint32_t* tokens, Py_ssize_t n, uint32_t key) noexcept nogil:
    """Index of the first token strictly greater than ``key``, wrapping to 0."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:  # first index with tokens[i] > key
        mid = (lo + hi) >> 1
        if tokens[mid] <= key:
            lo = mid + 1
        else:
            hi = mid
    return 0 if lo >= n else lo


def search_token_py(tokens, key):
    cdef const uint32_t[::1] t = np.ascontiguousarray(tokens, dtype=np.uint32)
    if t.shape[0] == 0:
        return 0
    return search_token(&t[0], t.shape[0], <uint32_t>key)


cdef class RingCore:
    """Lookup state of one ring; the public ``Ring`` class adds descriptions and caches on top."""


    def __cinit__(self, *args, **kwargs):
        self.replication_factor = 1
        self.zone_awareness = False
        self.heartbeat_timeout = 60.0
        self._scratch = NULL
        self._zscratch = NULL
        self._loaded = False
        self._shard_cache = {}
        self._gen = 0

    def __dealloc__(self):
        free(self._scratch)
        free(self._zscratch)

    def _configure(self, int replication_factor, bint zone_awareness, double heartbeat_timeout):
        self.replication_factor = replication_factor
        self.zone_awareness = zone_awareness
        self.heartbeat_timeout = heartbeat_timeout

    def _load(self, tables):
        tokens = np.ascontiguousarray(tables.tokens, dtype=np.uint32)
        owner = np.ascontiguousarray(tables.owner, dtype=np.int32)
        zone_of = np.ascontiguousarray(tables.inst_zone, dtype=np.int32)
        zone_size = np.ascontiguousarray(tables.zone_size, dtype=np.int32)
        zone_empty = np.array([z == "" for z in tables.zones], dtype=np.uint8)
        state = np.ascontiguousarray(tables.state, dtype=np.uint8)
        heartbeat = np.ascontiguousarray(tables.heartbeat, dtype=np.int64)
        # Keep dummies of length >= 1 so pointers are always valid.
        arrays = []
        for a, dt in ((tokens, np.uint32), (owner, np.int32), (zone_of, np.int32), (zone_size, np.int32),
                      (zone_empty, np.uint8), (state, np.uint8), (heartbeat, np.int64)):
            arrays.append(a if len(a) else np.zeros(1, dtype=dt))
        self._arrays = arrays
        self._shard_arrays = (
            np.ascontiguousarray(tables.read_only, dtype=np.uint8) if len(state) else np.zeros(1, np.uint8),
            np.ascontiguousarray(tables.read_only_ts, dtype=np.int64) if len(state) else np.zeros(1, np.int64),
            np.ascontiguousarray(tables.registered_ts, dtype=np.int64) if len(state) else np.zeros(1, np.int64),
            np.ascontiguousarray(tables.zone_tokens, dtype=np.uint32) if len(tables.zone_tokens) else np.zeros(1, np.uint32),
            np.ascontiguousarray(tables.zone_owner, dtype=np.int32) if len(tables.zone_owner) else np.zeros(1, np.int32),
            np.ascontiguousarray(tables.zone_offsets, dtype=np.int64),
        )
        self._t = tables
        self._instances = list(tables.instances)
        self._n_tokens = len(tokens)
        # Prefix index: bucket b = the tokens whose top ``bits`` bits are b; _bucket[b] is the index of
        # its first token. A lookup reads one bucket instead of a branchy binary search over all.
        bits = _bucket_bits(len(tokens))
        starts = np.searchsorted(tokens, np.arange((1 << bits) + 1, dtype=np.uint64) << (32 - bits), side="left")
        bucket = np.ascontiguousarray(starts, dtype=np.int32)
        self._bucket_arr = bucket
        cdef const int32_t[::1] v_bucket = bucket
        self._bucket = &v_bucket[0]
        self._bucket_shift = 32 - bits
        self._n_instances = len(state)
        self._n_zones = len(zone_size)
        cdef const uint32_t[::1] v_tok = arrays[0]
        cdef const int32_t[::1] v_own = arrays[1]
        cdef const int32_t[::1] v_zof = arrays[2]
        cdef const int32_t[::1] v_zsz = arrays[3]
        cdef const uint8_t[::1] v_zem = arrays[4]
        cdef const uint8_t[::1] v_st = arrays[5]
        cdef const int64_t[::1] v_hb = arrays[6]
        self._tokens = &v_tok[0]
        self._owner = &v_own[0]
        self._zone_of = &v_zof[0]
        self._zone_size = &v_zsz[0]
        self._zone_empty = &v_zem[0]
        self._state = &v_st[0]
        self._heartbeat = &v_hb[0]
        free(self._scratch)
        free(self._zscratch)
        self._scratch = <int32_t*>malloc((self._n_instances + 1) * sizeof(int32_t))
        self._zscratch = <int32_t*>malloc((2 * self._n_zones + 2) * sizeof(int32_t))
        if self._scratch == NULL or self._zscratch == NULL:
            raise MemoryError()
        cdef const uint8_t[::1] v_ro = self._shard_arrays[0]
        cdef const int64_t[::1] v_ro_ts = self._shard_arrays[1]
        cdef const int64_t[::1] v_reg = self._shard_arrays[2]
        cdef const uint32_t[::1] v_ztok = self._shard_arrays[3]
        cdef const int32_t[::1] v_zown = self._shard_arrays[4]
        cdef const int64_t[::1] v_zoff = self._shard_arrays[5]
        self._ro = &v_ro[0]
        self._ro_ts = &v_ro_ts[0]
        self._reg_ts = &v_reg[0]
        self._ztok = &v_ztok[0]
        self._zown = &v_zown[0]
        self._zoff = &v_zoff[0]
        self._single = [_new_set((inst,), 0) for inst in self._instances]
        self._loaded = True

    # -- the walk (dskit findInstancesForKey) ---------------------------------------------------
    cdef int _find(self, uint32_t key, int op, int32_t* chosen, int32_t* zc) noexcept nogil:
        cdef Py_ssize_t n_tokens = self._n_tokens, i, iterations = 0
        cdef int size = self.replication_factor, count = 0, j, z, inst, nz = self._n_zones
        cdef bint zone_aware = self.zone_awareness, has_zone, dup, stop
        cdef int32_t* found = zc
        cdef int32_t* examined = zc + nz
        if zone_aware:
            memset(zc, 0, 2 * nz * sizeof(int32_t))
        i = self._search(key)
        while count < (self._n_instances if self._n_instances < size else size) and iterations < n_tokens:
            if zone_aware:
                stop = True
                for z in range(nz):
                    if not (found[z] >= 1 or examined[z] >= self._zone_size[z]):
                        stop = False
                        break
                if stop:
                    break
            iterations += 1
            if i >= n_tokens:
                i -= n_tokens
            inst = self._owner[i]
            i += 1
            dup = False
            for j in range(count):
                if chosen[j] == inst:
                    dup = True
                    break
            if dup:
                continue
            z = self._zone_of[inst]
            has_zone = zone_aware and not self._zone_empty[z]
            if has_zone:
                if found[z] >= 1:
                    continue
                examined[z] += 1
            chosen[count] = inst
            count += 1
            if op & (0x10000 << self._state[inst]):
                size += 1
            elif has_zone:
                found[z] += 1
        return count

    cdef inline Py_ssize_t _search(self, uint32_t key) noexcept nogil:
        """Index of the first token strictly greater than ``key``, wrapping to 0 (via the bucket index)."""
        cdef uint32_t b = key >> self._bucket_shift
        cdef Py_ssize_t lo = self._bucket[b], hi = self._bucket[b + 1], mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._tokens[mid] <= key:
                lo = mid + 1
            else:
                hi = mid
        return 0 if lo >= self._n_tokens else lo

    cdef bint _healthy(self, int inst, int op, bint check_hb, double now) noexcept nogil:
        if not (op & (1 << self._state[inst])):
            return False
        return (not check_hb) or (now - <double>self._heartbeat[inst] <= self.heartbeat_timeout)

    # -- single lookup --------------------------------------------------------------------------
    def get(self, key, int op=WRITE_OP, now=None):
        """Replicas for ``key`` (a uint32 token) healthy for ``op``; ``now`` enables heartbeat checks."""
        cdef uint32_t k
        try:
            k = key if type(key) is int else _index(key)
        except (OverflowError, TypeError):
            raise InvalidRingError(f"key must be a uint32, got {key!r}") from None
        if not self._loaded:
            self._lazy_load()
        if self._n_tokens == 0:
            raise EmptyRingError()
        cdef bint check_hb = now is not None
        cdef double t_now = now if check_hb else 0.0
        cdef int count = self._find(k, op, self._scratch, self._zscratch)
        cdef int n = self.replication_factor if self.replication_factor > count else count
        cdef int min_success = n // 2 + 1, healthy = 0, j, inst
        for j in range(count):
            inst = self._scratch[j]
            if self._healthy(inst, op, check_hb, t_now):
                self._scratch[healthy] = inst
                healthy += 1
        if healthy < min_success:
            return self._fail(k, op, check_hb, t_now, min_success, healthy)
        if healthy == 1 and min_success == 1:
            return self._single[self._scratch[0]]
        return _new_set(PyTuple_New_fill(self._instances, self._scratch, healthy), healthy - min_success)

    cdef object _fail(self, uint32_t k, int op, bint check_hb, double t_now, int min_success, int healthy):
        cdef int count = self._find(k, op, self._scratch, self._zscratch), j
        unhealthy = [self._instances[self._scratch[j]].addr for j in range(count)
                     if not self._healthy(self._scratch[j], op, check_hb, t_now)]
        raise TooManyUnhealthyInstancesError(
            not_enough_replicas_message(min_success, healthy, unhealthy, self.zone_awareness))

    # -- batch lookup (dskit DoBatch's fan-out) ---------------------------------------------------
    def _max_width(self, int op):
        cdef int extenders = 0, j
        for j in range(self._n_instances):
            if op & (0x10000 << self._state[j]):
                extenders += 1
        cdef int w = self.replication_factor + extenders
        if w > self._n_instances:
            w = self._n_instances
        return w if w > 1 else 1

    def get_many_raw(self, keys, int op, now):
        """Per key: healthy replica indices (row, -1 padded), their count, and max_errors (-1 = failed)."""
        if not self._loaded:
            self._lazy_load()
        if self._n_tokens == 0:
            raise EmptyRingError()
        cdef const uint32_t[::1] k = keys
        cdef Py_ssize_t n = k.shape[0], row
        cdef int width = self._max_width(op)
        replicas_arr = np.full((n, width), -1, dtype=np.int32)
        counts_arr = np.zeros(n, dtype=np.int32)
        errors_arr = np.zeros(n, dtype=np.int32)
        cdef int32_t[:, ::1] replicas = replicas_arr
        cdef int32_t[::1] counts = counts_arr
        cdef int32_t[::1] max_errors = errors_arr
        cdef bint check_hb = now is not None
        cdef double t_now = now if check_hb else 0.0
        cdef int32_t* chosen = <int32_t*>malloc((self._n_instances + 1) * sizeof(int32_t))
        cdef int32_t* zc = <int32_t*>malloc((2 * self._n_zones + 2) * sizeof(int32_t))
        cdef int count, j, healthy, min_success, rf = self.replication_factor
        if chosen == NULL or zc == NULL:
            free(chosen)
            free(zc)
            raise MemoryError()
        try:
            with nogil:
                for row in range(n):
                    count = self._find(k[row], op, chosen, zc)
                    min_success = (rf if rf > count else count) // 2 + 1
                    healthy = 0
                    for j in range(count):
                        if self._healthy(chosen[j], op, check_hb, t_now):
                            replicas[row, healthy] = chosen[j]
                            healthy += 1
                    counts[row] = healthy
                    max_errors[row] = healthy - min_success if healthy >= min_success else -1
        finally:
            free(chosen)
            free(zc)
        return replicas_arr, counts_arr, errors_arr

    # -- shuffle-shard picks (dskit Ring.shuffleShard's walk) -------------------------------------
    def shuffle_shard(self, identifier, size):
        """The tenant's shard: ``size`` instances picked by dskit's shuffle-sharding walk (per zone
        ``ceil(size / zones)`` when zone-aware), read-only instances excluded; ``size`` 0 = every
        instance. Stable, consistent, and cached until the topology changes."""
        if type(size) is int and type(identifier) is str:  # anything else is validated by the slow path
            entry = self._shard_cache.get((identifier, size))
            if entry is not None and (<tuple>entry)[1] == self._gen:
                return (<tuple>entry)[0]
        return self._shuffle_shard_slow(identifier, size)

    def _subring(self, list indices):
        """A read-only ring of some of this ring's instances; its tables are built on first use."""
        if not self._loaded:
            self._lazy_load()
        cdef list ids = self._t.ids
        cdef dict chosen = {}
        for i in indices:
            chosen[ids[i]] = self._instances[i]
        cls = type(self)
        cdef RingCore sub = cls.__new__(cls)
        sub.replication_factor = self.replication_factor
        sub.zone_awareness = self.zone_awareness
        sub.heartbeat_timeout = self.heartbeat_timeout
        desc = RingDesc.__new__(RingDesc)
        desc.instances = chosen
        desc._token_index = None
        view = <object>sub  # the Python half's slots (see ring.py _RingAPI._init_view)
        view._desc = desc
        view._t = None
        view._lookback_cache = None
        return sub

    def _shard_pick(self, str identifier, int per_zone, bint lookback, int64_t until):
        """Instance indices of ``identifier``'s shard, ``per_zone`` picks per zone (sorted zones when
        zone-aware, the whole ring as one zone otherwise)."""
        if not self._loaded:
            self._lazy_load()
        zones = self._t.zones if self.zone_awareness else [""]
        cdef list seeds = [_seed(identifier, zone_name) for zone_name in zones]
        cdef const uint8_t* read_only = self._ro
        cdef const int64_t* ro_ts = self._ro_ts
        cdef const int64_t* reg_ts = self._reg_ts
        cdef const int64_t* zoff = self._zoff
        cdef uint8_t* in_shard = <uint8_t*>malloc(self._n_instances + 1)
        if in_shard == NULL:
            raise MemoryError()
        memset(in_shard, 0, self._n_instances + 1)
        cdef list picked = []
        if self._rnd is None:
            self._rnd = GoRand.__new__(GoRand)
        cdef GoRand rnd = self._rnd
        cdef int z, inst, i
        cdef Py_ssize_t lo, n_tok, start, step, p
        cdef const uint32_t* toks
        cdef const int32_t* own
        cdef bint found, zone_aware = self.zone_awareness
        cdef int64_t ts
        try:
            for z in range(len(seeds)):
                if zone_aware:
                    if per_zone >= self._zone_size[z]:
                        for inst in range(self._n_instances):
                            if self._zone_of[inst] == z and _include_ro(inst, read_only, ro_ts, lookback, until):
                                picked.append(inst)
                                in_shard[inst] = 1
                        continue
                    lo = zoff[z]
                    n_tok = zoff[z + 1] - lo
                    toks = self._ztok + lo
                    own = self._zown + lo
                else:
                    n_tok = self._n_tokens
                    toks = self._tokens
                    own = self._owner
                rnd.reseed(<int64_t>seeds[z])
                for i in range(per_zone):
                    start = search_token(toks, n_tok, rnd.next_uint32())
                    found = False
                    for step in range(n_tok):
                        p = start + step
                        if p >= n_tok:
                            p -= n_tok
                        inst = own[p]
                        if in_shard[inst] or not _include_ro(inst, read_only, ro_ts, lookback, until):
                            continue
                        picked.append(inst)
                        in_shard[inst] = 1
                        if lookback and reg_ts[inst] >= until:
                            continue
                        if lookback and (read_only[inst] or ro_ts[inst] >= until):
                            continue
                        found = True
                        break
                    if not found:
                        break
        finally:
            free(in_shard)
        return picked


cdef inline bint _include_ro(int inst, const uint8_t* read_only, const int64_t* ro_ts,
                             bint lookback, int64_t until) noexcept nogil:
    if not read_only[inst]:
        return True
    if not lookback:
        return False
    return not (ro_ts[inst] > 0 and ro_ts[inst] < until)


cdef inline tuple PyTuple_New_fill(list instances, int32_t* idx, int n):
    cdef tuple out
    if n == 1:
        return (instances[idx[0]],)
    return tuple([instances[idx[j]] for j in range(n)])
