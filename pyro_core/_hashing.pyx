# cython: language_level=3
# Compiled series-token kernels (twin: pyro_core/_pure/hashing.py).
# Owns: FNV-1 32 (Pyroscope's TokenFor) in a C loop, its batch form, and the xxhash token batch.
# C-level interface: bindings/pyro_core/_hashing.pxd.
from libc.stdint cimport uint32_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

import numpy as np
import xxhash

cdef uint32_t FNV32_OFFSET = 2166136261U
cdef uint32_t FNV32_PRIME = 16777619U
_SEPARATOR = b"\xff"
_xxh3 = xxhash.xxh3_64_intdigest


cdef uint32_t _fnv1(const unsigned char* p, Py_ssize_t n, uint32_t h) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        h = h * FNV32_PRIME
        h ^= p[i]
    return h


def fnv1_32(bytes data, h=FNV32_OFFSET):
    """FNV-1 (not FNV-1a) 32-bit hash of ``data``, continuing from ``h``."""
    cdef uint32_t start = <uint32_t>int(h)
    return _fnv1(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), start)


def token_for(str tenant, str labels):
    """Pyroscope's series token: FNV-1 32 over tenant bytes then the label string."""
    cdef bytes t = tenant.encode()
    cdef bytes l = labels.encode()
    cdef uint32_t h = _fnv1(<const unsigned char*>PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t), FNV32_OFFSET)
    return _fnv1(<const unsigned char*>PyBytes_AS_STRING(l), PyBytes_GET_SIZE(l), h)


def tokens_for(str tenant, labels):
    """``token_for`` of one tenant's many label strings, as a uint32 array."""
    cdef bytes t = tenant.encode()
    cdef uint32_t h0 = _fnv1(<const unsigned char*>PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t), FNV32_OFFSET)
    cdef Py_ssize_t i, n = len(labels)
    out = np.empty(n, dtype=np.uint32)
    cdef uint32_t[::1] o = out
    cdef bytes b
    for i in range(n):
        b = (<str?>labels[i]).encode()
        o[i] = _fnv1(<const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), h0)
    return out


def xxh_token(str tenant, str labels):
    """A fast token (not Pyroscope-compatible): high 32 bits of xxh3-64(tenant 0xff labels)."""
    return _xxh3(tenant.encode() + _SEPARATOR + labels.encode()) >> 32


def xxh_tokens(str tenant, labels):
    cdef bytes prefix = tenant.encode() + _SEPARATOR
    cdef Py_ssize_t i, n = len(labels)
    out = np.empty(n, dtype=np.uint32)
    cdef uint32_t[::1] o = out
    f = _xxh3
    for i in range(n):
        o[i] = <uint32_t>(f(prefix + (<str?>labels[i]).encode()) >> 32)
    return out
