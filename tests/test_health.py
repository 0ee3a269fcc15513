"""``check``: every MIDI and audio file decoded; broken ones listed and quarantined."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from kmidi_ingest.cli import main
from kmidi_ingest.health import check_audio, check_tree, quarantine
from tests.conftest import EXAMPLES, write_tone

MIDI_REL = "Reel 1/1M02 Tension/MIDI/1M02 Tension.mid"
WAV_REL = "Reel 2/2M03 Chase/Audio Files/2M03 Low Perc.wav"


@pytest.fixture
def damaged_tree(tmp_path: Path) -> Path:
    """The example cues with one truncated MIDI file and one WAV whose audio bytes are garbage."""
    root = tmp_path / "cues"
    shutil.copytree(EXAMPLES, root)
    midi = root / MIDI_REL
    midi.write_bytes(midi.read_bytes()[:40])
    wav = root / WAV_REL
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + b"\x00" * 64)
    return root


def test_check_lists_exactly_the_two_broken_files_and_quarantines_them(
    damaged_tree, tmp_path, capsys
):
    quarantine_dir = damaged_tree / "_quarantine"  # inside the tree: never checked itself
    code = main(["check", str(damaged_tree), "--quarantine", str(quarantine_dir), "--json"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert [(b["rel_path"], b["kind"]) for b in report["broken"]] == [
        (MIDI_REL, "midi"),
        (WAV_REL, "audio"),
    ]
    assert report["midi_checked"] == 4 and report["audio_checked"] == 31
    assert "truncated" in report["broken"][0]["reason"]
    assert "cannot decode audio" in report["broken"][1]["reason"]

    for rel in (MIDI_REL, WAV_REL):
        assert not (damaged_tree / rel).exists()
        assert (quarantine_dir / rel).is_file()
    manifest = json.loads(Path(report["quarantine"]["manifest_json"]).read_text())
    assert [(Path(r["source"]), Path(r["destination"])) for r in manifest["moved"]] == [
        (damaged_tree / MIDI_REL, quarantine_dir / MIDI_REL),
        (damaged_tree / WAV_REL, quarantine_dir / WAV_REL),
    ]
    with open(report["quarantine"]["manifest_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["destination"] for r in rows] == [
        str(quarantine_dir / MIDI_REL),
        str(quarantine_dir / WAV_REL),
    ]

    # The tree is healthy now; the quarantine folder inside it is not checked itself.
    assert main(["check", str(damaged_tree), "--quarantine", str(quarantine_dir)]) == 0
    assert "0 broken" in capsys.readouterr().out
    assert main(["check", str(damaged_tree)]) == 1  # without --quarantine it is just a folder


def test_quarantine_never_overwrites(damaged_tree, tmp_path):
    dest = tmp_path / "q"
    existing = dest / WAV_REL
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"kept")
    result = quarantine(check_tree(damaged_tree), dest)
    assert existing.read_bytes() == b"kept"
    moved = {m.source.name: m.destination for m in result.moves}
    assert moved["2M03 Low Perc.wav"] == existing.with_name("2M03 Low Perc (1).wav")
    assert moved["2M03 Low Perc.wav"].read_bytes().startswith(b"RIFF")
    # A second quarantine of a re-broken file gets a new manifest, the first one is kept.
    (damaged_tree / MIDI_REL).write_bytes(b"MThd")
    second = quarantine(check_tree(damaged_tree), dest)
    assert second.manifest_json != result.manifest_json and result.manifest_json.is_file()
    assert [m.destination.name for m in second.moves] == ["1M02 Tension (1).mid"]


def test_truncated_audio_data_is_found(tmp_path):
    path = write_tone(tmp_path / "tone.wav", seconds=1.0)
    assert check_audio(path) is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still promises the full length
    assert check_audio(path) == "truncated: the header promises 44100 bytes, the file holds 22028"


def test_check_usage_errors(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing")]) == 2
    assert "root folder does not exist" in capsys.readouterr().err
    assert main(["check", str(tmp_path), "--quarantine", str(tmp_path)]) == 2
    assert main(["check"]) == 2
