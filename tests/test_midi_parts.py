"""Instrument parts: a track whose notes use several channels is one part per (track, channel).

The rule (``kmidi_ingest.midi``): one part per channel with notes; the part's program is the one
in force at its first note, its program history stays in ``program_changes``; channel events of a
channel without notes stay with the track's first part. Pinned on two tiny fixtures and on
Slakh's real ``all_src.mid`` (format 0, 11 instruments in one track).
"""

from __future__ import annotations

import json
import shutil

import mido
import pytest
import yaml
from sqlalchemy import text

from kmidi_ingest import ingest
from kmidi_ingest.cli import main
from kmidi_ingest.config import Settings
from kmidi_ingest.db import make_engine
from kmidi_ingest.midi import read_midi
from tests.conftest import SLAKH_TRACK, write_tone
from tests.fixtures.make_midi_fixtures import HERE

US = 1e-6
needs_slakh = pytest.mark.skipif(
    not (SLAKH_TRACK / "all_src.mid").is_file(),
    reason=f"{SLAKH_TRACK} (../shared/data/real, Slakh) is not present",
)


def test_format0_track_gives_one_part_per_channel_with_notes():
    data = read_midi(HERE / "format0_three_parts.mid")
    assert data.track_count == 1
    piano, bass, drums = data.tracks
    assert data.instrument_tracks == (piano, bass, drums)
    assert [(p.index, p.part_index, p.name) for p in data.tracks] == [
        (0, 0, "Band"),
        (0, 1, "Band"),
        (0, 2, "Band"),
    ]
    assert [(p.part_name, p.channel, p.program, p.is_drum) for p in data.tracks] == [
        ("Electric Piano 1", 0, 4, False),  # program 4 arrives at its first note's tick
        ("Electric Bass (finger)", 1, 33, False),  # its only program comes after its first note
        ("Drums", 9, 0, True),
    ]
    assert piano.notes[["pitch", "start_tick", "end_tick"]].tolist() == [(60, 480, 960)]
    assert bass.notes[["pitch", "start_tick", "end_tick"]].tolist() == [
        (40, 0, 480),
        (43, 960, 1440),
    ]
    assert bass.notes["start_s"] == pytest.approx([0.0, 1.0], abs=US)
    assert drums.notes[["pitch", "start_tick"]].tolist() == [(36, 0), (38, 240)]
    assert {int(c) for p in data.tracks for c in p.notes["channel"]} == {0, 1, 9}
    # The program history stays with its part; channel 15's controller (no notes) with the first.
    assert piano.program_changes[["tick", "program"]].tolist() == [(0, 0), (480, 4)]
    assert bass.program_changes[["tick", "program"]].tolist() == [(480, 33)]
    assert drums.program_changes[["tick", "program"]].tolist() == [(0, 0)]
    assert piano.cc[["channel", "controller", "value"]].tolist() == [(15, 7, 100)]
    assert len(bass.cc) == len(drums.cc) == 0
    assert piano.pitch_bends[["tick", "value"]].tolist() == [(960, (0x50 << 7) - 8192)]
    assert [p.stray_note_off_count for p in data.tracks] == [0, 1, 0]
    assert [(p.end_tick, p.end_s) for p in data.tracks] == [(1920, pytest.approx(2.0))] * 3


def test_program_change_inside_a_part_keeps_one_part_with_its_history():
    conductor, strings = read_midi(HERE / "program_change_mid_part.mid").tracks
    assert conductor.is_conductor and conductor.part_index == 0
    assert (strings.part_index, strings.part_name, strings.channel) == (1, "Strings", 0)
    assert strings.program == 48  # in force at the first note; 52 comes later
    assert strings.program_changes[["tick", "program"]].tolist() == [(0, 48), (480, 52)]
    assert strings.notes[["pitch", "start_tick"]].tolist() == [(60, 0), (64, 960)]


