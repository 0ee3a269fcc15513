"""Content evidence on synthesized harmonic tones: the right bands, the right lag, a real null."""

from __future__ import annotations

import numpy as np
import pytest

from kmidi_ingest import content, discover
from kmidi_ingest.audio import MelParams, StemData, process_group
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
