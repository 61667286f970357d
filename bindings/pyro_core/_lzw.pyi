# Type stub of the compiled pyro_core._lzw; same API as pyro_core._pure.lzw.

LITERAL_WIDTH: int
CLEAR: int
EOF: int
FIRST_WIDTH: int
MAX_WIDTH: int
MAX_CODE: int
DEFAULT_MAX_SIZE: int

def decompress(data: bytes, max_size: int = ...) -> bytes: ...
def compress(data: bytes) -> bytes: ...
