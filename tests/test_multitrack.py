"""``export --format multitrack``: Slakh's layout, read back with mido, soundfile and yaml and
compared with the database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import yaml
from sqlalchemy import text

from kmidi_ingest import ingest
from kmidi_ingest.cli import main
from kmidi_ingest.db import make_engine
from kmidi_ingest.midi import read_midi
from tests.conftest import write_tone
from tests.fixtures.make_midi_fixtures import HERE

US = 1e-6


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Three cues: the DAW cue of ``make_cue`` (tempo change, multi-mono strings, 5.1 mix), a
    format-0 file whose three parts (piano, bass, drums) have a stem each, and an SMPTE-timed
    (29.97 fps) piano."""
    from tests.conftest import make_cue as make_cue_fixture

    root = tmp_path_factory.mktemp("multitrack")
    make_cue_fixture.__wrapped__(root)("1M01 Opening", root=root / "cues")
    band = root / "cues" / "2M01 Band"
    (band / "MIDI").mkdir(parents=True)
    shutil.copy(HERE / "format0_three_parts.mid", band / "MIDI" / "band.mid")
    for stem, freq in (("Piano", 440), ("Bass", 110), ("Drums", 1000)):
        write_tone(band / "Audio Files" / f"2M01 {stem}.wav", freq=freq, seconds=2)
    smpte = root / "cues" / "3M01 Smpte"
    (smpte / "MIDI").mkdir(parents=True)
    shutil.copy(HERE / "smpte_2997.mid", smpte / "MIDI" / "smpte.mid")
    write_tone(smpte / "Audio Files" / "3M01 Piano.wav", seconds=2)
    url = f"sqlite:///{root}/db.sqlite"
    assert ingest(root / "cues", 16000, database_url=url).ok
    out = root / "dataset"
    assert main(["export", str(out), "--format", "multitrack", "--database-url", url]) == 0
    return root, url, out


def _db(url: str, sql: str, **params) -> list[dict]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def _mido_notes(path: Path) -> list[tuple[int, float, float]]:
    """``(pitch, start_s, end_s)`` as mido times the file (its own tempo handling, FIFO pairs)."""
    now = 0.0
    open_notes: dict[int, list[float]] = {}
    out = []
    for msg in mido.MidiFile(path):  # merged tracks, ``time`` in seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity:
            open_notes.setdefault(msg.note, []).append(now)
        elif msg.type in ("note_on", "note_off"):
            out.append((msg.note, open_notes[msg.note].pop(0), now))
    return sorted(out)


def test_layout_is_slakh_s(exported):
    _, _, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["1M01 Opening", "2M01 Band", "3M01 Smpte"]
    opening = out / "1M01 Opening"
    assert sorted(p.relative_to(opening).as_posix() for p in opening.rglob("*")) == [
        "MIDI",
        "MIDI/S00.mid",
        "MIDI/S01.mid",
        "all_src.mid",
        "metadata.yaml",
        "mix.wav",
        "stems",
        "stems/S00.wav",
        "stems/S01.wav",
    ]
    manifest = json.loads(out.with_name("dataset.manifest.json").read_text())
    assert manifest["export_format"] == "multitrack"
    assert manifest["counts"] == {"cues": 3, "stems": 6, "parts": 6, "notes": 11, "final_mixes": 1}


def test_midi_notes_sound_at_the_database_seconds(exported):
    root, url, out = exported
    for cue in ("1M01 Opening", "2M01 Band", "3M01 Smpte"):
        meta = yaml.safe_load((out / cue / "metadata.yaml").read_text())
        assert (meta["audio_dir"], meta["midi_dir"]) == ("stems", "MIDI")
        for sid, stem in meta["stems"].items():
            (part,) = stem["parts"]
            rows = _db(
                url,
                "SELECT n.pitch, CAST(n.start_us AS DOUBLE PRECISION) / 1000000 AS start_s, "
                "CAST(n.end_us AS DOUBLE PRECISION) / 1000000 AS end_s, "
                "n.start_tick, t.program, t.is_drum "
                "FROM midi_notes n JOIN midi_tracks t ON t.id = n.track_id "
                "JOIN midi_files f ON f.id = t.midi_file_id JOIN cues c ON c.id = f.cue_id "
                "WHERE c.name = :c AND f.rel_path = :f AND t.part_index = :p",
                c=cue,
                f=part["source_midi_file"],
                p=part["source_part_index"],
            )
            assert len(rows) == part["note_count"] > 0
            expected = sorted((r["pitch"], r["start_s"], r["end_s"]) for r in rows)
            got = _mido_notes(out / cue / "MIDI" / f"{sid}.mid")
            assert [g[0] for g in got] == [e[0] for e in expected]
            assert np.allclose([g[1:] for g in got], [e[1:] for e in expected], atol=US)
            # Our own reader: one part, same ticks, same seconds, Slakh's channel (9 for drums).
            (written,) = read_midi(out / cue / "MIDI" / f"{sid}.mid").instrument_tracks
            assert sorted(written.notes["start_tick"].tolist()) == sorted(
                r["start_tick"] for r in rows
            )
            assert sorted(written.notes["start_s"].tolist()) == pytest.approx(
                sorted(r["start_s"] for r in rows), abs=US
            )
            assert written.channel == (9 if rows[0]["is_drum"] else 0)
            assert written.program == rows[0]["program"]
            assert written.part_name == part["part_name"]


