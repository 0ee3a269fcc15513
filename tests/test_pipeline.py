"""End to end: ingest real files into SQLite and PostgreSQL and read the rows back."""

from __future__ import annotations

import shutil

import pytest

from kmidi_ingest import ingest
from tests.conftest import EXAMPLES
from tests.dbutil import CUE_TABLES, content, counts, scalar

SR = 16000


def run(root, url, **kwargs):
    return ingest(root, SR, database_url=url, **kwargs)


def test_cue_is_stored_with_notes_stems_mix_and_matches(make_cue, tmp_path, db_url):
    make_cue("1M01 Opening")
    summary = run(tmp_path / "cues", db_url)
    assert summary.ok, summary.problems
    assert (summary.cues_ingested, summary.midi_files, summary.tracks, summary.notes) == (
        1,
        1,
        2,
        5,
    )
    assert (summary.stems, summary.final_mixes, summary.matches) == (2, 1, 2)
    n = counts(db_url)
    assert n["cues"] == 1 and n["midi_notes"] == 5 and n["midi_tracks"] == 3
    assert n["audio_files"] == 2 and n["final_mixes"] == 1 and n["audio_channels"] == 2 + 1 + 6
    assert n["tempo_changes"] == 2 and n["time_signatures"] == 1 and n["markers"] == 1
    # Strings notes at ticks 0, 960, 1920 with the tempo doubling at tick 1920.
    starts = scalar(db_url, "SELECT SUM(start_s) FROM notes_view WHERE track_name = 'Strings Hi'")
    assert starts == pytest.approx(0.0 + 1.0 + 2.0)
    pairs = scalar(
        db_url,
        "SELECT COUNT(*) FROM notes_view WHERE (track_name = 'Strings Hi' AND stem_name = "
        "'Strings') OR (track_name = 'Brass Ens' AND stem_name = 'Brass')",
    )
    assert pairs == 5
    assert scalar(db_url, "SELECT name FROM final_mixes") == "6mx"
    assert scalar(db_url, "SELECT COUNT(*) FROM audio_files WHERE name LIKE '%6mx%'") == 0


def test_second_run_adds_nothing_and_changed_cue_is_replaced(make_cue, tmp_path, db_url):
    cue = make_cue("1M01 Opening")
    run(tmp_path / "cues", db_url)
    before = counts(db_url)
    again = run(tmp_path / "cues", db_url)
    assert (again.cues_ingested, again.cues_skipped) == (0, 1)
    after = counts(db_url)
    assert {k: v for k, v in after.items() if k != "ingest_runs"} == {
        k: v for k, v in before.items() if k != "ingest_runs"
    }
    (cue / "Audio Files" / "1M01 Brass.wav").unlink()
    third = run(tmp_path / "cues", db_url)
    assert third.cues_ingested == 1
    assert counts(db_url)["audio_files"] == 1
    assert counts(db_url)["cues"] == 1


def test_corrupt_midi_is_an_error_row_and_other_cues_are_stored(make_cue, tmp_path, db_url):
    make_cue("1M01 Opening")
    bad_cue = make_cue("1M02 Broken")
    bad = bad_cue / "MIDI" / "1M02 Broken.mid"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    summary = run(tmp_path / "cues", db_url)
    assert not summary.ok
    assert summary.cues_ingested == 2
    assert [(e.stage, e.error_type, e.path) for e in summary.errors] == [
        ("midi", "MidiError", str(bad))
    ]
    assert scalar(db_url, "SELECT COUNT(*) FROM ingest_errors WHERE stage = 'midi'") == 1
    assert "truncated" in scalar(db_url, "SELECT message FROM ingest_errors")
    assert scalar(db_url, "SELECT COUNT(*) FROM midi_files") == 1
    assert scalar(db_url, "SELECT COUNT(*) FROM audio_files") == 4


def test_sqlite_and_postgresql_hold_the_same_rows(tmp_path, pg_url):
    root = tmp_path / "cues"
    shutil.copytree(EXAMPLES, root)
    sqlite_url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    assert run(root, sqlite_url).ok
    assert run(root, pg_url).ok
    tables = CUE_TABLES
    a, b = content(sqlite_url, tables), content(pg_url, tables)
    for table in tables:
        assert a[table] == b[table], table
    assert len(a["midi_notes"]) == 186


def test_examples_are_ingested_with_expected_pairs(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    summary = run(EXAMPLES, url, workers=2)
    assert summary.ok, summary.problems
    assert (summary.cues_ingested, summary.midi_files, summary.stems, summary.final_mixes) == (
        3,
        4,
        9,
        3,
    )
    engine_rows = content(url, ["cues"])["cues"]
    assert len(engine_rows) == 3
    pairs = scalar(
        url,
        "SELECT group_concat(t.name || '->' || coalesce(a.name, '-'), '; ') FROM track_matches m "
        "JOIN midi_tracks t ON t.id = m.track_id JOIN midi_files f ON f.id = t.midi_file_id "
        "LEFT JOIN audio_files a ON a.id = m.audio_file_id WHERE f.file_name LIKE '1M0%' "
        "ORDER BY t.id",
    )
    assert pairs.split("; ") == [
        "Strings Hi->Strings",
        "Brass Ens->Brass",
        "Low Perc (Taiko)->Taiko_02",
        "Click->-",
        "Vln 1 Spicc->VLN1 spic",
        "Synth Pad - Warm->Synth Pad",
        "Piano->PNO",
    ]
