"""Hostile trees: each oddity is a recorded problem and the batch goes on. Also ``--dry-run``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from kmidi_ingest import discover, ingest
from kmidi_ingest.cli import main
from tests.conftest import run_as_nobody, write_tone
from tests.dbutil import counts, scalar

SR = 8000


def run(root: Path, url: str, **kwargs):
    return ingest(root, SR, database_url=url, workers=1, **kwargs)


def problems(summary) -> list[tuple[str, str, str]]:
    return sorted((p.error_type, p.severity, Path(p.path or "").name) for p in summary.problems)


def test_symlink_loop_is_reported_once_and_a_linked_cue_is_followed(make_cue, tmp_path):
    root = tmp_path / "cues"
    make_cue("1M01 Opening", root=root / "Reel 1")
    elsewhere = make_cue("2M01 Elsewhere", root=tmp_path / "outside")
    (root / "Reel 1" / "loop").symlink_to(root, target_is_directory=True)
    (root / "Reel 2").mkdir()
    (root / "Reel 2" / "2M01 Elsewhere").symlink_to(elsewhere, target_is_directory=True)
    scan = discover.scan(root)
    assert [c.rel_path for c in scan.cues] == ["Reel 1/1M01 Opening", "Reel 2/2M01 Elsewhere"]
    assert [(p.error_type, p.severity, Path(p.path).name) for p in scan.problems] == [
        ("SymlinkLoop", "warning", "loop")
    ]
    summary = run(root, f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert summary.ok and summary.cues_ingested == 2
    assert problems(summary) == [("SymlinkLoop", "warning", "loop")]


def test_unreadable_folder_is_an_error_and_the_batch_goes_on(make_cue, tmp_path, monkeypatch):
    root = tmp_path / "cues"
    make_cue("1M01 Opening", root=root / "Reel 1")
    make_cue("2M01 Hidden", root=root / "Reel 2")
    cue3 = make_cue("3M01 Half", root=root / "Reel 3")
    blocked = {str(root / "Reel 2"), str(cue3 / "Audio Files")}
    real_scandir = os.scandir

    def scandir(path="."):
        # An open folder's fd passes (the run's staging folder is removed through one).
        if not isinstance(path, int) and os.fspath(path) in blocked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    summary = run(root, url)
    monkeypatch.undo()
    assert (summary.cues_found, summary.cues_ingested, summary.ok) == (2, 2, False)
    assert problems(summary) == [
        ("MidiWithoutAudio", "warning", "3M01 Half"),
        ("UnreadableFolder", "error", "Audio Files"),
        ("UnreadableFolder", "error", "Reel 2"),
    ]
    assert scalar(url, "SELECT COUNT(*) FROM ingest_errors WHERE error_type = 'UnreadableFolder'")
    assert scalar(url, "SELECT message FROM ingest_errors WHERE cue_path IS NULL") == (
        "cannot read folder: Permission denied"
    )


def test_unreadable_folder_for_real_as_an_unprivileged_user(make_cue):
    """chmod 000 does not stop root, so when the suite runs as root the walk runs in a forked
    child that has dropped to ``nobody``."""
    base = Path(tempfile.mkdtemp(prefix="kmidi-perm-"))
    try:
        base.chmod(0o755)
        make_cue("1M01 Open", root=base / "cues")
        make_cue("2M01 Closed", root=base / "cues" / "locked")
        (base / "cues" / "locked").chmod(0o000)

        def walk() -> str:
            found = discover.scan(base / "cues")
            return json.dumps(
                [[c.rel_path for c in found.cues], [p.error_type for p in found.problems]]
            )

        answer = run_as_nobody(walk)
        assert json.loads(answer) == [["1M01 Open"], ["UnreadableFolder"]]
    finally:
        (base / "cues" / "locked").chmod(0o755)
        shutil.rmtree(base)


def test_files_vanishing_mid_run_fail_only_their_cue_and_are_redone_later(make_cue, tmp_path):
    root = tmp_path / "cues"
    make_cue("1M01 Opening", root=root)
    second = make_cue("1M02 Gone", root=root)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    def progress(cue: str, outcome: str) -> None:
        if cue == "1M01 Opening":  # the second cue was found but is not computed yet
            (second / "MIDI" / "1M02 Gone.mid").unlink()
            shutil.rmtree(second / "Audio Files")

    summary = run(root, url, progress=progress)
    assert summary.cues_ingested == 2 and not summary.ok
    vanished = [p for p in summary.errors if p.cue == "1M02 Gone"]
    assert {p.error_type for p in vanished} >= {"UnreadableFile", "MidiError", "AudioError"}
    assert all("No such file" in p.message for p in vanished if p.error_type != "MidiError")
    assert scalar(url, "SELECT COUNT(*) FROM midi_files") == 1
    # The next run sees the cue changed (fewer files) and replaces it with what is there now.
    again = run(root, url)
    assert (again.cues_ingested, again.cues_skipped) == (1, 1)
    assert scalar(url, "SELECT COUNT(*) FROM cues") == 2


def test_odd_names_spaces_quotes_newlines_and_non_utf8_bytes(make_cue, tmp_path, capsys):
    root = tmp_path / "cues"
    odd = '1M01 it\'s "odd"\nname'
    cue = make_cue(odd, root=root)
    latin = os.fsdecode(b"1M01 Fl\xfbte.wav")  # not UTF-8: a lone surrogate in Python
    write_tone(cue / "Audio Files" / "flute.wav", freq=880)
    os.rename(cue / "Audio Files" / "flute.wav", cue / "Audio Files" / latin)
    plain = make_cue("1M02 Plain", root=root)
    os.rename(plain, root / os.fsdecode(b"1M02 Caf\xe9"))  # a non-UTF-8 cue folder
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    summary = run(root, url)
    assert summary.ok, summary.problems
    assert (summary.cues_ingested, summary.stems) == (2, 5)
    assert scalar(url, "SELECT group_concat(rel_path, '|') FROM cues ORDER BY rel_path") == (
        f"{odd}|1M02 Caf\\xe9"
    )
    assert scalar(url, "SELECT name FROM audio_files WHERE name LIKE 'Fl%'") == "Fl\\xfbte"
    assert scalar(url, "SELECT file_name FROM audio_channels WHERE file_name LIKE '%Fl%'") == (
        "1M01 Fl\\xfbte.wav"
    )
    again = run(root, url)  # stored under escaped names, still recognised as the same cue
    assert (again.cues_ingested, again.cues_skipped) == (0, 2)
    assert main([str(root), str(SR), "--database-url", url, "--force"]) == 0
    assert "2 found, 2 ingested" in capsys.readouterr().out
    assert main([str(root), str(SR), "--database-url", url, "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(c["rel_path"] for c in report["cues"]) == [odd, "1M02 Caf\\xe9"]
    assert counts(url)["cues"] == 2


def test_zero_byte_files_are_errors_and_the_rest_of_the_cue_is_stored(make_cue, tmp_path):
    root = tmp_path / "cues"
    cue = make_cue("1M01 Opening", root=root)
    (cue / "MIDI" / "empty.mid").touch()
    (cue / "Audio Files" / "1M01 Harp.wav").touch()
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    summary = run(root, url)
    assert problems(summary) == [
        ("AudioError", "error", "1M01 Harp.wav"),  # judged by the audio stage: its stem fails
        ("EmptyFile", "error", "empty.mid"),
    ]
    assert (summary.cues_ingested, summary.midi_files, summary.stems) == (1, 1, 2)
    assert scalar(url, "SELECT error_count FROM cues") == 2
    assert scalar(url, "SELECT COUNT(*) FROM ingest_errors WHERE message LIKE '%0 bytes%'") == 2


def test_cue_with_midi_but_no_audio_and_cue_with_audio_but_no_midi(make_cue, tmp_path):
    root = tmp_path / "cues"
    midi_only = make_cue("1M01 Sketch", root=root)
    shutil.rmtree(midi_only / "Audio Files")
    audio_only = make_cue("1M02 Printed", root=root)
    shutil.rmtree(audio_only / "MIDI")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    summary = run(root, url)
    assert summary.ok and summary.cues_ingested == 2
    assert problems(summary) == [
        ("AudioWithoutMidi", "warning", "1M02 Printed"),
        ("MidiWithoutAudio", "warning", "1M01 Sketch"),
    ]
    assert (summary.notes, summary.stems, summary.final_mixes) == (5, 2, 1)


def test_dry_run_lists_everything_and_writes_nothing(make_cue, tmp_path, capsys):
    root = tmp_path / "cues"
    make_cue("1M01 Opening", root=root)
    second = make_cue("1M02 Tension", root=root)
    (second / "Audio Files" / "1M02 Harp.wav").touch()
    db = tmp_path / "never.sqlite"
    args = [str(root), str(SR), "--database-url", f"sqlite:///{db}", "--dry-run"]
    # A dry run opens no audio: an empty channel file is a stem in the plan; ingest and
    # `check` find it (the audio stage's soundness rule).
    assert main(args) == 0
    out = capsys.readouterr().out
    assert not db.exists() and not list(tmp_path.glob("never.sqlite*"))
    assert "2 cues: 2 to ingest, 0 to skip" in out
    assert "[ingest] 1M01 Opening" in out and "MIDI  MIDI/1M01 Opening.mid" in out
    assert (
        "stem  Strings (L,R): Audio Files/1M01 Strings.L.wav, Audio Files/1M01 Strings.R.wav" in out
    )
    assert "stem  Brass (mono): Audio Files/1M01 Brass.wav" in out
    assert "mix   6mx (L,R,C,LFE,Ls,Rs)" in out
    assert "stem  Harp (mono): Audio Files/1M02 Harp.wav" in out and "ERROR" not in out

    (second / "Audio Files" / "1M02 Harp.wav").unlink()
    run(root, f"sqlite:///{db}")
    (second / "Audio Files" / "1M02 Brass.wav").unlink()
    runs = scalar(f"sqlite:///{db}", "SELECT COUNT(*) FROM ingest_runs")
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(c["rel_path"], c["action"]) for c in report["cues"]] == [
        ("1M01 Opening", "skip"),
        ("1M02 Tension", "update"),
    ]
    assert (report["to_ingest"], report["to_skip"], report["error_count"]) == (1, 1, 0)
    assert [s["name"] for s in report["cues"][1]["stems"]] == ["Strings"]
    assert scalar(f"sqlite:///{db}", "SELECT COUNT(*) FROM ingest_runs") == runs
