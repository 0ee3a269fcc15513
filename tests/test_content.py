"""Content evidence on synthesized harmonic tones: the right bands, the right lag, a real null."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kmidi_ingest import content, discover
from kmidi_ingest.audio import FeatureData, MelParams, StemData, process_group
from kmidi_ingest.midi import NOTE_DTYPE
from tests.synth import write_stem

SR = 16000


def notes_of(starts_pitches: list[tuple[float, int]], *, length_s: float = 0.3) -> np.ndarray:
    notes = np.zeros(len(starts_pitches), dtype=NOTE_DTYPE)
    for row, (start, pitch) in zip(notes, starts_pitches, strict=True):
        row["start_s"], row["end_s"], row["pitch"], row["velocity"] = (
            start,
            start + length_s,
            pitch,
            100,
        )
    return notes


def melody(seed: int, *, seconds: float = 12.0) -> list[tuple[float, int]]:
    rng = np.random.default_rng(seed)
    out, now = [], 0.2
    while now < seconds - 0.5:
        out.append((round(now, 3), int(rng.integers(48, 84))))
        now += float(rng.uniform(0.2, 0.6))
    return out


def harmonic_render(
    notes: list[tuple[float, int]], *, seconds: float = 12.0, offset_s: float = 0.0, octave: int = 0
) -> np.ndarray:
    """Tones with six harmonics (amplitude 1/h), 0.3 s with a decay, at the note starts."""
    out = np.zeros(int(seconds * SR))
    t = np.arange(int(0.3 * SR)) / SR
    envelope = np.exp(-t / 0.12) * np.minimum(1.0, (t[-1] - t) / 0.05)
    for start, pitch in notes:
        f0 = 440.0 * 2 ** ((pitch + 12 * octave - 69) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 7) if f0 * h < SR / 2)
        i = int(round((start + offset_s) * SR))
        if 0 <= i < len(out):
            out[i : i + len(t)] += (0.2 * tone * envelope)[: len(out) - i]
    return out


def stem(path, samples) -> StemData:
    (group,) = discover.group_channels([(write_stem(path, samples), path.name)])
    return process_group(group, sample_rate_hz=SR, params=MelParams())


def test_a_notes_harmonics_light_the_bands_the_template_names(tmp_path):
    pitch = 57  # A3, 220 Hz
    data = stem(tmp_path / "a3.wav", harmonic_render([(0.5, pitch)], seconds=2.0))
    frame = int(0.6 * SR / 512)
    spectrum = np.asarray(data.feature.values[:, frame], dtype=np.float64)
    templates = content.harmonic_templates(
        sample_rate_hz=SR, n_mels=128, fmin_hz=0.0, fmax_hz=SR / 2
    )
    lit = templates[pitch] > 0.5 * templates[pitch].max()
    # the bands the template lights are the loud ones in the rendered note, not the ones between
    assert spectrum[lit].mean() > spectrum[~lit].mean() + 20
    assert np.argmax(spectrum) in np.flatnonzero(templates[pitch] > 0)
    # and a semitone away, the template lights other bands
    assert not np.array_equal(lit, templates[pitch + 1] > 0.5 * templates[pitch + 1].max())


@pytest.fixture(scope="module")
def cue(tmp_path_factory):
    root = tmp_path_factory.mktemp("content")
    lead, other = melody(1), melody(2)
    stems = [
        stem(root / "lead.wav", harmonic_render(lead)),
        stem(root / "other.wav", harmonic_render(other)),
        stem(root / "late.wav", harmonic_render(lead, offset_s=0.3)),
        stem(root / "shifted.wav", harmonic_render(lead, offset_s=2.5)),
        stem(root / "octave.wav", harmonic_render(lead, octave=-1)),
        stem(root / "silent.wav", np.zeros(12 * SR)),
    ]
    tracks = [
        content.TrackNotes(notes=notes_of(lead)),
        content.TrackNotes(notes=notes_of(lead[:3])),  # too few notes
    ]
    return content.content_evidence(tracks, [s.feature for s in stems])


def test_the_stem_holding_the_notes_scores_far_above_chance(cue):
    z = cue.z[0]
    assert z[0] > 8 and z[0] > z[1] + 5
    assert abs(cue.lag_s[0, 0]) < 0.05
    assert cue.notes_in_audio[0, 0] == len(melody(1))


def test_a_constant_offset_is_found_and_a_shifted_copy_scores_lower(cue):
    assert cue.lag_s[0, 2] == pytest.approx(0.3, abs=0.05)
    assert cue.z[0, 2] > 6
    # shifted by more than the lags searched: the notes are out of place, like the null's copies
    assert cue.z[0, 3] < cue.z[0, 0] - 5 and cue.z[0, 3] < 3.5


def test_an_octave_error_is_tolerated(cue):
    assert cue.z[0, 4] > 6


def test_too_little_evidence_gives_a_reason_not_a_number(cue):
    assert np.isnan(cue.z[0, 5]) and "silent" in str(cue.reason[0][5])
    assert np.isnan(cue.z[1, 0]) and "3 distinct note start(s)" in str(cue.reason[1][0])


def test_short_audio_has_no_null_distribution(tmp_path):
    short = stem(tmp_path / "short.wav", harmonic_render(melody(1), seconds=2.5))
    got = content.content_evidence([content.TrackNotes(notes=notes_of(melody(1)))], [short.feature])
    assert np.isnan(got.z[0, 0]) and "too short for a null" in str(got.reason[0][0])


def test_the_joint_fit_credits_each_stem_to_the_track_it_holds(tmp_path):
    """Two parts of one song (same beats) printed to two stems: each stem goes to its own part."""
    rng = np.random.default_rng(3)
    beats = np.arange(0.25, 11.5, 0.5)
    high = [(float(b), int(rng.integers(72, 84))) for b in beats]
    low = [(float(b), int(rng.integers(40, 52))) for b in beats]
    stems = [
        stem(tmp_path / "hi.wav", harmonic_render(high)),
        stem(tmp_path / "lo.wav", harmonic_render(low)),
    ]
    got = content.content_evidence(
        [content.TrackNotes(notes=notes_of(high)), content.TrackNotes(notes=notes_of(low))],
        [s.feature for s in stems],
    )
    assert got.unique[0, 0] > 3 * got.unique[0, 1]
    assert got.unique[1, 1] > 3 * got.unique[1, 0]


def test_drum_notes_use_the_kit_regions():
    drums = content.drum_templates(sample_rate_hz=SR, n_mels=128, fmin_hz=0.0, fmax_hz=SR / 2)
    kick, hat = np.flatnonzero(drums[36]), np.flatnonzero(drums[42])
    assert kick.max() < hat.min()  # the kick lights low bands, the hats high ones


# --- the computational kernel against a direct computation ---------------------------------

KERNEL_SR, KERNEL_HOP, KERNEL_MELS = 16000, 640, 64  # 25 frames/s: the curves' grid, pool 1


def feature_of(values: np.ndarray) -> FeatureData:
    return FeatureData(
        kind="logmel",
        sample_rate_hz=KERNEL_SR,
        n_fft=2048,
        hop_length=KERNEL_HOP,
        n_mels=KERNEL_MELS,
        fmin_hz=0.0,
        fmax_hz=KERNEL_SR / 2,
        db_ref=1.0,
        db_amin=1e-10,
        centered=True,
        values=values.astype(np.float16),
    )


def random_notes(rng: np.random.Generator, *, seconds: float, pitches: range) -> np.ndarray:
    starts = np.sort(rng.uniform(0.1, seconds - 0.5, 40))
    return notes_of([(float(s), int(rng.choice(pitches))) for s in starts], length_s=0.25)


def dense_roll(notes: np.ndarray, n: int, rate_hz: float, *, held: bool) -> np.ndarray:
    """The (128, n) piano roll written out note by note (the reference for the kernel)."""
    out = np.zeros((128, n))
    for note in notes:
        start = int(np.floor(note["start_s"] * rate_hz))
        if not 0 <= start < n:
            continue
        if held:
            end_s = note["start_s"] + min(note["end_s"] - note["start_s"], content.MAX_NOTE_S)
            stop = min(n, max(start + 1, int(np.ceil(end_s * rate_hz))))
            out[note["pitch"], start:stop] = 1.0
        else:
            out[note["pitch"], start] += note["velocity"] / 127.0
    return out


def circular_products(prediction: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``Σ_{b,t} prediction[b, t] · observed[b, (t + lag) mod n]``, lag by lag."""
    lags = range(observed.shape[1])
    return np.array([np.sum(prediction * np.roll(observed, -lag, axis=1)) for lag in lags])


