"""The MIDI stage against independent parsers on the real files in ``../shared/data/midi``.

Every disagreement must be explained by a documented rule (MANIFEST.md "Known disagreements"):

- mido: the lean decoder must produce the same events, event for event (no mido quirk is
  triggered by these files).
- symusic (ticks): same notes (pitch, start/end tick, velocity), except that symusic drops notes that
  are never released, which we keep, closed at the end of their track with ``end_inferred``.
- pretty_midi (seconds, float64): same start/end seconds to 1 µs, except where a tempo event sits
  outside track 0: pretty_midi reads tempo from track 0 only; a map built from track 0's tempo
  events alone must then reproduce its seconds to 1 µs.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from functools import cache
from pathlib import Path

import mido
import numpy as np
import pytest

from kmidi_ingest.midi import MidiData, read_midi
from kmidi_ingest.smf import META, parse_smf
from kmidi_ingest.timing import TempoMap, last_per_tick
from tests.conftest import SHARED_MIDI
from tests.midi_compare import mido_events, smf_as_mido

US = 1e-6


@cache
def real_files() -> tuple[Path, ...]:
    files = tuple(
        sorted(p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar"))
    )
    if not files:
        pytest.skip("../shared/data/midi is not present")
    return files


@cache
def ours(path: Path) -> MidiData:
    return read_midi(path)


# folder -> (files, events): all 144 files, 385 950 events
GROUPS = {
    "debian-csound-doc": (5, 470),
    "debian-mma": (74, 159_783),
    "debian-openttd-openmsx": (31, 174_715),
    "debian-pianobooster": (9, 4_548),
    "debian-solfege": (1, 26),
    "pypi-music21": (23, 46_400),
    "pypi-partitura": (1, 8),
}
TRACK0_TEMPO_RULE = {"debian-solfege/fanfare.midi", "pypi-music21/test04.mid"}


def test_groups_cover_every_real_file():
    assert len(real_files()) == sum(files for files, _ in GROUPS.values()) == 144


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_real_files_match_mido_events_and_pretty_midi_seconds(group):
    """One mido parse per file serves both references (pretty_midi reads mido's object)."""
    pretty_midi = pytest.importorskip("pretty_midi")
    files = [p for p in real_files() if p.relative_to(SHARED_MIDI).parts[0] == group]
    events = 0
    for path in files:
        raw = path.read_bytes()
        smf = parse_smf(raw)
        mid = mido.MidiFile(file=io.BytesIO(raw))
        assert (smf.midi_format, smf.division) == (mid.type, mid.ticks_per_beat), path
        assert smf_as_mido(smf) == [mido_events(t) for t in mid.tracks], path
        events += sum(len(t.events) for t in smf.tracks)

        # Same events in, same MidiData out: convert() is pure, and the fixture tests compare
        # read_midi with from_mido directly.
        lean = ours(path)
        ticks = np.concatenate(
            [np.r_[t.notes["start_tick"], t.notes["end_tick"]] for t in lean.tracks]
        )
        seconds = np.concatenate([np.r_[t.notes["start_s"], t.notes["end_s"]] for t in lean.tracks])
        if not len(ticks):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about tempo outside track 0
            pm = pretty_midi.PrettyMIDI(mido_object=mid)  # makes mid's times absolute
        unique, inverse = np.unique(ticks, return_inverse=True)
        expected = np.array([pm.tick_to_time(int(t)) for t in unique])[inverse]
        if path.relative_to(SHARED_MIDI).as_posix() not in TRACK0_TEMPO_RULE:
            assert np.allclose(seconds, expected, rtol=0, atol=US), path
            continue
        assert not np.allclose(seconds, expected, rtol=0, atol=US), path
        assert any(t.track_index > 0 for t in lean.tempo_changes), path
        assert np.allclose(track0_tempo_map(path).seconds(ticks), expected, rtol=0, atol=US)
    assert (len(files), events) == GROUPS[group]


def track0_tempo_map(path: Path) -> TempoMap:
    """The tempo map pretty_midi builds: track 0's tempo events only."""
    smf = parse_smf(path.read_bytes())
    events = [
        (tick, order, (p[0] << 16) | (p[1] << 8) | p[2])
        for order, (tick, status, kind, _b, p) in enumerate(smf.tracks[0].events)
        if status == META and kind == 0x51 and p is not None
    ]
    return TempoMap.from_events(smf.division, last_per_tick(events))


def note_key(pitch: int, start: int, end: int, velocity: int) -> tuple[int, int, int, int]:
    return (int(pitch), int(start), int(end), int(velocity))


def test_note_ticks_agree_with_symusic_except_unreleased_notes():
    symusic = pytest.importorskip("symusic")
    explained = 0
    total = 0
    for path in real_files():
        data = ours(path)
        mine: Counter[tuple[int, int, int, int]] = Counter()
        inferred: Counter[tuple[int, int, int, int]] = Counter()
        for track in data.tracks:
            n = track.notes
            for row in zip(n["pitch"], n["start_tick"], n["end_tick"], n["velocity"], strict=True):
                mine[note_key(*row)] += 1
            i = n[n["end_inferred"]]
            for row in zip(i["pitch"], i["start_tick"], i["end_tick"], i["velocity"], strict=True):
                inferred[note_key(*row)] += 1
        # From bytes: symusic refuses a .kar by its file name.
        score = symusic.Score.from_midi(path.read_bytes())
        theirs = Counter(
            note_key(n.pitch, n.time, n.time + n.duration, n.velocity)
            for track in score.tracks
            for n in track.notes
        )
        assert not theirs - mine, path  # symusic has no note we lack
        extra = mine - theirs
        assert not extra - inferred, path  # every note symusic lacks was never released
        assert extra == inferred, path  # ... and symusic drops every one of them
        explained += sum(extra.values())
        total += data.notes_total
    assert total == 178_933
    assert explained == 850  # all in debian-mma (machine-written accompaniment)
