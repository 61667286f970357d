# cython: language_level=3
# Compiled LZW of memberlist's compression (twin: pyro_core/_pure/lzw.py, which states the stream
# rules of Go's compress/lzw with lzw.LSB and literal width 8 that both files follow).
# Owns: a nogil decoder and encoder over C arrays, no Python object per code, and the Python
# wrappers that map their status to ValueError. C-level interface: bindings/pyro_core/_lzw.pxd.
#
# Decoder table: an entry is always "the previous code's bytes + one byte", and those bytes sit
# contiguously in the output already written (the previous code's output, followed by the first
# byte of the code after it). So an entry is stored as (start offset into the output, length) and
# decoding it is one memcpy, instead of walking a prefix/suffix chain backwards.
# Encoder table: open addressing from (prefix code << 8 | byte) to code, 8192 slots for at most
# 3837 live entries, emptied at every clear.
from libc.stdint cimport uint16_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize

import sys

cdef enum:
    _LITERAL_WIDTH = 8
    _CLEAR = 256
    _EOF = 257
    _FIRST_WIDTH = 9
    _MAX_WIDTH = 12
    _TABLE_CODES = 4096
    _MAX_CODE = 4095
    _HASH_BITS = 13
    _HASH_SLOTS = 8192
    _NOGIL_FROM = 65536  # inputs at least this long are coded with the GIL released

LITERAL_WIDTH = _LITERAL_WIDTH
CLEAR = _CLEAR
EOF = _EOF
FIRST_WIDTH = _FIRST_WIDTH
MAX_WIDTH = _MAX_WIDTH
MAX_CODE = _MAX_CODE
DEFAULT_MAX_SIZE = 20 * 2**20


cdef void lzw_buffer_free(LzwBuffer* out) noexcept nogil:
    free(out.data)
    out.data = NULL
    out.size = 0
    out.capacity = 0


cdef inline bint _reserve(LzwBuffer* out, size_t need, size_t limit) noexcept nogil:
    """Make room for ``need`` bytes in total (need <= limit); capacity doubles, capped at ``limit``."""
    cdef size_t cap
    cdef unsigned char* p
    if need <= out.capacity:
        return True
    cap = out.capacity * 2
    if cap < need:
        cap = need
    if cap > limit:
        cap = limit
    p = <unsigned char*>realloc(out.data, cap if cap else 1)
    if p == NULL:
        return False
    out.data = p
    out.capacity = cap
    return True


