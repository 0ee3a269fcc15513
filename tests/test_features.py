"""Feature codecs: lossless round trips of any float16 bit pattern, the quantised codec's error
bound, and refusal of unknown codecs and corrupt bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kmidi_ingest import features
from kmidi_ingest.errors import StoreError

SPECIALS = np.array(
    [0x7E00, 0xFE00, 0x7C01, 0x7FFF, 0x7C00, 0xFC00, 0x8000, 0x0000, 0x0001, 0x8001, 0x7BFF],
    dtype=np.uint16,
)  # NaNs (quiet, negative, signalling payloads), ±inf, ±0.0, ±smallest subnormal, max finite


@st.composite
def float16_bit_matrices(draw: st.DrawFn) -> np.ndarray:
    """(bands, frames) float16 matrices of arbitrary bit patterns, often seeded with specials."""
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40))
    bits = draw(hnp.arrays(np.uint16, shape))
    if bits.size and draw(st.booleans()):
        idx = draw(st.lists(st.integers(0, bits.size - 1), max_size=bits.size))
        bits.flat[idx] = SPECIALS[np.arange(len(idx)) % len(SPECIALS)]
    return bits.view(np.float16)


@settings(max_examples=200, deadline=None)
@given(values=float16_bit_matrices(), chunk_bytes=st.integers(1, 4096))
def test_lossless_codecs_round_trip_every_bit_pattern(values, chunk_bytes):
    for codec in (None, features.LOSSLESS):
        chunks, digest = features.encode(values, codec=codec, chunk_bytes=chunk_bytes)
        assert chunks and all(0 < len(c) <= chunk_bytes for c in chunks if len(chunks) > 1)
        back = features.decode(chunks, codec=codec, sha256=digest)
        assert back.dtype == np.float16 and back.shape == values.shape
        assert np.array_equal(back.view(np.uint16), values.view(np.uint16)), codec


@settings(max_examples=200, deadline=None)
@given(values=float16_bit_matrices())
def test_quantised_codec_moves_values_by_at_most_half_a_step(values):
    chunks, digest = features.encode(values, codec=features.QUANTISED)
    back = features.decode(chunks, codec=features.QUANTISED, sha256=digest)
    assert back.dtype == np.float16 and back.shape == values.shape
    wide, got = values.astype(np.float64), back.astype(np.float64)
    finite = np.isfinite(wide)
    assert np.array_equal(np.isnan(got), np.isnan(wide))
    assert np.array_equal(got[np.isinf(wide)], wide[np.isinf(wide)])
    assert np.all(np.abs(got[finite] - wide[finite]) <= features.QUANTISED_STEP_DB / 2)
    assert np.all(np.mod(got[finite], features.QUANTISED_STEP_DB) == 0)
    assert np.array_equal(np.signbit(got), np.signbit(wide))  # -0.0 and tiny negatives keep '-'
    big = finite & (np.abs(wide) >= 64)  # float16 is already on the 1/16 dB grid there
    assert np.array_equal(back.view(np.uint16)[big], values.view(np.uint16)[big])
    again, _ = features.encode(back, codec=features.QUANTISED)  # idempotent
    assert b"".join(again) == b"".join(chunks)


def test_quantisation_rounds_to_the_nearest_sixteenth_of_a_db_ties_to_even():
    values = np.array([-0.03125, 0.03125, 0.09375, -17.95, -63.97, -64.0625, -99.94], np.float16)
    expected = np.array([-0.0, 0.0, 0.125, -17.9375, -64.0, -64.0625, -99.9375], np.float16)
    got = features.quantise_db(values)
    assert np.array_equal(got.view(np.uint16), expected.view(np.uint16))
    wide = features.quantise_db(values.astype(np.float32))
    assert wide.dtype == np.float32 and np.array_equal(wide, expected.astype(np.float32))
    huge = np.array([1e308, -3.3e300, 0.1], np.float64)
    assert np.array_equal(features.quantise_db(huge), [1e308, -3.3e300, 0.125])
    with pytest.raises(ValueError, match="power of two"):
        features.quantise_db(values, step_db=0.1)


def test_log_mel_compresses_and_the_stored_codec_decodes_it():
    rng = np.random.default_rng(7)
    # A log-mel-like matrix: smooth spectral envelope + frame-to-frame variation, dB.
    envelope = np.linspace(-20.0, -70.0, 128)[:, None]
    values = (envelope + 6 * rng.standard_normal((128, 2000))).astype(np.float16)
    raw = sum(len(c) for c in features.encode(values, codec=None)[0])
    lossless = sum(len(c) for c in features.encode(values, codec=features.LOSSLESS)[0])
    quantised = sum(len(c) for c in features.encode(values, codec=features.QUANTISED)[0])
    assert raw == values.nbytes + 128  # .npy header
    assert quantised < lossless < 0.9 * raw


def test_unknown_codec_and_corrupt_bytes_are_store_errors():
    values = np.zeros((4, 4), np.float16)
    with pytest.raises(StoreError, match="unknown feature codec 'lzma'"):
        features.encode(values, codec="lzma")
    chunks, digest = features.encode(values, codec=features.LOSSLESS)
    with pytest.raises(StoreError, match="unknown feature codec 'zstd'"):
        features.decode(chunks, codec="zstd", sha256=digest)
    with pytest.raises(StoreError, match="do not decompress"):
        features.decode([chunks[0][:-3]], codec=features.LOSSLESS, sha256=digest)
    with pytest.raises(StoreError, match="sha256"):  # raw bytes read as if compressed, or v.v.
        features.decode(chunks, codec=None, sha256=digest)
