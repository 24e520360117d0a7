"""Super-feature sketches: similar chunks share super-features, unrelated ones don't, and the
anchor positions align shifted content."""

from __future__ import annotations

import numpy as np

from exastor.engine import detect, sketch


def _text(seed: int, n: int = 60000) -> bytes:
    """Letters and spaces with no long repeats (a repeated window would anchor anywhere)."""
    return np.random.default_rng(seed).integers(96, 123, n, dtype=np.uint8).tobytes()


def test_identical_and_unrelated() -> None:
    a, b = _text(1), _text(2)
    sa, sb = sketch.sketch(a), sketch.sketch(b)
    assert sa == sketch.sketch(a)
    assert not set(sa.supers) & set(sb.supers)


def test_small_edits_keep_most_super_features() -> None:
    a = bytearray(_text(3))
    b = bytearray(a)
    for pos in (1000, 20000, 45000):
        b[pos:pos + 4] = b"XXXX"
    shared = sum(x == y for x, y in zip(sketch.sketch(bytes(a)).supers, sketch.sketch(bytes(b)).supers, strict=True))
    assert shared >= 2


def test_positions_align_shifted_content() -> None:
    base = _text(4, 80000)
    a, b = base[:60000], base[7000:67000]  # b is a shifted by 7000 bytes
    sa, sb = sketch.sketch(a), sketch.sketch(b)
    shifts = {pa - pb for fa, fb, pa, pb in zip(sa.supers, sb.supers, sa.positions, sb.positions, strict=True)
              if fa == fb}
    assert shifts == {7000}


def test_float_sketch_survives_fine_tuning_noise() -> None:
    rng = np.random.default_rng(5)
    w = (rng.standard_normal(20000) * 0.05).astype("<f4")
    w2 = w + (rng.standard_normal(w.size) * 1e-6).astype("<f4")  # every mantissa moves
    a, b = w.tobytes()[1:], w2.tobytes()[1:]
    assert a != b
    la, lb = detect.float_layout(a), detect.float_layout(b)
    assert la == lb == (4, 3)
    sa, sb = sketch.sketch(a, la), sketch.sketch(b, lb)
    assert sum(x == y for x, y in zip(sa.supers, sb.supers, strict=True)) >= 2
    assert all(p % 4 == 3 for p in sa.positions)  # anchors sit on the exponent bytes' elements


def test_too_short() -> None:
    assert sketch.sketch(b"abc") is None
