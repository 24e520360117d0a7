"""Byte grouping, numeric deltas, float detection and codecs: hand-computed cases and round trips."""

from __future__ import annotations

import struct

import blake3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exastor import errors
from exastor.engine import codec, detect, transforms
from exastor.engine.record import CODEC_DELTA, CODEC_GROUPED, RecordHeader
from exastor.meta import manifest as mf


def test_group_by_hand() -> None:
    # two fp16-width elements after one head byte, one tail byte
    data = bytes([9, 0x11, 0x22, 0x33, 0x44, 7])
    streams = transforms.group(data, 2, 1)
    assert streams == [bytes([0x22, 0x44]), bytes([0x11, 0x33]), bytes([9, 7])]
    assert transforms.ungroup(streams, 2, 1, len(data)) == data


def test_group_fp32_exponent_stream_is_the_top_bytes() -> None:
    vals = np.array([1.0, -2.0, 0.5], dtype="<f4")
    streams = transforms.group(vals.tobytes(), 4, 0)
    assert streams[0] == bytes([0x3F, 0xC0, 0x3F])  # sign + 7 exponent bits
    assert streams[4] == b""


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([2, 4]), st.integers(0, 3))
def test_group_round_trip(data: bytes, width: int, phase: int) -> None:
    phase %= width
    assert transforms.ungroup(transforms.group(data, width, phase), width, phase, len(data)) == data


def test_xor_by_hand() -> None:
    assert transforms.xor(b"\x0f\xf0", b"\xff\x00") == b"\xf0\xf0"


def test_diff_by_hand() -> None:
    a = struct.pack("<I", 0x3F800005)
    b = struct.pack("<I", 0x3F800001)
    assert transforms.diff(a, b, 4, 0) == struct.pack("<I", 4)
    assert transforms.undiff(struct.pack("<I", 4), b, 4, 0) == a


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_diff_round_trip(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 200))
    a = data.draw(st.binary(min_size=n, max_size=n))
    b = data.draw(st.binary(min_size=n, max_size=n))
    width = data.draw(st.sampled_from([2, 4]))
    phase = data.draw(st.integers(0, width - 1))
    assert transforms.undiff(transforms.diff(a, b, width, phase), b, width, phase) == a


def _weights(dtype: str, n: int = 40000, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(dtype)


@pytest.mark.parametrize("dtype,width", [("<f4", 4), ("<f2", 2)])
@pytest.mark.parametrize("skip", [0, 1, 2, 3])
def test_float_layout_finds_width_and_phase(dtype: str, width: int, skip: int) -> None:
    raw = _weights(dtype).tobytes()[skip:]
    assert detect.float_layout(raw) == (width, (-skip) % width)


def test_float_layout_bf16() -> None:
    f32 = _weights("<f4")
    bf16 = (f32.view("<u4") >> 16).astype("<u2").tobytes()
    assert detect.float_layout(bf16[1:]) == (2, 1)


def test_float_layout_rejects_text_and_noise() -> None:
    text = (b"The quick brown fox jumps over the lazy dog. " * 400)
    assert detect.float_layout(text) is None
    noise = np.random.default_rng(2).integers(0, 256, 50000, dtype=np.uint8).tobytes()
    assert detect.float_layout(noise) is None


def test_file_types() -> None:
    header = b'{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}'
    st_head = struct.pack("<Q", len(header)) + header
    assert detect.file_type(st_head, "m.safetensors") == "safetensors-bf16"
    assert detect.file_type(b"\x93NUMPY\x01\x00", "x.npy") == "npy"
    assert detect.file_type(b"PK\x03\x04rest", "x.npz") == "npz"
    assert detect.file_type(b"PK\x03\x04rest", "ckpt.pt") == "pytorch"
    assert detect.file_type(b"\x89PNG\r\n", "a.png") == "image"
    assert detect.file_type(b'{"loss": 1}\n', "log.jsonl") == "jsonl"


def test_grouping_compresses_floats_better_than_zstd() -> None:
    raw = _weights("<f4", 30000).tobytes()
    grouped = codec.pack_streams(raw, 4, 0)
    plain = codec._compressor(codec.REDUCE_LEVEL).compress(raw)
    assert len(grouped) < len(plain)
    assert codec.decompress(CODEC_GROUPED, grouped, len(raw)) == raw


def _head(fp: bytes, codec_: int, raw_len: int, payload: bytes) -> RecordHeader:
    return RecordHeader(1, codec_, 0, raw_len, len(payload), fp, 0)


@pytest.mark.parametrize("mode", [codec.DELTA_XOR, codec.DELTA_DIFF, codec.DELTA_DICT])
def test_delta_round_trip_through_references(mode: int) -> None:
    ref = _weights("<f4", 20000, seed=3)
    new = ref + (np.random.default_rng(4).standard_normal(ref.size) * 1e-6).astype("<f4")
    raw = new.tobytes()[2:]              # a chunk starting mid-element
    reference = ref.tobytes()[2:]
    # the reference is two slices of two "chunks", one of them partial
    a, b = reference[:30000] + b"junk", b"pre" + reference[30000:]
    refs = [mf.Slice(b"A" * 32, 0, 30000), mf.Slice(b"B" * 32, 3, len(reference) - 30000)]
    layout = detect.float_layout(raw)
    assert layout == (4, 2)
    payload = codec.encode_delta(mode, raw, reference, refs, 0, layout)
    fp = blake3.blake3(raw).digest()

    def resolve(slices: list[mf.Slice]) -> list[bytes]:
        assert slices == refs
        chunk = {b"A" * 32: a, b"B" * 32: b}
        return [chunk[s.fp][s.start:s.start + s.length] for s in slices]

    assert codec.decode(_head(fp, CODEC_DELTA, len(raw), payload), payload, resolve) == raw
    if mode != codec.DELTA_DICT:
        assert len(payload) < 0.6 * len(codec.pack_streams(raw, *layout))  # the delta is what pays
    with pytest.raises(errors.DataCorrupted):
        codec.decode(_head(b"x" * 32, CODEC_DELTA, len(raw), payload), payload, resolve)
    with pytest.raises(errors.DataCorrupted):
        codec.decode(_head(fp, CODEC_DELTA, len(raw), payload), payload, None)


def test_padded_xor_reference() -> None:
    raw = bytes(range(200))
    reference = b"\0" * 10 + raw[10:150] + b"\0" * 50
    payload = codec.encode_delta(codec.DELTA_XOR, raw, reference, [mf.Slice(b"R" * 32, 0, 140)], 10, None)
    head = _head(blake3.blake3(raw).digest(), CODEC_DELTA, len(raw), payload)
    assert codec.decode(head, payload, lambda s: [raw[10:150]]) == raw
    assert codec.delta_refs(payload) == ([mf.Slice(b"R" * 32, 0, 140)], 10)
