"""MIDI stage throughput on the shared real files, beside mido's (and pretty_midi's) bare load.

"MIDI stage" is :func:`kmidi_ingest.midi.read_midi`: read + hash + decode + FIFO pairing + tempo
map + seconds + bar/beat for every note, CC, bend and marker; no database. The baselines load the
same files in the same run: ``mido.MidiFile(path)`` (decode only, per-message objects) and
``pretty_midi.PrettyMIDI(path)`` (decode + its own pairing and timing).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Row
from kmidi_ingest.midi import read_midi
from kmidi_ingest.smf import parse_smf

SHARED_MIDI = Path(__file__).resolve().parents[2] / "shared" / "data" / "midi"
SECTION = "midi"


def _files() -> list[Path]:
    return sorted(
        p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar")
    )


def _best_of(rounds: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def run(quick: bool) -> list[Row]:
    import mido

    files = _files()
    if not files:
        return []
    if quick:
        files = files[::6]
    rounds = 1 if quick else 3
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    notes = sum(read_midi(p).notes_total for p in files)  # also warms the OS cache

    ours = _best_of(rounds, lambda: [read_midi(p) for p in files])
    mido_s = _best_of(rounds, lambda: [mido.MidiFile(str(p)) for p in files])
    decode = _best_of(rounds, lambda: [parse_smf(p.read_bytes()) for p in files])
    rows = [
        Row(
            section=SECTION,
            figure=f"MIDI stage notes/s ({len(files)} files, {notes:,} notes)",
            value=notes / ours,
            unit="notes/s",
            baseline="mido MidiFile() bare load",
            baseline_value=notes / mido_s,
            target=1.0,
        ),
        Row(
            section=SECTION,
            figure=f"MIDI stage MB/s ({megabytes:.2f} MB), aim 3x",
            value=megabytes / ours,
            unit="MB/s",
            baseline="mido MidiFile() bare load",
            baseline_value=megabytes / mido_s,
            target=3.0,
        ),
        Row(
            section=SECTION,
            figure="SMF decode only (smf.parse_smf) MB/s",
            value=megabytes / decode,
            unit="MB/s",
            baseline="mido MidiFile() bare load",
            baseline_value=megabytes / mido_s,
        ),
    ]
    try:
        import pretty_midi
    except ImportError:
        return rows

    def load_pretty() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p in files:
                pretty_midi.PrettyMIDI(str(p))

    pretty_s = _best_of(1, load_pretty)
    rows.append(
        Row(
            section=SECTION,
            figure="MIDI stage notes/s",
            value=notes / ours,
            unit="notes/s",
            baseline="pretty_midi PrettyMIDI() load",
            baseline_value=notes / pretty_s,
        )
    )
    return rows
