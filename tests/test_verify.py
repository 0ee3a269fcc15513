"""Content verification on stems rendered from (or not from) their MIDI notes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from kmidi_ingest import discover, verify
from kmidi_ingest.audio import MelParams, StemData, process_group
from kmidi_ingest.midi import read_midi
from tests.synth import SR, render, rhythm, write_stem, write_track_midi


def stem_data(path) -> StemData:
    (group,) = discover.group_channels([(path, path.name)])
    return process_group(group, sample_rate_hz=SR, params=MelParams())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A MIDI track and three stems: following it, not following it, following it 0.5 s late."""
    root = tmp_path_factory.mktemp("verify")
    notes = rhythm(1)
    midi = read_midi(write_track_midi(root / "cue.mid", {"Marimba": notes}))
    (track,) = midi.instrument_tracks
    stems = [
        stem_data(write_stem(root / "follows.wav", render(notes))),
        stem_data(write_stem(root / "other.wav", render(rhythm(2)))),
        stem_data(write_stem(root / "late.wav", render(notes, offset_s=0.5))),
    ]
    return track, stems


def test_stem_that_follows_its_track_correlates_at_zero_lag(rendered):
    track, stems = rendered
    evidence = verify.onset_evidence([track.notes], [stems[0].feature])
    assert evidence.frame_rate_hz == SR / 512
    assert evidence.correlation[0, 0] > 0.85
    assert abs(evidence.lag_s[0, 0]) < 0.035  # about one frame (32 ms)
    assert verify.is_verified(evidence.correlation[0, 0]) is True


def test_stem_that_does_not_follow_is_not_verified(rendered):
    track, stems = rendered
    evidence = verify.onset_evidence([track.notes], [stems[1].feature])
    assert evidence.correlation[0, 0] < verify.VERIFY_THRESHOLD
    assert verify.is_verified(evidence.correlation[0, 0]) is False


def test_stem_printed_with_preroll_shows_the_offset(rendered):
    track, stems = rendered
    evidence = verify.onset_evidence([track.notes], [s.feature for s in stems])
    assert evidence.correlation[0, 2] > 0.75
    assert evidence.lag_s[0, 2] == pytest.approx(0.5, abs=0.035)
    # the 0.5 s shifted out of a 6 s envelope count as no evidence: r shrinks by about 1/12
    assert evidence.correlation[0, 2] == pytest.approx(
        evidence.correlation[0, 0] * 11 / 12, abs=0.05
    )
    assert verify.is_verified(evidence.correlation[0, 1]) is False


def test_envelopes_and_correlation_edge_cases():
    env = verify.note_onset_envelope(
        np.array([0.0, 0.5, 0.5, 9.0]), np.array([127, 127, 64, 100]), n_frames=40, frame_rate_hz=20
    )
    assert (
        env[0] == 1.0
        and env[10] == pytest.approx(1 + 64 / 127)
        and env.sum() == pytest.approx(2 + 64 / 127)
    )
    flat = np.zeros(50)
    assert verify.correlate(env[:40], flat[:40], frame_rate_hz=20) is None
    a = np.zeros(200)
    a[[20, 50, 90, 120, 170]] = 1
    b = np.roll(a, 7)
    r, lag = verify.correlate(a, b, frame_rate_hz=10)
    assert r > 0.99 and lag == pytest.approx(0.7, abs=0.01)
    assert verify.onset_evidence([], []).correlation.shape == (0, 0)


def test_cue_offset_needs_agreeing_lags():
    assert verify.cue_offset([]) is None
    assert verify.cue_offset([0.49, 0.51, 0.5]) == 0.5
    assert verify.cue_offset([0.0, 0.5]) is None
    assert verify.cue_offset([-0.0004]) == 0.0


def test_streamed_onset_strength_equals_librosa_on_the_stored_matrix(tmp_path):
    # Long enough for many FFT batches and several read blocks, with a resampler in the way.
    rng = np.random.default_rng(3)
    rate = 44100
    n = 3 * 131072 + 777
    burst = np.zeros(n, dtype=np.float32)
    for start in rng.integers(0, n - 2000, 40):
        burst[start : start + 2000] += rng.standard_normal(2000).astype(np.float32) * 0.3
    path = tmp_path / "S.wav"
    sf.write(str(path), burst, rate, subtype="PCM_24")
    (group,) = discover.group_channels([(path, path.name)])
    feature = process_group(group, sample_rate_hz=48000).feature
    assert feature.onset_strength is not None
    assert feature.onset_strength.shape == (feature.values.shape[1],)
    streamed = verify.stem_onset_envelope(feature)
    recomputed = verify.stem_onset_envelope(replace(feature, onset_strength=None))
    assert np.array_equal(streamed, recomputed)
    assert np.count_nonzero(streamed > 0.5) >= 40  # the bursts are there


def test_hand_written_onset_strength_equals_librosas(rendered):
    """verify.py does not import librosa; its spectral flux is librosa's, number for number."""
    import librosa

    _, stems = rendered
    feature = replace(stems[0].feature, onset_strength=None)
    ours = verify.stem_onset_envelope(feature)
    values = np.asarray(feature.values, dtype=np.float32)
    floor = 10.0 * np.log10(feature.db_amin / feature.db_ref)
    padded = np.concatenate([np.full((values.shape[0], 1), floor, np.float32), values], axis=1)
    theirs = librosa.onset.onset_strength(
        S=padded, sr=feature.sample_rate_hz, hop_length=feature.hop_length, center=False
    )[1:]
    assert np.allclose(ours, np.log1p(theirs), atol=1e-5)