def _rows(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_parts_are_rows_with_their_events_categories_and_stems(tmp_path):
    cue = tmp_path / "cues" / "1M01 Band"
    (cue / "MIDI").mkdir(parents=True)
    shutil.copy(HERE / "format0_three_parts.mid", cue / "MIDI" / "band.mid")
    for stem, freq in (("Piano", 440), ("Bass", 110), ("Drums", 1000)):
        write_tone(cue / "Audio Files" / f"1M01 {stem}.wav", freq=freq, seconds=2)
    url = f"sqlite:///{tmp_path}/db.sqlite"
    assert ingest(tmp_path / "cues", 16000, database_url=url, settings=Settings()).ok

    assert _rows(
        url,
        "SELECT t.track_index, t.part_index, t.name, t.part_name, t.channel, t.program, "
        "t.is_drum, t.category, t.note_count, a.name FROM midi_tracks t "
        "LEFT JOIN track_matches m ON m.track_id = t.id "
        "LEFT JOIN audio_files a ON a.id = m.audio_file_id ORDER BY t.part_index",
    ) == [
        (0, 0, "Band", "Electric Piano 1", 0, 4, False, "Piano", 1, "Piano"),
        (0, 1, "Band", "Electric Bass (finger)", 1, 33, False, "Bass", 2, "Bass"),
        (0, 2, "Band", "Drums", 9, 0, True, "Drums", 2, "Drums"),
    ]
    assert _rows(url, "SELECT track_count FROM midi_files") == [(1,)]
    assert _rows(
        url,
        "SELECT t.part_index, n.channel, n.pitch FROM midi_notes n "
        "JOIN midi_tracks t ON t.id = n.track_id ORDER BY t.part_index, n.start_tick",
    ) == [(0, 0, 60), (1, 1, 40), (1, 1, 43), (2, 9, 36), (2, 9, 38)]
    assert _rows(
        url,
        "SELECT t.part_index, p.tick, p.program FROM midi_program_changes p "
        "JOIN midi_tracks t ON t.id = p.track_id ORDER BY t.part_index, p.tick",
    ) == [(0, 0, 0), (0, 480, 4), (1, 480, 33), (2, 0, 0)]
    assert _rows(
        url,
        "SELECT t.part_index, c.channel, c.controller FROM midi_cc c "
        "JOIN midi_tracks t ON t.id = c.track_id",
    ) == [(0, 15, 7)]
    assert _rows(
        url,
        "SELECT part_name, part_program, is_drum, track_category, stem_name, pitch "
        "FROM notes_view WHERE is_drum ORDER BY start_s",
    ) == [("Drums", 0, True, "Drums", "Drums", 36), ("Drums", 0, True, "Drums", "Drums", 38)]
    assert _rows(url, "SELECT instrument_tracks, notes, matched_tracks FROM cue_summary") == [
        (3, 5, 3)
    ]


@needs_slakh
def test_slakh_all_src_gives_its_eleven_parts():
    data = read_midi(SLAKH_TRACK / "all_src.mid")
    meta = yaml.safe_load((SLAKH_TRACK / "metadata.yaml").read_text())["stems"]
    assert (data.midi_format, data.track_count, len(data.instrument_tracks)) == (0, 1, 11)
    parts = data.instrument_tracks
    assert [p.channel for p in parts] == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 13]
    assert [p.is_drum for p in parts] == [p.channel == 9 for p in parts]
    assert sum(len(p.notes) for p in parts) == data.notes_total

    # Each stem's own MIDI file (MIDI/Sxx.mid, one part each) holds one part's notes, and that
    # part has the program metadata.yaml gives the stem (128 = drums, Slakh's convention). Slakh
    # edits its per-stem files a little (drum pitches re-mapped, the bass an octave off, a note
    # dropped here and there), so a stem finds its part by (pitch class, onset tick), drums by
    # onset tick: one part holds at least 95 % of the stem's notes, no other part half of them.
    def keys(part, is_drum):
        ticks = part.notes["start_tick"].tolist()
        return (
            set(ticks)
            if is_drum
            else set(zip((part.notes["pitch"] % 12).tolist(), ticks, strict=True))
        )

    found = {}
    for stem, info in meta.items():
        path = SLAKH_TRACK / "MIDI" / f"{stem}.mid"
        if not path.is_file():
            assert not info["midi_saved"] and stem == "S06"
            continue
        (own,) = read_midi(path).instrument_tracks
        wanted = keys(own, info["is_drum"])
        shared = sorted(
            ((len(wanted & keys(p, info["is_drum"])), p.part_index) for p in parts), reverse=True
        )
        assert shared[0][0] >= 0.95 * len(wanted) and shared[1][0] < 0.5 * len(wanted), stem
        part = parts[shared[0][1]]
        assert (128 if part.is_drum else part.program) == info["program_num"], stem
        assert part.is_drum == info["is_drum"], stem
        found[stem] = part.part_index
    assert len(set(found.values())) == 10
    leftover = [p for p in parts if p.part_index not in found.values()]
    assert [(p.program, p.part_name) for p in leftover] == [(103, "FX 8 (sci-fi)")]  # S06


@needs_slakh
def test_slakh_export_of_drums_holds_only_the_drum_part(tmp_path):
    cue = tmp_path / "cues" / "Track00001"
    (cue / "MIDI").mkdir(parents=True)
    shutil.copy(SLAKH_TRACK / "all_src.mid", cue / "MIDI" / "all_src.mid")
    shutil.copytree(SLAKH_TRACK / "stems", cue / "stems")
    url = f"sqlite:///{tmp_path}/db.sqlite"
    assert ingest(tmp_path / "cues", 16000, database_url=url, settings=Settings()).ok
    assert _rows(url, "SELECT channel, program, category FROM midi_tracks WHERE is_drum") == [
        (9, 0, "Drums")
    ]
    assert _rows(url, "SELECT COUNT(*) FROM midi_tracks WHERE category = 'Drums'") == [(1,)]

    out = tmp_path / "drums.jsonl"
    assert (
        main(
            ["export", str(out), "--format", "jsonl", "--category", "Drums", "--database-url", url]
        )
        == 0
    )
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    (track,) = record["tracks"]
    assert (track["channel"], track["is_drum"], track["part_name"]) == (9, True, "Drums")
    drums = next(p for p in read_midi(SLAKH_TRACK / "all_src.mid").tracks if p.is_drum)
    assert track["note_count"] == len(track["notes"]["pitch"]) == len(drums.notes) == 1078
    assert set(track["notes"]["channel"]) == {9}
    assert track["notes"]["start_s"] == pytest.approx(drums.notes["start_s"].tolist(), abs=US)


def test_mido_sees_the_fixture_channels_the_parts_were_split_by():
    """mido's own reading of the format-0 fixture: the channels the parts were split by."""
    mid = mido.MidiFile(HERE / "format0_three_parts.mid")
    channels = {m.channel for m in mid.tracks[0] if m.type == "note_on" and m.velocity}
    assert channels == {0, 1, 9}
