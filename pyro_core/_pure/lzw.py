# Pure-Python twin of pyro_core._lzw: memberlist's payload compression.
# Owns: the LZW stream format of Go's compress/lzw as memberlist configures it (lzw.LSB, literal
# width 8): codes packed least-significant bit first; 0-255 literals, 256 clear, 257 EOF, table
# codes from 258; code width 9 bits, growing to 12. ``compress`` reproduces Go's writer byte for
# byte; ``decompress`` accepts exactly what Go's reader accepts and fails where it fails.
# Knows nothing of memberlist's compress message ({Algo, Buf}) or of sockets: bytes in, bytes out.
#
# The stream rules (read from Go 1.19's reader.go/writer.go; the same code is used by both sides):
# - ``hi`` is the code the next table entry will get. Every code except clear/EOF defines entry
#   ``hi`` as "the previous code's bytes + the first byte of this code's bytes" (none for the first
#   code after a clear), then ``hi`` goes up by one; when ``hi`` reaches ``1 << width`` the width
#   grows by one bit, so the code *after* the one that filled the width is read wider.
# - The writer never lets ``hi`` reach 4095: it then emits a clear (at 12 bits) and starts over.
#   The reader also accepts a full table: at 12 bits with ``hi`` at 4096 it stops adding entries and
#   keeps decoding codes 258-4095 until a clear.
# - A code equal to ``hi`` (not yet in the table) means "previous bytes + their own first byte".
# - The writer begins with a clear, ends with the pending code, then EOF at the width then in force,
#   and pads the last partial byte with zero bits. The reader stops at EOF and ignores what follows;
#   a stream that ends before EOF is an error (Go: io.ErrUnexpectedEOF), as is a code above ``hi``.
from __future__ import annotations

LITERAL_WIDTH = 8
CLEAR = 1 << LITERAL_WIDTH  # 256
EOF = CLEAR + 1  # 257
FIRST_WIDTH = LITERAL_WIDTH + 1  # 9 bits
MAX_WIDTH = 12
MAX_CODE = (1 << MAX_WIDTH) - 1  # 4095: the writer clears rather than assign it
DEFAULT_MAX_SIZE = 20 * 2**20

_LITERALS = [bytes((i,)) for i in range(CLEAR)]


def _as_bytes(data: bytes) -> bytes:
    """``data`` itself, or a copy of any other bytes-like object (TypeError for anything else)."""
    return data if type(data) is bytes else memoryview(data).tobytes()


def decompress(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Decode one Go ``lzw.LSB``/8 stream up to its EOF code.

    Raises ``ValueError`` if the stream holds a code the table does not define, ends before its EOF
    code, or would decode to more than ``max_size`` bytes.
    """
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, not {max_size}")
    data = _as_bytes(data)
    n = len(data)
    out = bytearray()
    # Code table: index = code. Entries 256/257 (clear, EOF) are placeholders so that the entry
    # appended next gets code 258; a clear truncates the table back to this.
    table: list[bytes] = [*_LITERALS, b"", b""]
    width, hi, overflow = FIRST_WIDTH, EOF, 1 << FIRST_WIDTH
    last: bytes | None = None  # the previous code's bytes; None after a clear or with a full table
    bits = nbits = pos = 0
    while True:
        # Next code: `width` bits, least significant first.
        while nbits < width:
            if pos >= n:
                raise ValueError(
                    f"corrupt LZW data: the stream ends without an EOF code (truncated after {n} bytes)"
                )
            bits |= data[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width

        if code == CLEAR:
            del table[EOF + 1 :]
            width, hi, overflow = FIRST_WIDTH, EOF, 1 << FIRST_WIDTH
            last = None
            continue
        if code == EOF:
            return bytes(out)
        if code < len(table):
            entry = table[code]
        elif code == hi and last is not None:
            entry = last + last[:1]  # the code being defined by this very step
        else:
            raise ValueError(
                f"corrupt LZW data: code {code} is not in the code table (in input byte {pos - 1})"
            )
        if len(out) + len(entry) > max_size:
            raise ValueError(f"LZW data decompresses to more than max_size ({max_size} bytes)")
        out += entry
        if last is not None:
            table.append(last + entry[:1])  # becomes code `hi`
        last = entry
        hi += 1
        if hi >= overflow:
            if width == MAX_WIDTH:
                last = None  # the table is full: no more entries until a clear
                hi -= 1
            else:
                width += 1
                overflow <<= 1


def compress(data: bytes) -> bytes:
    """Encode ``data`` exactly as Go's ``lzw.NewWriter(w, lzw.LSB, 8)`` + one Write + Close does."""
    data = _as_bytes(data)
    out = bytearray()
    bits = nbits = 0
    width = FIRST_WIDTH

    def emit(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    # (prefix code << 8 | next byte) -> the code of that string: the strings seen so far.
    table: dict[int, int] = {}
    hi, overflow = EOF, 1 << FIRST_WIDTH

    def next_code() -> bool:
        """Move ``hi`` on after a code went out; on reaching 4095 emit a clear, reset, return False."""
        nonlocal hi, overflow, width
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == MAX_CODE:
            emit(CLEAR)
            table.clear()
            width, hi, overflow = FIRST_WIDTH, EOF, 1 << FIRST_WIDTH
            return False
        return True

    emit(CLEAR)
    if data:
        code = data[0]  # the longest string matched so far, as its code
        for byte in data[1:]:
            key = code << 8 | byte
            longer = table.get(key)
            if longer is not None:
                code = longer
                continue
            emit(code)
            code = byte
            if next_code():
                table[key] = hi
        emit(code)
        next_code()
    emit(EOF)
    if nbits:
        out.append(bits & 0xFF)
    return bytes(out)
