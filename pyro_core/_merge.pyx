# cython: language_level=3
# Compiled kernels behind the ring-state merge (twin: pyro_core/_pure/merge.py).
# Owns: token-list equality (memcmp), duplicate-token detection across instances (open-addressing
# hash set, no Python objects per token) and conflict resolution by rank. Sees token arrays only.
# C-level interface: bindings/pyro_core/_merge.pxd.
cimport cython
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcmp, memset
from libc.stdlib cimport malloc, free

import numpy as np
cimport numpy as cnp

cnp.import_array()


cdef bint tokens_equal_c(const uint32_t* a, Py_ssize_t na, const uint32_t* b, Py_ssize_t nb) noexcept nogil:
    if na != nb:
        return False
    return na == 0 or memcmp(a, b, na * sizeof(uint32_t)) == 0


def tokens_equal(a, b):
    """Whether two sorted token lists are equal."""
    if a is b:
        return True
    cdef const uint32_t[::1] x = a
    cdef const uint32_t[::1] y = b
    if x.shape[0] == 0 or y.shape[0] == 0:
        return x.shape[0] == y.shape[0]
    return tokens_equal_c(&x[0], x.shape[0], &y[0], y.shape[0])


cdef inline uint64_t _mix(uint32_t t) noexcept nogil:
    # Fibonacci hashing: spreads clustered tokens over the table.
    return (<uint64_t>t * 11400714819323198485ULL) >> 32


def has_duplicate_tokens(arrays):
    """Whether any token appears in more than one of the (individually duplicate-free) arrays."""
    cdef Py_ssize_t total = 0, cap = 16, i, j, n
    cdef const uint32_t[::1] arr
    for a in arrays:
        total += len(a)
    if total < 2:
        return False
    while cap < 2 * total:
        cap <<= 1
    cdef uint64_t mask = cap - 1, slot
    # Each slot holds token + 1 (0 = empty), so token 0xFFFFFFFF still fits in 64 bits.
    cdef uint64_t* table = <uint64_t*>malloc(cap * sizeof(uint64_t))
    if table == NULL:
        raise MemoryError()
    memset(table, 0, cap * sizeof(uint64_t))
    cdef bint dup = False
    cdef uint64_t key
    try:
        for a in arrays:
            arr = a
            n = arr.shape[0]
            with nogil:
                for j in range(n):
                    key = <uint64_t>arr[j] + 1
                    slot = _mix(arr[j]) & mask
                    while table[slot] != 0:
                        if table[slot] == key:
                            dup = True
                            break
                        slot = (slot + 1) & mask
                    if dup:
                        break
                    table[slot] = key
            if dup:
                break
    finally:
        free(table)
    return dup


@cython.wraparound(True)
def resolve_conflicts(arrays):
    """Arrays in rank order (index 0 wins every contested token); each one's tokens afterwards."""
    if not arrays:
        return []
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    tokens = np.concatenate(arrays)
    ranks = np.repeat(np.arange(len(arrays), dtype=np.int64), lengths)
    order = np.lexsort((ranks, tokens))  # by token, then by rank
    t_sorted = tokens[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = t_sorted[1:] != t_sorted[:-1]  # first (lowest-rank) holder of each token wins
    kept_tokens = t_sorted[keep]
    kept_ranks = ranks[order][keep]
    by_rank = np.argsort(kept_ranks, kind="stable")  # stable keeps each rank's tokens sorted
    counts = np.bincount(kept_ranks, minlength=len(arrays))
    out = np.split(kept_tokens[by_rank], np.cumsum(counts)[:-1])
    result = []
    for piece in out:
        piece = np.ascontiguousarray(piece, dtype=np.uint32)
        piece.flags.writeable = False
        result.append(piece)
    return result


def changed_instances(dict snapshot, dict instances):
    """Ids whose tokens are not the array object ``snapshot`` recorded for them: instances added
    with tokens, removed, or given other tokens (empty ones included) since the snapshot."""
    cdef list changed = []
    cdef object tokens, old
    cdef Py_ssize_t in_snapshot = 0
    for key, inst in instances.items():
        tokens = inst.tokens
        old = snapshot.get(key)
        if old is not None:
            in_snapshot += 1
            if old is tokens:
                continue
        if old is not None or len(tokens) > 0:
            changed.append(key)
    if in_snapshot < len(snapshot):  # some snapshot ids are gone
        for key in snapshot:
            if key not in instances:
                changed.append(key)
    return changed
