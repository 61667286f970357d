# C-level interface of pyro_core._lzw: Go compress/lzw (LSB, literal width 8), memberlist's compression.
# Owns: the two nogil coders and the result buffer they fill, for a Cython packet path (compound /
# compress / CRC unwrapping) that wants to inflate a memberlist compress message without going
# through Python objects or holding the GIL. Exposed because that is the one place a second
# compiled module would need LZW; the Python-level functions add nothing but error mapping.
#
# Contract: pass a zeroed LzwBuffer; whatever the status, release it with lzw_buffer_free().
# On LZW_OK, data[0:size] is the result. On LZW_INVALID_CODE, bad_code / bad_byte say which code
# and which input byte it ended in.

cdef enum LzwStatus:
    LZW_OK = 0
    LZW_TRUNCATED = 1      # the stream ends before its EOF code (Go: io.ErrUnexpectedEOF)
    LZW_INVALID_CODE = 2   # a code above the table's next free code (Go: "lzw: invalid code")
    LZW_TOO_LARGE = 3      # the output would exceed max_size
    LZW_NO_MEMORY = 4

cdef struct LzwBuffer:
    unsigned char* data    # malloc'ed; owned by the buffer
    size_t size
    size_t capacity
    unsigned int bad_code
    size_t bad_byte

cdef LzwStatus lzw_decode(const unsigned char* src, size_t n, size_t max_size, LzwBuffer* out) noexcept nogil
cdef LzwStatus lzw_encode(const unsigned char* src, size_t n, LzwBuffer* out) noexcept nogil
cdef void lzw_buffer_free(LzwBuffer* out) noexcept nogil
