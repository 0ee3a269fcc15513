"""Units of work by layout (issue 14.3): a DAW cue or a Slakh track is one cue; a flat folder of
performances is one unit per MIDI file (with its same-named audio); a MIDI file without audio is
a unit of its own, so a changed file recomputes that file alone."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kmidi_ingest import ingest
from kmidi_ingest.cli import main
from kmidi_ingest.db import make_engine
from kmidi_ingest.discover import scan, stat_fingerprint
from tests.conftest import SHARED_REAL, note_track, write_midi, write_tone

SR = 8000


def solo(path, pitch, *, name="Piano"):
    return write_midi(path, [note_track(name, [(0, 240, pitch), (480, 720, pitch + 2)])])


def units(root):
    return [(c.rel_path, c.kind, c.name) for c in scan(root).cues]


def files(cue):
    return sorted(p.relative_to(cue.path).as_posix() for p in cue.midi_files + cue.audio_files)


def test_folder_of_three_performances_is_three_units(tmp_path):
    year = tmp_path / "maestro" / "2018"
    for i, name in enumerate(("take A", "take B", "take C")):
        solo(year / f"{name}.midi", 60 + i)
    write_tone(year / "take A.wav", seconds=0.2)
    write_tone(year / "take B.L.wav", seconds=0.2)  # a multi-mono print is the same performance
    write_tone(year / "take B.R.wav", seconds=0.2)
    write_tone(year / "TAKE C.wav", seconds=0.2)
    found = scan(tmp_path).cues
    assert [(c.rel_path, c.kind, c.name) for c in found] == [
        ("maestro/2018/take A.midi", "performance", "take A"),
        ("maestro/2018/take B.midi", "performance", "take B"),
        ("maestro/2018/take C.midi", "performance", "take C"),
    ]
    assert [files(c) for c in found] == [
        ["take A.midi", "take A.wav"],
        ["take B.L.wav", "take B.R.wav", "take B.midi"],
        ["TAKE C.wav", "take C.midi"],
    ]
    assert scan(tmp_path).problems == ()


def test_performances_without_audio_and_midi_files_alone(tmp_path):
    session = tmp_path / "groove" / "drummer1" / "session1"
    solo(session / "1_funk_80_beat_4-4.mid", 36)
    solo(session / "2_jazz_120_fill_4-4.mid", 38)
    write_tone(session / "1_funk_80_beat_4-4.wav", seconds=0.2)
    assert units(tmp_path) == [
        ("groove/drummer1/session1/1_funk_80_beat_4-4.mid", "performance", "1_funk_80_beat_4-4"),
        ("groove/drummer1/session1/2_jazz_120_fill_4-4.mid", "file", "2_jazz_120_fill_4-4"),
    ]
    alone = tmp_path / "alone"
    solo(alone / "root.mid", 40)  # a MIDI file at the root itself
    (unit,) = scan(alone).cues
    assert (unit.rel_path, unit.kind, files(unit)) == ("root.mid", "file", ["root.mid"])


def test_cue_layouts_stay_one_cue(make_cue, tmp_path):
    root = tmp_path / "cues"
    make_cue("1M01 Opening")  # MIDI/ + Audio Files/
    loose = root / "1M02 Loose"  # MIDI files beside prints of their own: a cue, not performances
    solo(loose / "1M02 Loose.mid", 60)
    solo(loose / "1M02 Loose alt.mid", 62)
    write_tone(loose / "1M02 Strings.wav", seconds=0.2)
    nested = root / "1M03 Nested"  # audio in a subfolder that is no audio folder: a cue
    solo(nested / "1M03.mid", 60)
    write_tone(nested / "alt" / "1M03 Harp.wav", seconds=0.2)
    song = root / "Frets" / "Song"  # a song folder whose audio is named otherwise
    solo(song / "notes.mid", 72)
    write_tone(song / "guitar.wav", seconds=0.2)
    write_tone(song / "song.wav", seconds=0.2)
    assert units(root) == [
        ("1M01 Opening", "cue", "1M01 Opening"),
        ("1M02 Loose", "cue", "1M02 Loose"),
        ("1M03 Nested", "cue", "1M03 Nested"),
        ("Frets/Song", "cue", "Song"),
    ]


def test_changed_midi_file_recomputes_only_its_unit(tmp_path):
    lakh = tmp_path / "lmd" / "0"
    for i in range(5):
        solo(lakh / f"song{i}.mid", 60 + i)
    url = f"sqlite:///{tmp_path}/lakh.sqlite"
    first = ingest(tmp_path / "lmd", SR, database_url=url)
    assert first.ok, first.problems
    assert (first.cues_found, first.cues_ingested, first.notes) == (5, 5, 10)
    assert not first.warnings  # a MIDI file on its own is the layout, not a missing print

    def stored():
        engine = make_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.rel_path, c.name, c.id, c.ingested_at, COUNT(n.id) FROM cues c "
                    "JOIN midi_files f ON f.cue_id = c.id JOIN midi_tracks t ON t.midi_file_id "
                    "= f.id JOIN midi_notes n ON n.track_id = t.id GROUP BY c.id ORDER BY c.rel_path"
                )
            ).all()
        engine.dispose()
        return rows

    before = stored()
    assert [(r[0], r[1], r[4]) for r in before] == [
        (f"0/song{i}.mid", f"song{i}", 2) for i in range(5)
    ]
    write_midi(
        lakh / "song3.mid",
        [note_track("Piano", [(0, 240, 70), (480, 720, 72), (960, 1200, 74)])],
    )
    second = ingest(tmp_path / "lmd", SR, database_url=url)
    assert second.ok, second.problems
    assert (second.cues_ingested, second.cues_skipped, second.notes) == (1, 4, 3)
    after = stored()
    assert [r[4] for r in after] == [2, 2, 2, 3, 2]
    untouched = [0, 1, 2, 4]
    assert [after[i][2:4] for i in untouched] == [before[i][2:4] for i in untouched]
    assert after[3][3] != before[3][3]


def test_unit_fingerprint_covers_its_own_files_only(tmp_path):
    folder = tmp_path / "perf"
    solo(folder / "a.mid", 60)
    solo(folder / "b.mid", 62)
    write_tone(folder / "a.wav", seconds=0.2)
    before = {c.rel_path: stat_fingerprint(c) for c in scan(tmp_path).cues}
    write_tone(folder / "a.wav", seconds=0.3)
    after = {c.rel_path: stat_fingerprint(c) for c in scan(tmp_path).cues}
    assert after["perf/b.mid"] == before["perf/b.mid"]
    assert after["perf/a.mid"] != before["perf/a.mid"]


def test_dry_run_shows_the_units(make_cue, tmp_path, capsys):
    root = tmp_path / "cues"
    make_cue("1M01 Opening")
    solo(root / "perf" / "x.mid", 60)
    write_tone(root / "perf" / "x.wav", seconds=0.2)
    solo(root / "perf" / "y.mid", 62)
    args = [str(root), str(SR), "--database-url", f"sqlite:///{tmp_path}/none.sqlite", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "  [ingest] 1M01 Opening\n" in out
    assert "  [ingest] perf/x.mid (performance: MIDI file + same-named audio)\n" in out
    assert "      MIDI  x.mid\n      stem  x (mono): x.wav\n" in out
    assert "  [ingest] perf/y.mid (MIDI file on its own)\n      MIDI  y.mid\n" in out
    assert not (tmp_path / "none.sqlite").exists()


def _real(name):
    path = SHARED_REAL / name
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path


def test_real_maestro_year_folder_is_one_unit_per_performance():
    root = _real("maestro")
    (unit,) = scan(root).cues
    (midi,) = unit.midi_files
    assert unit.kind == "performance" and unit.rel_path == f"2018/{midi.name}"
    assert midi.suffix == ".midi" and [p.name for p in unit.audio_files] == [f"{midi.stem}.wav"]


def test_real_groove_midi_file_without_audio_is_its_own_unit():
    root = _real("groove_midi")
    assert units(root) == [
        (
            "drummer1/eval_session/1_funk-groove1_138_beat_4-4.mid",
            "file",
            "1_funk-groove1_138_beat_4-4",
        )
    ]


def test_real_slakh_tracks_stay_one_cue():
    root = _real("slakh")
    found = scan(root).cues
    assert [(c.rel_path, c.kind) for c in found] == [
        ("babyslakh_16k/Track00001", "cue"),
        ("babyslakh_16k/Track00007", "cue"),
        ("slakh2100_flac_redux/train/Track00001", "cue"),
    ]
    track = found[0]
    assert len(track.midi_files) == 11  # all_src.mid + MIDI/S00..S10 but S06
    assert [p.name for p in track.audio_files if p.parent == track.path] == ["mix.wav"]
    assert len(track.audio_files) == 11


def test_real_units_ingest_with_unique_rel_paths(tmp_path):
    root = _real("maestro").parent
    if not (root / "groove_midi").is_dir():
        pytest.skip(f"{root / 'groove_midi'} is not present")
    tree = tmp_path / "real"
    tree.mkdir()
    for name in ("maestro", "groove_midi"):
        (tree / name).symlink_to(root / name)
    url = f"sqlite:///{tmp_path}/real.sqlite"
    summary = ingest(tree, SR, database_url=url)
    assert summary.ok, summary.problems
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT rel_path, midi_file_count, stem_count FROM cues")).all()
    engine.dispose()
    assert sorted((r[0].split("/")[0], r[1], r[2]) for r in rows) == [
        ("groove_midi", 1, 0),
        ("maestro", 1, 1),
    ]
    again = ingest(tree, SR, database_url=url)
    assert (again.cues_ingested, again.cues_skipped) == (0, 2)
