"""Doubled parts read from the notes: unison and octave copies, other lines, the audio span."""

from __future__ import annotations

import numpy as np

from kmidi_ingest.doubling import doubled_shares
from kmidi_ingest.midi import NOTE_DTYPE


def notes(starts, pitches) -> np.ndarray:
    out = np.zeros(len(starts), dtype=NOTE_DTYPE)
    out["start_s"] = starts
    out["end_s"] = np.asarray(starts) + 0.2
    out["pitch"] = pitches
    return out


def test_unison_and_octave_copies_are_doubled_and_another_line_is_not():
    starts = [0.0, 0.5, 1.0, 1.5, 2.0]
    line = notes(starts, [60, 62, 64, 65, 67])
    octave = notes([s + 0.015 for s in starts], [48, 50, 52, 53, 55])  # 15 ms late, an octave down
    other = notes([0.25, 0.75, 1.25, 1.75], [60, 62, 64, 65])
    half = notes([0.0, 0.5, 3.0, 3.5], [60, 62, 70, 71])
    got = doubled_shares([line, octave, other, half])
    assert got[0, 1] == 1.0 and got[1, 0] == 1.0
    assert got[0, 2] == 0.0 and got[2, 0] == 0.0
    assert got[3, 0] == 0.5 and got[0, 3] == 0.4
    assert np.all(np.diag(got) == 0.0)


def test_only_note_starts_inside_the_audio_count():
    a = notes([0.0, 1.0, 2.0, 30.0, 31.0], [60, 62, 64, 40, 41])
    b = notes([0.0, 1.0, 2.0], [72, 74, 76])
    assert doubled_shares([a, b])[0, 1] == 0.6
    assert doubled_shares([a, b], until_s=25.0)[0, 1] == 1.0
    assert doubled_shares([a, notes([], [])]).tolist() == [[0.0, 0.0], [0.0, 0.0]]
