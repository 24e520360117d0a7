"""GF(2^8) matrix arithmetic for Reed-Solomon, with ISA-L's SIMD kernel doing the byte work.

The code itself (which generator matrix, hence which parity bytes are on disk) is zfec's and is
pinned by docs/format.md; engine/erasure.py reads that matrix out of zfec. What this module
changes is only *how fast* a matrix is applied to shards: ISA-L's ``ec_encode_data`` (AVX2 /
AVX-512 / GFNI, chosen by ISA-L at run time) multiplies any coefficient matrix by k input
buffers at several GB/s, where zfec's table loop manages ~0.4-1 GB/s here. ctypes releases the
GIL for the call, so coding on a pool thread never stalls a worker's event loop.

ISA-L is loaded from the ``libisal`` that the pyeclib wheel bundles (a pinned dependency), else
from the system (Debian ``libisal2``). Without either, ``available()`` is False and erasure.py
falls back to zfec for the byte work too; ``EXASTOR_GF_KERNEL=zfec`` forces that (tests compare
both).

Both libraries use the field GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11d); the small
matrix algebra below (products, inversion) is done here in Python with log/exp tables, on
matrices of at most 256x256 entries, cached by the caller.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

POLY = 0x11D

_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= POLY
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def inverse(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return _EXP[255 - _LOG[a]]


Matrix = list[list[int]]


def mat_mul(a: Matrix, b: Matrix) -> Matrix:
    """a (r x n) times b (n x c) over GF(2^8)."""
    cols = list(zip(*b, strict=True))
    out = []
    for row in a:
        out_row = []
        for col in cols:
            acc = 0
            for x, y in zip(row, col, strict=True):
                if x and y:
                    acc ^= _EXP[_LOG[x] + _LOG[y]]
            out_row.append(acc)
        out.append(out_row)
    return out


def mat_invert(a: Matrix) -> Matrix:
    """Inverse of a square matrix over GF(2^8) (Gauss-Jordan); ValueError if singular."""
    n = len(a)
    work = [list(row) + [int(i == j) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if work[r][col]), None)
        if pivot is None:
            raise ValueError("singular matrix")
        work[col], work[pivot] = work[pivot], work[col]
        inv = inverse(work[col][col])
        work[col] = [mul(v, inv) for v in work[col]]
        for r in range(n):
            factor = work[r][col]
            if r != col and factor:
                base = work[col]
                work[r] = [v ^ mul(factor, p) for v, p in zip(work[r], base, strict=True)]
    return [row[n:] for row in work]


def _find_library() -> str | None:
    spec = importlib.util.find_spec("pyeclib")
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parent
        found = sorted(glob.glob(str(site / "pyeclib.libs" / "libisal*.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("isal")


def _load() -> ctypes.CDLL | None:
    if os.environ.get("EXASTOR_GF_KERNEL", "isal") == "zfec":
        return None
    path = _find_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
        lib.ec_init_tables.restype = None
        lib.ec_encode_data.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                       ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        lib.ec_encode_data.restype = None
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load()


def available() -> bool:
    """True when ISA-L's kernel is loaded (else erasure.py codes with zfec alone)."""
    return _LIB is not None


def kernel_name() -> str:
    return "isa-l" if _LIB is not None else "zfec"


@lru_cache(maxsize=256)
def _tables(k: int, flat: bytes) -> bytes:
    """ISA-L's expanded multiplication tables for a (rows x k) coefficient matrix."""
    assert _LIB is not None, "ISA-L kernel not loaded"
    rows = len(flat) // k
    buf = ctypes.create_string_buffer(32 * k * rows)
    _LIB.ec_init_tables(k, rows, flat, buf)
    return buf.raw


def _address(buf: bytes | bytearray | memoryview, keep: list) -> int:
    arr = np.frombuffer(buf, dtype=np.uint8)  # no copy; works for read-only buffers too
    keep.append(arr)
    return arr.ctypes.data


def apply(matrix: Matrix, inputs: Sequence[bytes | bytearray | memoryview],
          out: Sequence[bytearray | memoryview] | None = None) -> Sequence[bytearray | memoryview]:
    """``matrix`` (rows x k) times the k equal-length ``inputs``: the rows output buffers (``out``,
    writable buffers of the same length, when given: written in place)."""
    assert _LIB is not None, "ISA-L kernel not loaded"
    k = len(inputs)
    length = len(inputs[0])
    assert all(len(b) == length for b in inputs), "shards must have equal lengths"
    assert all(len(row) == k for row in matrix), "matrix width must equal the number of inputs"
    outputs: Sequence[bytearray | memoryview] = [bytearray(length) for _ in matrix] if out is None else out
    assert len(outputs) == len(matrix) and all(len(b) == length for b in outputs), "outputs must match"
    if not matrix or length == 0:
        return outputs
    keep: list = []
    src = (ctypes.c_void_p * k)(*[_address(b, keep) for b in inputs])
    dst = (ctypes.c_void_p * len(matrix))(*[_address(b, keep) for b in outputs])
    tables = _tables(k, bytes(v for row in matrix for v in row))
    _LIB.ec_encode_data(length, k, len(matrix), tables, src, dst)
    return outputs
