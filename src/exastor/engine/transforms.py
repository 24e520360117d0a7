"""Reversible byte transforms for float tensor data (numpy-vectorised; no per-byte Python loops).

Float weights barely compress as they are (zstd on fp32: ~1.08) because every element
interleaves a low-entropy sign/exponent byte with near-random mantissa bytes. *Byte grouping*
(ZipNN's observation) stores byte ``j`` of every element together, so the exponent bytes form
one stream that compresses well and the mantissa bytes another that at least does no harm.

A *numeric delta* against an aligned reference (the same tensor in the previous checkpoint)
removes what the two share: XOR zeroes every identical sign/exponent/high-mantissa bit, and a
difference of the bit patterns (as unsigned integers) keeps small changes small. Either one,
then byte grouping, then zstd beats a dictionary delta by far on successive checkpoints.

``phase`` is the byte offset of the first whole element in the buffer: chunks are cut by
content, not at element boundaries, so up to ``width - 1`` leading bytes (and a trailing
remainder) belong to elements cut in half and are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WIDTHS = (2, 4)  # bytes per element: fp16/bf16, fp32

_UINT = {2: np.uint16, 4: np.uint32}


def _layout(n: int, width: int, phase: int) -> tuple[int, int]:
    """(head, count): bytes before the first whole element, number of whole elements."""
    head = min(phase, n)
    return head, (n - head) // width


def group(data: bytes | memoryview, width: int, phase: int = 0) -> list[bytes]:
    """Split into ``width + 1`` streams: byte j of every whole element for j = width-1..0
    (most significant first: sign/exponent), then the head and tail bytes."""
    if width not in WIDTHS or not 0 <= phase < width:
        raise ValueError(f"bad grouping width={width} phase={phase}")
    buf = np.frombuffer(data, dtype=np.uint8)
    head, count = _layout(len(buf), width, phase)
    body = buf[head:head + count * width].reshape(count, width)
    streams = [body[:, j].tobytes() for j in range(width - 1, -1, -1)]
    streams.append(buf[:head].tobytes() + buf[head + count * width:].tobytes())
    return streams


def ungroup(streams: Sequence[bytes | memoryview], width: int, phase: int, length: int) -> bytes:
    """Inverse of ``group`` for a buffer of ``length`` bytes."""
    head, count = _layout(length, width, phase)
    if len(streams) != width + 1 or any(len(s) != count for s in streams[:width]):
        raise ValueError("grouped streams do not match the layout")
    edge = np.frombuffer(streams[width], dtype=np.uint8)
    if len(edge) != length - count * width:
        raise ValueError("grouped edge bytes do not match the layout")
    out = np.empty(length, dtype=np.uint8)
    out[:head] = edge[:head]
    body = out[head:head + count * width].reshape(count, width)
    for j in range(width):
        body[:, width - 1 - j] = np.frombuffer(streams[j], dtype=np.uint8)
    out[head + count * width:] = edge[head:]
    return out.tobytes()


def xor(data: bytes | memoryview, reference: bytes | memoryview) -> bytes:
    """Bytewise XOR of two equally long buffers (its own inverse)."""
    a = np.frombuffer(data, dtype=np.uint8)
    b = np.frombuffer(reference, dtype=np.uint8)
    if len(a) != len(b):
        raise ValueError("xor operands differ in length")
    return np.bitwise_xor(a, b).tobytes()


def _elements(data: bytes | memoryview, width: int, phase: int) -> tuple[np.ndarray, int, int]:
    buf = np.frombuffer(data, dtype=np.uint8)
    head, count = _layout(len(buf), width, phase)
    return buf, head, count


def diff(data: bytes | memoryview, reference: bytes | memoryview, width: int, phase: int) -> bytes:
    """Element-wise difference of bit patterns (unsigned, wrapping) on whole elements; XOR on the edges."""
    a, head, count = _elements(data, width, phase)
    b = np.frombuffer(reference, dtype=np.uint8)
    if len(a) != len(b):
        raise ValueError("diff operands differ in length")
    out = np.bitwise_xor(a, b)
    end = head + count * width
    ua = a[head:end].view(np.dtype(_UINT[width]).newbyteorder("<"))
    ub = b[head:end].view(np.dtype(_UINT[width]).newbyteorder("<"))
    out[head:end] = (ua - ub).view(np.uint8)
    return out.tobytes()


def undiff(delta: bytes | memoryview, reference: bytes | memoryview, width: int, phase: int) -> bytes:
    """Inverse of ``diff``."""
    d, head, count = _elements(delta, width, phase)
    b = np.frombuffer(reference, dtype=np.uint8)
    if len(d) != len(b):
        raise ValueError("diff operands differ in length")
    out = np.bitwise_xor(d, b)
    end = head + count * width
    dt = np.dtype(_UINT[width]).newbyteorder("<")
    out[head:end] = (d[head:end].view(dt) + b[head:end].view(dt)).view(np.uint8)
    return out.tobytes()
