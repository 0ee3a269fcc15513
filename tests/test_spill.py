"""A cue's MIDI data handed to the writer through a temporary file (``kmidi_ingest.spill``): read
back equal, written to the same rows as without it, and removed afterwards."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest

from kmidi_ingest import discover, ingest, spill
from kmidi_ingest.batch import runner
from kmidi_ingest.batch.compute import CueSpec, process_cue
from kmidi_ingest.batch.runner import spill_threshold
from kmidi_ingest.config import Settings
from kmidi_ingest.errors import ConfigError
from tests.conftest import SHARED_MIDI
from tests.dbutil import CUE_TABLES, content

SR = 22050


def _collection(root: Path, count: int) -> Path:
    """``count`` real MIDI files of ../shared/data/midi in two MIDI-only cue folders."""
    sources = sorted(p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not sources:
        pytest.skip("../shared/data/midi is not present")
    for i, source in enumerate(sources[:count]):
        folder = root / f"{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / f"{i:03d}.mid")
    return root


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("kmidi-midi-*")}


def test_spilled_midi_reads_back_equal_and_is_removed(tmp_path):
    root = _collection(tmp_path / "lmd", 6)
    cue = discover.scan(root).cues[0]
    # one unit per lone MIDI file: give the first unit the files of its folder
    cue = discover.CueSource(
        path=cue.path.parent,
        rel_path="0",
        name="0",
        midi_files=tuple(sorted((root / "0").glob("*.mid"))),
        audio_files=(),
    )
    result = process_cue(cue, CueSpec(sample_rate_hz=SR), stat_fingerprint="x")
    spilled = spill.spill(result, directory=str(tmp_path))
    midi = spilled.midi
    assert isinstance(midi, spill.SpilledMidi) and Path(midi.path).is_file()
    assert len(midi) == len(result.midi) == 3
    assert spill.totals(midi)[1] > 0  # notes
    for got, want in zip(midi, result.midi, strict=True):
        assert got.path == want.path and got.sha256 == want.sha256
        for a, b in zip(got.tracks, want.tracks, strict=True):
            assert a.name == b.name and a.notes.tobytes() == b.notes.tobytes()
    assert midi[-1].sha256 == result.midi[-1].sha256
    assert [d.sha256 for d in midi[1:]] == [d.sha256 for d in result.midi[1:]]
    assert spill.totals(midi) == spill.totals(result.midi)
    assert spill.midi_nbytes(result) > 0
    spill.discard(spilled)
    assert not Path(midi.path).exists()
    spill.discard(result)  # an unspilled result: nothing to do


def test_spilled_cues_are_written_like_kept_ones(tmp_path, monkeypatch):
    root = _collection(tmp_path / "lmd", 8)
    before = _leftovers()
    kept, spilled = f"sqlite:///{tmp_path}/kept.sqlite", f"sqlite:///{tmp_path}/spilled.sqlite"
    summary = ingest(root, SR, database_url=kept, workers=2, writer_memory_mb=10**6)
    assert summary.ok and summary.cues_ingested == 8 and summary.notes > 1000
    arrived: list[bool] = []  # per unit the writer received: through a file?
    real_discard = spill.discard

    def discard_and_count(result):
        arrived.append(isinstance(getattr(result, "midi", None), spill.SpilledMidi))
        real_discard(result)

    # A threshold of 0 bytes: every unit comes through a temporary file. The spec carrying the
    # threshold is built here and pickled to the workers, which fork with this module patched.
    monkeypatch.setattr(runner, "spill_threshold", lambda *_: 0)
    # Spilling is the path of the writers that take no staging file (PostgreSQL's): no staging.
    monkeypatch.setattr(runner, "staging_folder", lambda *_: contextlib.nullcontext())
    monkeypatch.setattr(spill, "discard", discard_and_count)
    summary = ingest(root, SR, database_url=spilled, workers=2)
    assert summary.ok and summary.cues_ingested == 8
    assert arrived == [True] * 8
    assert content(kept, CUE_TABLES) == content(spilled, CUE_TABLES)
    assert _leftovers() <= before


def test_spill_threshold_shares_the_writer_budget_among_the_waiting_results():
    # 2 workers: up to 4 results wait and 2 are being written (PostgreSQL's two writer threads)
    assert spill_threshold(250, 2) == 250 * 2**20 // 6
    with pytest.raises(ConfigError, match="KMIDI_WRITER_MEMORY_MB"):
        Settings(writer_memory_mb=0).validate()
    with pytest.raises(ConfigError) as err:
        ingest(".", SR, writer_memory_mb=0)
    assert str(err.value) == "writer_memory_mb must be at least 1, got 0"
