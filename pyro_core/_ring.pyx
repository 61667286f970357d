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

cdef enum:
    WRITE_OP = 0x1E0001  # ACTIVE healthy; extend on LEAVING, PENDING, JOINING, LEFT


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



cdef inline object _nonempty(object arr, object dtype):
    """Arrays of length >= 1, so a pointer to element 0 is always valid."""
    return arr if len(arr) else np.zeros(1, dtype=dtype)


def _bad_lookup_args(key, op, now):
    if isinstance(key, bool) or not isinstance(key, int) and not hasattr(key, "__index__"):
        return f"key must be a uint32, got {key!r}"
    try:
        if not 0 <= _index(key) <= 0xFFFFFFFF:
            return f"key must be a uint32, got {key!r}"
    except TypeError:
        return f"key must be a uint32, got {key!r}"
    if isinstance(op, bool) or not hasattr(op, "__index__") or not 0 <= _index(op) <= 0xFFFFFFFF:
        return f"op must be an operation bitmask (uint32), got {op!r}"
    return f"now must be unix seconds (a number) or None, got {now!r}"


cdef inline Py_ssize_t _search(const RingView* v, uint32_t key) noexcept nogil:
    """Index of the first token strictly greater than ``key``, wrapping to 0 (via the bucket index)."""
    cdef uint32_t b = key >> v.bucket_shift
    cdef Py_ssize_t lo = v.bucket[b], hi = v.bucket[b + 1], mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if v.tokens[mid] <= key:
            lo = mid + 1
        else:
            hi = mid
    return 0 if lo >= v.n_tokens else lo


cdef int _find(const RingView* v, uint32_t key, uint32_t op, int32_t* chosen, int32_t* zc) noexcept nogil:
    """dskit findInstancesForKey: distinct instances walking from the key's token (indices into
    the instances), extended by one for each instance met in a state that extends ``op``."""
    cdef Py_ssize_t n_tokens = v.n_tokens, i, iterations = 0
    cdef Py_ssize_t size = v.rf, target_count
    cdef int count = 0, j, z, inst, nz = v.n_zones
    cdef bint zone_aware = v.zone_aware, has_zone, dup, stop
    cdef int32_t* found = zc
    cdef int32_t* examined = zc + nz
    if zone_aware:
        memset(zc, 0, 2 * nz * sizeof(int32_t))
    i = _search(v, key)
    while iterations < n_tokens:
        target_count = v.n_instances if v.n_instances < size else size
        if count >= target_count:
            break
        if zone_aware:
            stop = True
            for z in range(nz):
                if not (found[z] >= 1 or examined[z] >= v.zone_size[z]):
                    stop = False
                    break
            if stop:
                break
        iterations += 1
        if i >= n_tokens:
            i -= n_tokens
        inst = v.owner[i]
        i += 1
        dup = False
        for j in range(count):
            if chosen[j] == inst:
                dup = True
                break
        if dup:
            continue
        z = v.zone_of[inst]
        has_zone = zone_aware and not v.zone_empty[z]
        if has_zone:
            if found[z] >= 1:
                continue
            examined[z] += 1
        chosen[count] = inst
        count += 1
        if op & (<uint32_t>0x10000 << v.state[inst]):
            size += 1  # an extra replica that does not count for its zone
        elif has_zone:
            found[z] += 1
    return count


cdef inline bint _healthy(const RingView* v, int inst, uint32_t op, bint check_hb, double now) noexcept nogil:
    if not (op & (<uint32_t>1 << v.state[inst])):
        return False
    return (not check_hb) or (now - <double>v.heartbeat[inst] <= v.hb_timeout)


cdef Py_ssize_t _max_width(const RingView* v, uint32_t op) noexcept nogil:
    """Most candidates one key can get: RF plus every extending instance that owns tokens."""
    cdef Py_ssize_t with_tokens = 0, extenders = 0, j
    for j in range(v.n_instances):
        if v.has_tokens[j]:
            with_tokens += 1
            if op & (<uint32_t>0x10000 << v.state[j]):
                extenders += 1
    cdef Py_ssize_t w = v.rf + extenders
    if w > with_tokens:
        w = with_tokens
    return w if w > 1 else 1


