"""Stems rendered from note onsets, for the content-verification tests."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from tests.conftest import note_track, write_midi

SR = 16000
TICKS_PER_S = 960  # 480 ticks per beat at 120 BPM


def rhythm(seed: int, *, seconds: float = 6.0) -> list[tuple[float, int]]:
    """Irregular ``(start_s, pitch)`` notes: gaps of 0.15–0.6 s, pitches in two octaves."""
    rng = np.random.default_rng(seed)
    notes, now = [], 0.1
    while now < seconds - 0.5:
        notes.append((round(now, 3), int(rng.integers(55, 79))))
        now += float(rng.uniform(0.15, 0.6))
    return notes


def render(
    notes: list[tuple[float, int]], *, seconds: float = 6.0, offset_s: float = 0.0
) -> np.ndarray:
    """Decaying tones at the note starts (shifted by ``offset_s``), mono float64 at :data:`SR`."""
    out = np.zeros(int((seconds + offset_s) * SR))
    t = np.arange(int(0.4 * SR)) / SR
    fade = np.minimum(1.0, (t[-1] - t) / 0.1)  # no click at the end of a note
    for start, pitch in notes:
        hz = 440.0 * 2 ** ((pitch - 69) / 12)
        tone = np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.08) * fade * 0.3
        i = int(round((start + offset_s) * SR))
        out[i : i + len(tone)] += tone[: len(out) - i]
    return out


def write_stem(path: Path, samples: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, SR, subtype="PCM_16")
    return path


def write_track_midi(path: Path, tracks: dict[str, list[tuple[float, int]]]) -> Path:
    """A type-1 file at 120 BPM with one track of 0.1 s notes per entry of ``tracks``."""
    conductor = [
        mido.MetaMessage("track_name", name=path.stem),
        mido.MetaMessage("set_tempo", tempo=500_000, time=0),
    ]
    return write_midi(
        path,
        [conductor]
        + [
            note_track(
                name,
                [(round(s * TICKS_PER_S), round(s * TICKS_PER_S) + 96, p) for s, p in notes],
                channel=i,
            )
            for i, (name, notes) in enumerate(tracks.items())
        ],
    )
