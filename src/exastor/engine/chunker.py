"""Content-defined chunking over a stream, with the compiled FastCDC (pyfastcdc).

A FastCDC cut point depends only on the bytes since the previous cut, so a
stream can be chunked window by window: every chunk of a window but the last
is final, and the last one's bytes are carried into the next window. The
result is identical to chunking the whole object at once.
"""

from __future__ import annotations

from pyfastcdc import FastCDC

AVG_SIZE = 64 << 10
MIN_SIZE = 16 << 10
MAX_SIZE = 256 << 10


def new_chunker() -> FastCDC:
    return FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE)


def cut(cdc: FastCDC, buf: bytes | memoryview, final: bool) -> tuple[list[memoryview], bytes]:
    """Split ``buf`` into chunks. Returns (final chunks, carried tail bytes)."""
    view = memoryview(buf)
    bounds = [(c.offset, c.length) for c in cdc.cut_buf(view)]
    if not bounds:
        return [], b""
    if not final:
        last_off, _ = bounds.pop()
        tail = bytes(view[last_off:])
    else:
        tail = b""
    return [view[o:o + n] for o, n in bounds], tail
