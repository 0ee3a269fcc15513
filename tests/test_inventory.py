"""``stats``: every number equals a direct SQL count, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from kmidi_ingest import ingest
from kmidi_ingest.cli import main
from tests.conftest import EXAMPLES, write_tone
from tests.dbutil import scalar


@pytest.fixture
def stocked_db(tmp_path, db_url):
    """Reel 1 of the examples plus a MIDI-only cue, an audio-only cue and one unreadable stem."""
    root = tmp_path / "cues"
    shutil.copytree(EXAMPLES / "Reel 1", root / "Reel 1")
    midi_only = root / "Reel 3" / "3M01 Dry"
    shutil.copytree(EXAMPLES / "Reel 1" / "1M01 Opening" / "MIDI", midi_only / "MIDI")
    write_tone(root / "Reel 3" / "3M02 Wet" / "Audio Files" / "3M02 Choir.wav", sample_rate=16000)
    (root / "Reel 1" / "1M02 Tension" / "Audio Files" / "1M02 PNO.wav").write_bytes(b"junk")
    summary = ingest(root, 16000, database_url=db_url)
    assert summary.cues_ingested == 4 and not summary.ok
    return db_url


def test_stats_equal_direct_sql_counts(stocked_db, tmp_path, capsys):
    url = stocked_db
    assert main(["stats", "--database-url", url, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)

    def q(sql):
        return scalar(url, sql)

    expected = {
        "cues": q("SELECT COUNT(*) FROM cues"),
        "midi_files": q("SELECT COUNT(*) FROM midi_files"),
        "tracks": q("SELECT COUNT(*) FROM midi_tracks WHERE NOT is_conductor"),
        "conductor_tracks": q("SELECT COUNT(*) FROM midi_tracks WHERE is_conductor"),
        "notes": q("SELECT COUNT(*) FROM midi_notes"),
        "stems": q("SELECT COUNT(*) FROM audio_files"),
        "final_mixes": q("SELECT COUNT(*) FROM final_mixes"),
        "tracks_matched": q(
            "SELECT COUNT(DISTINCT track_id) FROM track_matches WHERE audio_file_id IS NOT NULL"
        ),
        "pairs": q("SELECT COUNT(*) FROM track_matches WHERE audio_file_id IS NOT NULL"),
        "matches_unverified": q(
            "SELECT COUNT(*) FROM track_matches WHERE audio_file_id IS NOT NULL AND verified IS NULL"
        ),
        "tracks_unmatched": q(
            "SELECT COUNT(*) FROM midi_tracks t WHERE NOT t.is_conductor AND NOT EXISTS "
            "(SELECT 1 FROM track_matches m WHERE m.track_id = t.id AND m.audio_file_id IS NOT NULL)"
        ),
        "stems_unmatched": q(
            "SELECT COUNT(*) FROM audio_files a WHERE NOT EXISTS "
            "(SELECT 1 FROM track_matches m WHERE m.audio_file_id = a.id)"
        ),
        "cues_midi_without_stems": q(
            "SELECT COUNT(*) FROM cues c WHERE EXISTS (SELECT 1 FROM midi_files f WHERE f.cue_id = c.id)"
            " AND NOT EXISTS (SELECT 1 FROM audio_files a WHERE a.cue_id = c.id)"
        ),
        "cues_stems_without_midi": q(
            "SELECT COUNT(*) FROM cues c WHERE EXISTS (SELECT 1 FROM audio_files a WHERE a.cue_id = c.id)"
            " AND NOT EXISTS (SELECT 1 FROM midi_files f WHERE f.cue_id = c.id)"
        ),
    }
    assert {k: got[k] for k in expected} == expected
    # Known values of this tree, so the test fails if both sides agree on nonsense.
    assert (got["cues"], got["notes"], got["stems"]) == (
        4,
        66 + 56 + 66,
        5 + 1,
    )  # 1M01, 1M02, 1M01's MIDI again
    assert got["cues_midi_without_stems"] == 1 and got["cues_stems_without_midi"] == 1
    assert got["stem_hours"] * 3600 == pytest.approx(q("SELECT SUM(duration_s) FROM audio_files"))
    assert got["final_mix_hours"] * 3600 == pytest.approx(
        q("SELECT SUM(duration_s) FROM final_mixes")
    )
    assert got["midi_hours"] * 3600 == pytest.approx(q("SELECT SUM(length_s) FROM midi_files"))
    assert got["errors_by_stage"] == {"audio": 1}
    assert got["errors_by_stage"]["audio"] == q(
        "SELECT COUNT(*) FROM ingest_errors WHERE stage = 'audio' AND severity = 'error'"
    )
    for name, c in got["categories"].items():
        where = "category IS NULL" if name == "(none)" else f"category = '{name}'"
        assert c["tracks"] == q(
            f"SELECT COUNT(*) FROM midi_tracks WHERE NOT is_conductor AND {where}"
        )
        assert c["stems"] == q(f"SELECT COUNT(*) FROM audio_files WHERE {where}")
        assert c["notes"] == q(
            "SELECT COUNT(*) FROM midi_notes n JOIN midi_tracks t ON t.id = n.track_id "
            f"WHERE NOT t.is_conductor AND t.{where}"
        )
    assert sum(c["tracks"] for c in got["categories"].values()) == got["tracks"]

    assert main(["stats", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "cues with MIDI but no stems" in out and "Strings" in out
    assert main(["stats", "--database-url", "mysql://u:secret@h/db"]) == 2
    err = capsys.readouterr().err
    assert "unsupported database" in err and "secret" not in err
    empty = tmp_path / "empty.sqlite"
    assert main(["stats", "--database-url", f"sqlite:///{empty}"]) == 2
    assert capsys.readouterr().err == f"kmidi-ingest stats: no database at {empty}\n"
    assert not empty.exists()  # a command that only reads creates no database
    sqlite3.connect(empty).close()
    assert main(["stats", "--database-url", f"sqlite:///{empty}"]) == 1
    assert capsys.readouterr().err == (
        f"kmidi-ingest stats: sqlite:///{empty} holds no kmidi schema; ingest a tree into it first\n"
    )