@pytest.fixture(scope="module")
def kernel_case():
    rng = np.random.default_rng(15)
    n_frames = 251  # prime: the FFTs' slowest case
    values = rng.uniform(-70.0, -10.0, (KERNEL_MELS, n_frames))
    feature = feature_of(values)
    grid = content._grid(feature)
    assert (grid.pool, grid.n_frames) == (1, n_frames)
    notes = random_notes(rng, seconds=n_frames / grid.rate_hz, pitches=range(48, 72))
    return feature, grid, notes


def test_the_lag_products_equal_the_direct_correlation_on_the_circle(kernel_case):
    feature, grid, notes = kernel_case
    track = content._track(content.TrackNotes(notes=notes), grid)
    assert not isinstance(track, int)
    pooled, rise = content._observations(feature, grid)
    stem = content._stem(
        pooled, rise.copy(), None, grid, pitched_rows=np.arange(128), drum_rows=np.zeros(0, int)
    )
    assert isinstance(stem, content._Stem)
    content._need_rows(stem, "band_onset", np.arange(128))
    templates = content.harmonic_templates(**grid.template_key)
    # the reference observations, from the stored values directly
    stored = feature.values.astype(np.float64)
    db = np.maximum(stored, stored.max() - content.DYNAMIC_RANGE_DB)
    spectral = db - db.mean(axis=1, keepdims=True)
    spectral -= spectral.mean(axis=0, keepdims=True)
    spectral /= spectral.std()
    band = np.maximum(np.diff(db, axis=1, prepend=db[:, :1]), 0.0)
    band = (band - band.mean()) / band.std()
    for name, roll, observed, held in (
        ("spectral", track.held, spectral, True),
        ("band_onset", track.onsets, band, False),
    ):
        dense = dense_roll(notes, grid.n_frames, grid.rate_hz, held=held)
        for shift in content.OCTAVE_SHIFTS:
            prediction = np.zeros((KERNEL_MELS, grid.n_frames))
            for pitch in np.flatnonzero(dense.any(axis=1)):
                if 0 <= pitch + shift < 128:
                    prediction += np.outer(templates[pitch + shift], dense[pitch])
            want = circular_products(prediction, observed)
            got = content._lag_products(roll, track.pitches, stem.pitch[name], shift, grid.n_frames)
            assert got is not None
            np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())


