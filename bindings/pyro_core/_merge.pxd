# C-level interface of pyro_core._merge: token kernels of the ring-state merge.
# Owns: equality of two sorted token buffers (memcmp).
from libc.stdint cimport uint32_t

cdef bint tokens_equal_c(const uint32_t* a, Py_ssize_t na, const uint32_t* b, Py_ssize_t nb) noexcept nogil