cdef LzwStatus lzw_decode(const unsigned char* src, size_t n, size_t max_size, LzwBuffer* out) noexcept nogil:
    cdef size_t start[_TABLE_CODES]  # entry c is out.data[start[c] : start[c] + length[c]]
    cdef uint16_t length[_TABLE_CODES]
    cdef size_t pos = 0, o = 0
    cdef uint32_t bits = 0, code
    cdef unsigned int nbits = 0, width = _FIRST_WIDTH
    cdef uint32_t hi = _EOF, overflow = 1 << _FIRST_WIDTH
    cdef bint have_last = False  # False after a clear, before the first code, and with a full table
    cdef size_t last_start = 0, last_len = 0, cur_len
    cdef unsigned char* buf

    out.size = 0
    if not _reserve(out, n * 4 + 64 if n < max_size // 4 else max_size, max_size):
        return LZW_NO_MEMORY
    while True:
        while nbits < width:
            if pos >= n:
                out.size = o
                return LZW_TRUNCATED
            bits |= (<uint32_t>src[pos]) << nbits
            pos += 1
            nbits += 8
        code = bits & ((1u << width) - 1)
        bits >>= width
        nbits -= width

        if code < _CLEAR:
            cur_len = 1
        elif code == _CLEAR:
            width = _FIRST_WIDTH
            hi = _EOF
            overflow = 1 << _FIRST_WIDTH
            have_last = False
            continue
        elif code == _EOF:
            out.size = o
            return LZW_OK
        elif code < hi or (code == hi and not have_last):
            # code == hi without a previous code only happens with a full table (hi == 4095),
            # whose last entry was defined before the table filled.
            cur_len = length[code]
        elif code == hi:
            cur_len = last_len + 1  # the entry this step defines: previous bytes + their first byte
        else:
            out.size = o
            out.bad_code = code
            out.bad_byte = pos - 1
            return LZW_INVALID_CODE

        if cur_len > max_size - o:
            out.size = o
            return LZW_TOO_LARGE
        if not _reserve(out, o + cur_len, max_size):
            out.size = o
            return LZW_NO_MEMORY
        buf = out.data
        if code < _CLEAR:
            buf[o] = <unsigned char>code
        elif code == hi and have_last:
            memcpy(buf + o, buf + last_start, last_len)
            buf[o + last_len] = buf[last_start]
        else:
            memcpy(buf + o, buf + start[code], cur_len)
        if have_last:
            # Entry hi = previous bytes + this code's first byte, which directly follow them.
            start[hi] = last_start
            length[hi] = <uint16_t>(last_len + 1)
        last_start = o
        last_len = cur_len
        have_last = True
        o += cur_len
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                have_last = False  # table full: decode on without new entries until a clear
                hi -= 1
            else:
                width += 1
                overflow <<= 1


cdef struct _BitSink:
    unsigned char* p
    uint32_t bits
    unsigned int nbits
    unsigned int width


cdef inline void _put(_BitSink* s, uint32_t code) noexcept nogil:
    s.bits |= code << s.nbits
    s.nbits += s.width
    while s.nbits >= 8:
        s.p[0] = <unsigned char>s.bits
        s.p += 1
        s.bits >>= 8
        s.nbits -= 8


cdef inline uint32_t _slot(uint32_t key) noexcept nogil:
    return (key * 2654435761u) >> (32 - _HASH_BITS)


cdef LzwStatus lzw_encode(const unsigned char* src, size_t n, LzwBuffer* out) noexcept nogil:
    cdef uint32_t* keys  # (prefix << 8 | byte) + 1, or 0 for an empty slot
    cdef uint16_t* codes
    cdef _BitSink s
    cdef size_t i, bound
    cdef uint32_t hi = _EOF, overflow = 1 << _FIRST_WIDTH
    cdef uint32_t code, key, h, byte

    out.size = 0
    if n > (<size_t>-1) // 4:
        return LZW_NO_MEMORY
    # At most one code per input byte, plus clears (one per 3837 codes), the first clear, the
    # pending code and EOF; every code at most 12 bits, and one byte of padding.
    bound = (n + n // 2048 + 8) * 3 // 2 + 8
    if not _reserve(out, bound, bound):
        return LZW_NO_MEMORY
    keys = <uint32_t*>malloc(_HASH_SLOTS * sizeof(uint32_t))
    codes = <uint16_t*>malloc(_HASH_SLOTS * sizeof(uint16_t))
    if keys == NULL or codes == NULL:
        free(keys)
        free(codes)
        return LZW_NO_MEMORY
    memset(keys, 0, _HASH_SLOTS * sizeof(uint32_t))

    s.p = out.data
    s.bits = 0
    s.nbits = 0
    s.width = _FIRST_WIDTH
    _put(&s, _CLEAR)
    if n:
        code = src[0]
        i = 1
        while i < n:
            byte = src[i]
            i += 1
            key = code << 8 | byte
            h = _slot(key)
            while keys[h] != 0 and keys[h] != key + 1:
                h = (h + 1) & (_HASH_SLOTS - 1)
            if keys[h] != 0:
                code = codes[h]  # the string extended by this byte is known: keep matching
                continue
            _put(&s, code)
            code = byte
            hi += 1
            if hi == overflow:
                s.width += 1
                overflow <<= 1
            if hi == _MAX_CODE:
                _put(&s, _CLEAR)
                s.width = _FIRST_WIDTH
                hi = _EOF
                overflow = 1 << _FIRST_WIDTH
                memset(keys, 0, _HASH_SLOTS * sizeof(uint32_t))
                continue
            keys[h] = key + 1
            codes[h] = <uint16_t>hi
        _put(&s, code)
        hi += 1
        if hi == overflow:
            s.width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            _put(&s, _CLEAR)
            s.width = _FIRST_WIDTH
    _put(&s, _EOF)
    if s.nbits:
        s.p[0] = <unsigned char>s.bits
        s.p += 1
    out.size = <size_t>(s.p - out.data)
    free(keys)
    free(codes)
    return LZW_OK


cdef object _raise(LzwStatus status, LzwBuffer* out, size_t n, object max_size):
    if status == LZW_TRUNCATED:
        raise ValueError(
            f"corrupt LZW data: the stream ends without an EOF code (truncated after {n} bytes)"
        )
    if status == LZW_INVALID_CODE:
        raise ValueError(
            f"corrupt LZW data: code {out.bad_code} is not in the code table (in input byte {out.bad_byte})"
        )
    if status == LZW_TOO_LARGE:
        raise ValueError(f"LZW data decompresses to more than max_size ({max_size} bytes)")
    raise MemoryError("LZW: out of memory")


def decompress(const unsigned char[::1] data not None, max_size=DEFAULT_MAX_SIZE):
    """Decode one Go ``lzw.LSB``/8 stream up to its EOF code.

    Raises ``ValueError`` if the stream holds a code the table does not define, ends before its EOF
    code, or would decode to more than ``max_size`` bytes.
    """
    cdef size_t n = data.shape[0]
    cdef const unsigned char* src = &data[0] if n else NULL
    cdef size_t limit
    cdef LzwBuffer out
    cdef LzwStatus status
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, not {max_size}")
    limit = min(max_size, sys.maxsize)
    memset(&out, 0, sizeof(out))
    try:
        if n >= _NOGIL_FROM:
            with nogil:
                status = lzw_decode(src, n, limit, &out)
        else:
            status = lzw_decode(src, n, limit, &out)
        if status != LZW_OK:
            _raise(status, &out, n, max_size)
        return PyBytes_FromStringAndSize(<char*>out.data, <Py_ssize_t>out.size)
    finally:
        lzw_buffer_free(&out)


def compress(const unsigned char[::1] data not None):
    """Encode ``data`` exactly as Go's ``lzw.NewWriter(w, lzw.LSB, 8)`` + one Write + Close does."""
    cdef size_t n = data.shape[0]
    cdef const unsigned char* src = &data[0] if n else NULL
    cdef LzwBuffer out
    cdef LzwStatus status
    memset(&out, 0, sizeof(out))
    try:
        if n >= _NOGIL_FROM:
            with nogil:
                status = lzw_encode(src, n, &out)
        else:
            status = lzw_encode(src, n, &out)
        if status != LZW_OK:
            _raise(status, &out, n, None)
        return PyBytes_FromStringAndSize(<char*>out.data, <Py_ssize_t>out.size)
    finally:
        lzw_buffer_free(&out)