def test_fast_pooling_and_sparse_rows_equal_the_plain_computation():
    rng = np.random.default_rng(4)
    values = rng.uniform(-90.0, 0.0, (KERNEL_MELS, 4 * 60 + 3))
    feature = dataclasses.replace(feature_of(values), hop_length=KERNEL_HOP // 4)
    grid = content._grid(feature)
    assert grid.pool == 4
    pooled, _ = content._observations(feature, grid)
    stored = feature.values.astype(np.float32)
    frames = stored[:, : 4 * 60].reshape(KERNEL_MELS, 60, 4)
    want = (((frames[:, :, 0] + frames[:, :, 1]) + frames[:, :, 2]) + frames[:, :, 3]) / 4
    np.testing.assert_array_equal(pooled, np.maximum(want, stored.max() - 80.0))
    for peak_case in (values, values - 200.0, -values, np.array([[-0.0, -3.5], [-1e-4, -2.0]])):
        half = np.asarray(peak_case, dtype=np.float16)
        assert content._peak(half) == float(half.astype(np.float32).max())
    dense = np.where(rng.random((20, 50)) < 0.1, rng.random((20, 50)), 0.0).astype(np.float32)
    from scipy.sparse import csr_matrix

    assert (content._csr(dense) != csr_matrix(dense)).nnz == 0


def test_the_evidence_values_are_pinned():
    """A fixed case: two parts, each printed to its own stem, and a stem of noise. The values
    pin the whole computation (a faster kernel must give the same evidence)."""
    rng = np.random.default_rng(7)
    n_frames = 301
    seconds = n_frames * KERNEL_HOP / KERNEL_SR
    parts = [
        random_notes(rng, seconds=seconds, pitches=range(60, 80)),
        random_notes(rng, seconds=seconds, pitches=range(36, 52)),
    ]
    templates = content.harmonic_templates(
        sample_rate_hz=KERNEL_SR, n_mels=KERNEL_MELS, fmin_hz=0.0, fmax_hz=KERNEL_SR / 2
    )
    stems = []
    for lag_frames, notes in zip((0, 5), parts, strict=True):
        held = np.roll(dense_roll(notes, n_frames, 25.0, held=True), lag_frames, axis=1)
        stems.append(
            -70.0 + 40.0 * templates.T @ held + rng.normal(0, 3.0, (KERNEL_MELS, n_frames))
        )
    stems.append(-50.0 + rng.normal(0, 3.0, (KERNEL_MELS, n_frames)))
    got = content.content_evidence(
        [content.TrackNotes(notes=n) for n in parts], [feature_of(v) for v in stems]
    )
    assert got.lag_s[0, 0] == pytest.approx(0.0) and got.lag_s[1, 1] == pytest.approx(0.2)
    np.testing.assert_allclose(got.z, PINNED_Z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.score, PINNED_SCORE, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.unique, PINNED_UNIQUE, rtol=1e-4, atol=1e-6)


# computed by the code before the cost work (main at da333a7); the faster kernel agrees to 1e-5
PINNED_Z = np.array([[38.192413, 2.471313, 1.193129], [2.545008, 16.416619, 2.512062]])
PINNED_SCORE = np.array([[0.74352, 0.018879, 0.033085], [0.029748, 0.625735, 0.035717]])
PINNED_UNIQUE = np.array([[0.3713729, 0.0, 0.0], [0.0, 0.3101709, 5.145155e-05]])


@pytest.mark.parametrize(
    ("sample_rate_hz", "hop", "push"),
    [(16000, 512, 7919), (48000, 512, 1 << 17), (48000, 128, 4099)],
)
def test_the_curve_pooled_while_streaming_is_the_one_pooled_from_the_stored_values(
    sample_rate_hz, hop, push
):
    """Pools of 1, 4 and 15 frames (the last through numpy's mean), pushed in odd blocks: the
    streamed curve, its peak and so every evidence value equal those from the stored values."""
    from kmidi_ingest.mel import MelStream, curve_pool

    rng = np.random.default_rng(3)
    samples = (0.1 * rng.standard_normal(int(2.3 * sample_rate_hz))).astype(np.float32)
    samples[: sample_rate_hz // 3] *= 0.01  # quiet, then loud: the peak is not in the first block
    params = MelParams(hop_length=hop)
    stream = MelStream(sample_rate_hz, params, curve_pool=curve_pool(sample_rate_hz, hop))
    for start in range(0, len(samples), push):
        stream.push(samples[start : start + push])
    values = stream.finish()
    assert stream.curve is not None
    assert (
        stream.curve.pool
        == {(16000, 512): 1, (48000, 512): 4, (48000, 128): 15}[(sample_rate_hz, hop)]
    )
    feature = FeatureData(
        kind="log_mel",
        sample_rate_hz=sample_rate_hz,
        n_fft=params.n_fft,
        hop_length=hop,
        n_mels=params.n_mels,
        fmin_hz=0.0,
        fmax_hz=sample_rate_hz / 2,
        db_ref=1.0,
        db_amin=1e-10,
        centered=True,
        values=values,
    )
    grid = content._grid(feature)
    assert stream.curve.peak_db == float(values.astype(np.float32).max())
    from_values = content._observations(feature, grid)
    streamed = content._observations(dataclasses.replace(feature, curve=stream.curve), grid)
    assert not isinstance(from_values, str) and not isinstance(streamed, str)
    for a, b in zip(from_values, streamed, strict=True):
        np.testing.assert_array_equal(a, b)
    # and the pooling itself is the mean of each group of stored frames
    wide = values.astype(np.float64)[:, : grid.n_frames * grid.pool]
    want = wide.reshape(values.shape[0], grid.n_frames, grid.pool).mean(axis=2)
    np.testing.assert_allclose(stream.curve.values[:, : grid.n_frames], want, rtol=1e-6)


def test_a_processed_stem_carries_its_curve_and_the_writer_does_not(tmp_path):
    from kmidi_ingest.batch.compute import _without_curve

    s = stem(tmp_path / "a.wav", harmonic_render(melody(1), seconds=3.0))
    assert s.feature.curve is not None and s.feature.curve.values.dtype == np.float32
    assert _without_curve(s).feature.curve is None
    assert _without_curve(s).feature.values is s.feature.values