cdef class RingCore:
    """Lookup state of one ring; the public ``Ring`` class adds descriptions and caches on top."""

    def __cinit__(self, *args, **kwargs):
        self._v.rf = 1
        self._v.zone_aware = False
        self._v.hb_timeout = 60.0
        self._scratch = NULL
        self._zscratch = NULL
        self._loaded = False
        self._shard_cache = {}
        self._gen = 0

    def __dealloc__(self):
        free(self._scratch)
        free(self._zscratch)

    @property
    def replication_factor(self):
        return self._v.rf

    @property
    def zone_awareness(self):
        return bool(self._v.zone_aware)

    @property
    def heartbeat_timeout(self):
        return self._v.hb_timeout

    def _configure(self, int replication_factor, bint zone_awareness, double heartbeat_timeout):
        self._v.rf = replication_factor
        self._v.zone_aware = zone_awareness
        self._v.hb_timeout = heartbeat_timeout

    def _load(self, tables):
        """Point the kernel at new tables (a topology change)."""
        tokens = np.ascontiguousarray(tables.tokens, dtype=np.uint32)
        owner = np.ascontiguousarray(tables.owner, dtype=np.int32)
        n = len(tables.state)
        has_tokens = np.zeros(max(1, n), dtype=np.uint8)
        has_tokens[owner] = 1
        # Prefix index: bucket b = the tokens whose top ``bits`` bits are b; bucket[b] is the index of
        # its first token. A lookup reads one bucket instead of a branchy binary search over all.
        bits = _bucket_bits(len(tokens))
        edges = np.arange((1 << bits) + 1, dtype=np.int64) << (32 - bits)
        bucket = np.searchsorted(tokens.astype(np.int64), edges, side="left").astype(np.int32)
        arrays = {
            "tokens": _nonempty(tokens, np.uint32),
            "owner": _nonempty(owner, np.int32),
            "zone_of": _nonempty(np.ascontiguousarray(tables.inst_zone, dtype=np.int32), np.int32),
            "zone_size": _nonempty(np.ascontiguousarray(tables.zone_size, dtype=np.int32), np.int32),
            "zone_empty": _nonempty(np.array([z == "" for z in tables.zones], dtype=np.uint8), np.uint8),
            "has_tokens": has_tokens,
            "bucket": bucket,
            "read_only": _nonempty(np.ascontiguousarray(tables.read_only, dtype=np.uint8), np.uint8),
            "read_only_ts": _nonempty(np.ascontiguousarray(tables.read_only_ts, dtype=np.int64), np.int64),
            "registered_ts": _nonempty(np.ascontiguousarray(tables.registered_ts, dtype=np.int64), np.int64),
            "zone_tokens": _nonempty(np.ascontiguousarray(tables.zone_tokens, dtype=np.uint32), np.uint32),
            "zone_owner": _nonempty(np.ascontiguousarray(tables.zone_owner, dtype=np.int32), np.int32),
            "zone_offsets": np.ascontiguousarray(tables.zone_offsets, dtype=np.int64),
        }
        cdef const uint32_t[::1] v_tok = arrays["tokens"]
        cdef const int32_t[::1] v_own = arrays["owner"]
        cdef const int32_t[::1] v_zof = arrays["zone_of"]
        cdef const int32_t[::1] v_zsz = arrays["zone_size"]
        cdef const uint8_t[::1] v_zem = arrays["zone_empty"]
        cdef const uint8_t[::1] v_has = arrays["has_tokens"]
        cdef const int32_t[::1] v_bucket = arrays["bucket"]
        cdef const uint8_t[::1] v_ro = arrays["read_only"]
        cdef const int64_t[::1] v_ro_ts = arrays["read_only_ts"]
        cdef const int64_t[::1] v_reg = arrays["registered_ts"]
        cdef const uint32_t[::1] v_ztok = arrays["zone_tokens"]
        cdef const int32_t[::1] v_zown = arrays["zone_owner"]
        cdef const int64_t[::1] v_zoff = arrays["zone_offsets"]
        cdef int32_t* scratch = <int32_t*>malloc((n + 1) * sizeof(int32_t))
        cdef int32_t* zscratch = <int32_t*>malloc((2 * len(tables.zones) + 2) * sizeof(int32_t))
        if scratch == NULL or zscratch == NULL:
            free(scratch)
            free(zscratch)
            raise MemoryError()
        free(self._scratch)
        free(self._zscratch)
        self._scratch = scratch
        self._zscratch = zscratch
        self._arrays = arrays
        self._t = tables
        self._v.tokens = &v_tok[0]
        self._v.owner = &v_own[0]
        self._v.zone_of = &v_zof[0]
        self._v.zone_size = &v_zsz[0]
        self._v.zone_empty = &v_zem[0]
        self._v.has_tokens = &v_has[0]
        self._v.bucket = &v_bucket[0]
        self._v.bucket_shift = 32 - bits
        self._v.n_tokens = len(tokens)
        self._v.n_instances = n
        self._v.n_zones = len(tables.zones)
        self._ro = &v_ro[0]
        self._ro_ts = &v_ro_ts[0]
        self._reg_ts = &v_reg[0]
        self._ztok = &v_ztok[0]
        self._zown = &v_zown[0]
        self._zoff = &v_zoff[0]
        self._load_states(tables)
        self._loaded = True

    def _load_states(self, tables):
        """Swap in new states and heartbeats only (same topology): tables, index and scratch stay."""
        arrays = dict(self._arrays)  # a new dict: a running batch keeps the old arrays alive
        arrays["state"] = _nonempty(np.ascontiguousarray(tables.state, dtype=np.uint8), np.uint8)
        arrays["heartbeat"] = _nonempty(np.ascontiguousarray(tables.heartbeat, dtype=np.int64), np.int64)
        cdef const uint8_t[::1] v_st = arrays["state"]
        cdef const int64_t[::1] v_hb = arrays["heartbeat"]
        self._arrays = arrays
        self._t = tables
        self._instances = list(tables.instances)
        self._single = [_new_set((inst,), 0) for inst in self._instances]
        self._v.state = &v_st[0]
        self._v.heartbeat = &v_hb[0]

    # -- single lookup --------------------------------------------------------------------------
    def get(self, key, op=WRITE_OP, now=None):
        """Replicas for ``key`` (a uint32 token) healthy for ``op``; ``now`` enables heartbeat checks."""
        cdef uint32_t k
        cdef uint32_t o
        cdef double t_now = 0.0
        cdef bint check_hb = now is not None
        try:
            if type(key) is int:
                k = key
            elif isinstance(key, bool):
                raise TypeError
            else:
                k = _index(key)
            o = op if type(op) is int else _index(op)
            if check_hb:
                t_now = now
        except (OverflowError, TypeError, ValueError):
            raise InvalidRingError(_bad_lookup_args(key, op, now)) from None
        if not self._loaded:
            self._lazy_load()
        if self._v.n_tokens == 0:
            raise EmptyRingError()
        cdef int count = _find(&self._v, k, o, self._scratch, self._zscratch)
        cdef int n = self._v.rf if self._v.rf > count else count
        cdef int min_success = n // 2 + 1, healthy = 0, j, inst
        for j in range(count):
            inst = self._scratch[j]
            if _healthy(&self._v, inst, o, check_hb, t_now):
                self._scratch[healthy] = inst
                healthy += 1
        if healthy < min_success:
            return self._fail(k, o, check_hb, t_now, min_success, healthy)
        if healthy == 1 and min_success == 1:
            return self._single[self._scratch[0]]
        return _new_set(PyTuple_New_fill(self._instances, self._scratch, healthy), healthy - min_success)

    cdef object _fail(self, uint32_t k, uint32_t op, bint check_hb, double t_now, int min_success, int healthy):
        cdef int count = _find(&self._v, k, op, self._scratch, self._zscratch), j
        unhealthy = [self._instances[self._scratch[j]].addr for j in range(count)
                     if not _healthy(&self._v, self._scratch[j], op, check_hb, t_now)]
        raise TooManyUnhealthyInstancesError(
            not_enough_replicas_message(min_success, healthy, unhealthy, self._v.zone_aware))

    # -- batch lookup (dskit DoBatch's fan-out) ---------------------------------------------------
    def get_many_raw(self, keys, op, now):
        """Per key: healthy replica indices (row, -1 padded), their count, max_errors (-1 = failed),
        and the instances the indices refer to.

        Runs without the GIL on a snapshot of the tables: a concurrent ``update()`` swaps in new
        arrays but cannot free the ones this call reads (it holds references to them)."""
        cdef uint32_t o
        cdef double t_now = 0.0
        cdef bint check_hb = now is not None
        try:
            o = op if type(op) is int else _index(op)
            if check_hb:
                t_now = now
        except (OverflowError, TypeError, ValueError):
            raise InvalidRingError(_bad_lookup_args(0, op, now)) from None
        if not self._loaded:
            self._lazy_load()
        if self._v.n_tokens == 0:
            raise EmptyRingError()
        cdef RingView v = self._v  # the snapshot ...
        keep_alive = self._arrays  # ... the arrays behind its pointers ...
        instances = self._instances  # ... and the instances its indices refer to
        cdef const uint32_t[::1] k = keys
        cdef Py_ssize_t n = k.shape[0], row, width = _max_width(&v, o)
        replicas_arr = np.full((n, width), -1, dtype=np.int32)
        counts_arr = np.zeros(n, dtype=np.int32)
        errors_arr = np.zeros(n, dtype=np.int32)
        cdef int32_t[:, ::1] replicas = replicas_arr
        cdef int32_t[::1] counts = counts_arr
        cdef int32_t[::1] max_errors = errors_arr
        cdef int32_t* chosen = <int32_t*>malloc((v.n_instances + 1) * sizeof(int32_t))
        cdef int32_t* zc = <int32_t*>malloc((2 * v.n_zones + 2) * sizeof(int32_t))
        cdef int count, j, healthy, min_success
        if chosen == NULL or zc == NULL:
            free(chosen)
            free(zc)
            raise MemoryError()
        try:
            with nogil:
                for row in range(n):
                    count = _find(&v, k[row], o, chosen, zc)
                    min_success = (v.rf if v.rf > count else count) // 2 + 1
                    healthy = 0
                    for j in range(count):
                        if _healthy(&v, chosen[j], o, check_hb, t_now):
                            replicas[row, healthy] = chosen[j]
                            healthy += 1
                    counts[row] = healthy
                    max_errors[row] = healthy - min_success if healthy >= min_success else -1
        finally:
            free(chosen)
            free(zc)
        del keep_alive
        return replicas_arr, counts_arr, errors_arr, instances

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
        sub._v.rf = self._v.rf
        sub._v.zone_aware = self._v.zone_aware
        sub._v.hb_timeout = self._v.hb_timeout
        sub._init_view(RingDesc._trusted(chosen))
        return sub

    def _shard_pick(self, str identifier, int per_zone, bint lookback, int64_t until):
        """Instance indices of ``identifier``'s shard, ``per_zone`` picks per zone (sorted zones when
        zone-aware, the whole ring as one zone otherwise)."""
        if not self._loaded:
            self._lazy_load()
        zones = self._t.zones if self._v.zone_aware else [""]
        cdef list seeds = [_seed(identifier, zone_name) for zone_name in zones]
        cdef const uint8_t* read_only = self._ro
        cdef const int64_t* ro_ts = self._ro_ts
        cdef const int64_t* reg_ts = self._reg_ts
        cdef const int64_t* zoff = self._zoff
        cdef uint8_t* in_shard = <uint8_t*>malloc(self._v.n_instances + 1)
        if in_shard == NULL:
            raise MemoryError()
        memset(in_shard, 0, self._v.n_instances + 1)
        cdef list picked = []
        if self._rnd is None:
            self._rnd = GoRand.__new__(GoRand)
        cdef GoRand rnd = self._rnd
        cdef int z, inst, i
        cdef Py_ssize_t lo, n_tok, start, step, p
        cdef const uint32_t* toks
        cdef const int32_t* own
        cdef bint found, zone_aware = self._v.zone_aware
        cdef int64_t ts
        try:
            for z in range(len(seeds)):
                if zone_aware:
                    if per_zone >= self._v.zone_size[z]:
                        for inst in range(self._v.n_instances):
                            if self._v.zone_of[inst] == z and _include_ro(inst, read_only, ro_ts, lookback, until):
                                picked.append(inst)
                                in_shard[inst] = 1
                        continue
                    lo = zoff[z]
                    n_tok = zoff[z + 1] - lo
                    toks = self._ztok + lo
                    own = self._zown + lo
                else:
                    n_tok = self._v.n_tokens
                    toks = self._v.tokens
                    own = self._v.owner
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
