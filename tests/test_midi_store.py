"""Edge-case MIDI fixtures through the whole ingest into SQLite and PostgreSQL."""

from __future__ import annotations

import shutil

import pytest

from kmidi_ingest import ingest
from tests.dbutil import scalar
from tests.fixtures.make_midi_fixtures import HERE
from tests.test_midi_fixtures import CORRUPT

STORED = [
    "smpte_25fps",
    "marker_track_only",
    "pitch_bend_and_aftertouch",
    "unreleased_notes",
    "data_byte_over_127",
    "nul_padded_track_name",
    "latin1_track_name",
    "meter_change_mid_bar",
]
BROKEN = ["truncated", "running_status_without_status", "zero_ticks_per_beat"]


def test_edge_cases_are_stored_and_corrupt_files_recorded(tmp_path, db_url):
    midi = tmp_path / "cues" / "1M01 Edge" / "MIDI"
    midi.mkdir(parents=True)
    for name in STORED + BROKEN:
        shutil.copy(HERE / f"{name}.mid", midi / f"{name}.mid")
    summary = ingest(tmp_path / "cues", 16000, database_url=db_url)
    assert summary.cues_ingested == 1
    assert sorted((e.error_type, e.path) for e in summary.errors) == sorted(
        ("MidiError", str(midi / f"{name}.mid")) for name in BROKEN
    )

    def q(sql: str) -> object:
        return scalar(db_url, sql)

    for name in BROKEN:
        message = q(f"SELECT message FROM ingest_errors WHERE file_path LIKE '%{name}.mid'")
        assert isinstance(message, str) and CORRUPT[name] in message
    assert q("SELECT COUNT(*) FROM midi_files") == len(STORED)
    smpte = "FROM midi_files WHERE file_name = 'smpte_25fps.mid'"
    assert q(f"SELECT timing {smpte}") == "smpte"
    assert q(f"SELECT smpte_fps {smpte}") == 25.0
    assert q(f"SELECT smpte_ticks_per_frame {smpte}") == 40
    assert q(f"SELECT smpte_offset_s {smpte}") == pytest.approx(3723.5)
    assert q(f"SELECT ticks_per_beat {smpte}") is None
    assert q("SELECT COUNT(*) FROM midi_files WHERE lenient") == 1
    assert q("SELECT file_name FROM midi_files WHERE lenient") == "data_byte_over_127.mid"
    assert q("SELECT COUNT(*) FROM ingest_errors WHERE error_type = 'LenientRead'") == 1

    assert q("SELECT COUNT(*) FROM midi_tracks WHERE is_conductor") == 2  # markers, meter track
    assert q("SELECT sysex_count FROM midi_tracks WHERE name = 'Markers'") == 1
    assert (
        q("SELECT COUNT(*) FROM markers WHERE kind IN ('marker','cue_point','text','lyrics')") == 7
    )
    assert q("SELECT bar FROM markers WHERE text = 'Hit' AND kind = 'marker'") == 3
    assert q("SELECT beat FROM markers WHERE text = 'Hit' AND kind = 'marker'") == 2.0
    assert q("SELECT text FROM markers WHERE text LIKE 'D%but'") == "Début"
    assert q("SELECT text FROM markers WHERE text LIKE 'a%b'") == "a\ufffdb"
    assert q("SELECT COUNT(*) FROM midi_tracks WHERE name = 'Horn 1'") == 1
    assert q("SELECT COUNT(*) FROM midi_tracks WHERE name = 'Violoncélle'") == 1
    assert q("SELECT COUNT(*) FROM key_signatures") == 2
    assert q("SELECT key FROM key_signatures WHERE tick = 1920") == "Bbm"

    assert q("SELECT COUNT(*) FROM midi_pitch_bends") == 3
    assert q("SELECT MIN(value) FROM midi_pitch_bends") == -8192
    assert q("SELECT MAX(value) FROM midi_pitch_bends") == 8191
    assert q("SELECT COUNT(*) FROM midi_aftertouch") == 2
    assert q("SELECT value FROM midi_aftertouch WHERE pitch IS NULL") == 64
    assert q("SELECT value FROM midi_aftertouch WHERE pitch = 60") == 80

    assert q("SELECT COUNT(*) FROM midi_notes WHERE end_inferred") == 1
    assert q("SELECT end_tick FROM midi_notes WHERE end_inferred") == 960
    assert q("SELECT release_velocity FROM midi_notes WHERE end_inferred") is None
    assert q("SELECT start_bar FROM midi_notes WHERE start_tick = 3120") == 4
    assert q("SELECT COUNT(*) FROM midi_notes WHERE start_bar IS NULL") == 1  # the SMPTE note
