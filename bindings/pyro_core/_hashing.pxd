# C-level interface of pyro_core._hashing: series tokens.
# Owns: FNV-1 32 over a byte buffer (Pyroscope's TokenFor is _fnv1(labels, _fnv1(tenant, 2166136261))).
from libc.stdint cimport uint32_t

cdef uint32_t _fnv1(const unsigned char* p, Py_ssize_t n, uint32_t h) noexcept nogil