def test_metadata_says_what_slakh_says(exported):
    _, url, out = exported
    band = yaml.safe_load((out / "2M01 Band" / "metadata.yaml").read_text())["stems"]
    slakh_keys = {
        "audio_rendered",
        "inst_class",
        "is_drum",
        "midi_program_name",
        "midi_saved",
        "plugin_name",
        "program_num",
    }
    assert all(slakh_keys <= set(s) for s in band.values())
    assert {
        sid: (s["plugin_name"], s["inst_class"], s["program_num"], s["is_drum"])
        for sid, s in band.items()
    } == {
        "S00": ("Piano", "Piano", 4, False),
        "S01": ("Bass", "Bass", 33, False),
        "S02": ("Drums", "Drums", 128, True),
    }
    assert band["S00"]["midi_program_name"] == "Electric Piano 1"
    assert [s["parts"][0]["source_channel"] for s in band.values()] == [0, 1, 9]
    matches = _db(
        url,
        "SELECT a.name, m.method, m.score, m.onset_correlation, m.lag_s, m.verified "
        "FROM track_matches m JOIN audio_files a ON a.id = m.audio_file_id "
        "JOIN cues c ON c.id = a.cue_id WHERE c.name = '2M01 Band'",
    )
    for row in matches:
        (stem,) = [s for s in band.values() if s["plugin_name"] == row["name"]]
        part = stem["parts"][0]
        assert (part["match_method"], part["match_score"], part["verified"]) == (
            row["method"],
            row["score"],
            row["verified"],
        )
        assert (part["onset_correlation"], part["lag_s"]) == (
            row["onset_correlation"],
            row["lag_s"],
        )
    opening = yaml.safe_load((out / "1M01 Opening" / "metadata.yaml").read_text())
    assert [(s["plugin_name"], s["program_num"]) for s in opening["stems"].values()] == [
        ("Strings", 48),
        ("Brass", 61),
    ]
    assert opening["mix_rendered"] is True


def test_stems_and_mix_hold_the_printed_audio(exported):
    root, _, out = exported
    src = root / "cues" / "1M01 Opening" / "Audio Files"
    strings, rate = sf.read(out / "1M01 Opening" / "stems" / "S00.wav", always_2d=True)
    left, right = sf.read(src / "1M01 Strings.L.wav")[0], sf.read(src / "1M01 Strings.R.wav")[0]
    assert rate == 22050 and strings.shape == (len(left), 2)
    assert np.array_equal(strings[:, 0], left) and np.array_equal(strings[:, 1], right)
    assert sf.info(out / "1M01 Opening" / "stems" / "S00.wav").subtype == "PCM_16"
    assert (out / "1M01 Opening" / "stems" / "S01.wav").read_bytes() == (
        src / "1M01 Brass.wav"
    ).read_bytes()
    mix, _ = sf.read(out / "1M01 Opening" / "mix.wav", always_2d=True)
    assert mix.shape[1] == 6
    lfe = sf.read(src / "1M01 6mx.LFE.wav")[0]
    assert np.array_equal(mix[:, 3], lfe)  # L R C LFE Ls Rs, the stored order
    assert (out / "1M01 Opening" / "all_src.mid").read_bytes() == (
        root / "cues" / "1M01 Opening" / "MIDI" / "1M01 Opening.mid"
    ).read_bytes()


def test_existing_output_is_kept_unless_overwrite(exported, capsys):
    root, url, out = exported
    args = ["export", str(out), "--format", "multitrack", "--database-url", url]
    assert main(args) != 0
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--category", "Drums"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["2M01 Band"]
    assert list(yaml.safe_load((out / "2M01 Band" / "metadata.yaml").read_text())["stems"]) == [
        "S00"
    ]
    stranger = root / "notes"
    stranger.mkdir()
    stranger.with_name("notes.manifest.json").write_text('{"export_format": "jsonl"}')
    other = [
        "export",
        str(stranger),
        "--format",
        "multitrack",
        "--overwrite",
        "--database-url",
        url,
    ]
    assert main(other) != 0
    assert "not a multitrack export" in capsys.readouterr().err
    assert stranger.is_dir()
