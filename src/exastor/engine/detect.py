"""What kind of data is this? File formats by their headers, float tensors by content statistics.

``file_type`` names a file (or object) for reports: safetensors, PyTorch checkpoints (zip with
``data.pkl``), NumPy .npy/.npz, JSON lines, text, and already-compressed formats.
``float_layout`` looks at a chunk's bytes alone (chunks are cut by content, so a chunk starts
anywhere inside an element) and says whether they look like little-endian floats, of which
width, and where the first whole element starts. It is a guess that decides what to *try*;
the codec keeps a transform only when it actually saves space.
"""

from __future__ import annotations

import json
import struct
import zipfile
from io import BytesIO

import numpy as np

SAMPLE = 16 << 10       # bytes examined per chunk: enough for stable byte statistics
LOW_GAP = 1.0           # bits: a sign/exponent column must be this much below the mantissa columns
MIN_FLOAT_BYTES = 4096


def file_type(head: bytes, name: str = "") -> str:
    """Coarse type from the first bytes (a few KiB) and the name."""
    lower = name.lower()
    if len(head) >= 10 and head[8:9] == b"{":
        n = struct.unpack("<Q", head[:8])[0]
        if 2 <= n <= 100 << 20:
            return _safetensors_dtype(head, n)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        if lower.endswith(".npz"):
            return "npz"
        if lower.endswith((".pt", ".pth", ".ckpt", ".bin")) or b"data.pkl" in head[:4096]:
            return "pytorch"
        return "zip"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")):
        return "image"
    if head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ")):
        return "compressed"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lower.endswith(".json"):
        return "json"
    try:
        head[:4096].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary"


def _safetensors_dtype(head: bytes, n: int) -> str:
    """'safetensors-<dtype>' when the header is in ``head`` and names one dtype, else 'safetensors'."""
    try:
        header = json.loads(head[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        return "safetensors"
    # a tensor entry without a string dtype (a malformed or hostile header) names no dtype
    dtypes = {v["dtype"] for k, v in header.items()
              if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("dtype"), str)}
    return f"safetensors-{dtypes.pop().lower()}" if len(dtypes) == 1 else "safetensors"


def is_pytorch_zip(data: bytes) -> bool:
    """True for a torch.save zip archive (has a data.pkl member)."""
    try:
        with zipfile.ZipFile(BytesIO(data)) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _column_entropy(sample: np.ndarray, period: int) -> np.ndarray:
    """Shannon entropy (bits) of the bytes at each position modulo ``period``."""
    n = (len(sample) // period) * period
    cols = sample[:n].reshape(-1, period)
    out = np.empty(period)
    for j in range(period):
        counts = np.bincount(cols[:, j], minlength=256)
        p = counts[counts > 0] / cols.shape[0]
        out[j] = float(-(p * np.log2(p)).sum())
    return out


def float_layout(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, phase) if ``data`` looks like little-endian floats (fp32: 4; fp16/bf16: 2), else None.

    The sign/exponent byte of each element (the last, little-endian) has far lower entropy than
    the mantissa bytes. fp32 shows one low column in four; fp16/bf16 two, two apart."""
    if len(data) < MIN_FLOAT_BYTES:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    start = max(0, (len(buf) - SAMPLE) // 2) & ~3  # the middle: away from headers
    sample = buf[start:start + SAMPLE]
    e = _column_entropy(sample, 4)
    order = np.argsort(e)
    low, second = int(order[0]), int(order[1])
    high = e[order[2:]].min()
    if (second - low) % 4 == 2 and e[second] + LOW_GAP <= high:
        return 2, (start + low + 1) % 2      # top byte at position low: the element starts one before
    if e[low] + LOW_GAP <= e[second]:
        return 4, (start + low + 1) % 4
    return None
