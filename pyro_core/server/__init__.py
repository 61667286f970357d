# The thin server (issue 4): Pyroscope-compatible ingest and query over the ring. This package holds
# its sans-I/O parts (body parsers, profile decoding, stack trees, flamebearer, FlameQL); the HTTP
# shell comes on top.
