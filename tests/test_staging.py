"""Workers hand the SQLite writer their cue's MIDI rows as a staging database
(``kmidi_ingest.staging``): the database it gives is the direct path's, row by row, ids
included, through new cues, replaced cues and a second run; the files go away."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmidi_ingest import discover, ingest, spill, staging
from kmidi_ingest.batch import runner
from kmidi_ingest.batch.compute import CueSpec, hand_off, process_cue
from tests.conftest import SHARED_MIDI
from tests.dbutil import CUE_TABLES
from tests.test_batch import make_corpus

SR = 8000
# Every table a cue writes, and the problem rows; all columns but the wall-clock ones.
TABLES = [*CUE_TABLES, "ingest_errors", "ingest_runs"]
CLOCK = {"ingested_at", "created_at", "started_at", "finished_at", "elapsed_s", "parameters_json"}


def _rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of :data:`TABLES` in key order, every column but the clock's."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        out = {}
        for table in TABLES:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            keys = [r[1] for r in sorted(conn.execute(f"PRAGMA table_info({table})"),
                                         key=lambda r: r[5]) if r[5]] or ["rowid"]  # fmt: skip
            kept = ", ".join(c for c in cols if c not in CLOCK)
            out[table] = conn.execute(
                f"SELECT {kept} FROM {table} ORDER BY {', '.join(keys)}"
            ).fetchall()
    return out


def _corpus(root: Path) -> Path:
    """Audio cues (stems, a mix, matches) beside real MIDI files: three in one cue folder, the
    others one unit each (CC, pitch bends, markers, SMPTE and format-0 files among them)."""
    make_corpus(root / "film", 3)
    broken = next((root / "film").rglob("*.mid"))
    broken.write_bytes(broken.read_bytes()[:40])  # a cue whose only MIDI file is truncated
    sources = sorted(p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not sources:
        pytest.skip("../shared/data/midi is not present")
    for i, source in enumerate(sources[::6]):
        folder = root / "lmd" / f"{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / f"{i:03d}.mid")
    return root


@contextlib.contextmanager
def _direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Runs inside write the MIDI rows the direct way (no staging folder)."""

    @contextlib.contextmanager
    def no_folder(*_args: object) -> Iterator[None]:
        yield None

    with monkeypatch.context() as patch:
        patch.setattr(runner, "staging_folder", no_folder)
        yield


def _run(root: Path, db: Path, **kwargs) -> None:
    summary = ingest(root, SR, database_url=f"sqlite:///{db}", **kwargs)
    assert [e.error_type for e in summary.errors] in ([], ["MidiError"]), summary.errors


@pytest.mark.parametrize("workers", [1, 2])
def test_staged_rows_are_the_direct_rows_id_for_id(tmp_path, monkeypatch, workers):
    pristine = _corpus(tmp_path / "pristine")
    root = tmp_path / "in"

    def change() -> None:  # one file changed (its cue is replaced), one cue added
        lmd = root / "lmd"
        shutil.copy2(lmd / "0" / "003.mid", lmd / "0" / "000.mid")
        (lmd / "3").mkdir()
        shutil.copy2(lmd / "1" / "004.mid", lmd / "3" / "new.mid")

    databases = {"direct": tmp_path / "direct.sqlite", "staged": tmp_path / "staged.sqlite"}
    handed: dict[str, list[bool]] = {"direct": [], "staged": []}  # per cue written: staged?
    real_discard = spill.discard
    for way, db in databases.items():
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(pristine, root)  # copy2: the same mtimes, so the same fingerprints

        def discard(result: object, way: str = way) -> None:
            handed[way].append(isinstance(getattr(result, "midi", None), staging.StagedMidi))
            real_discard(result)

        monkeypatch.setattr(spill, "discard", discard)
        with _direct(monkeypatch) if way == "direct" else contextlib.nullcontext():
            _run(root, db, workers=workers)
            _run(root, db, workers=workers, force=True)  # every cue replaced: ids move on
            change()
            _run(root, db, workers=workers)
    assert not any(handed["direct"]) and handed["staged"] and all(handed["staged"])
    direct, staged = _rows(databases["direct"]), _rows(databases["staged"])
    assert direct["midi_notes"] and direct["midi_cc"] and direct["track_matches"]
    assert direct["markers"] and direct["midi_pitch_bends"] and direct["audio_files"]
    for table in TABLES:
        assert staged[table] == direct[table], table


def test_a_staged_cue_is_a_file_the_writer_removes(tmp_path):
    root = _corpus(tmp_path / "in")
    cue = discover.scan(root / "lmd").cues[0]
    spec = CueSpec(sample_rate_hz=SR, stage_dir=str(tmp_path))
    result = process_cue(cue, spec, stat_fingerprint="x")
    handed = hand_off(result, spec)
    midi = handed.midi
    assert isinstance(midi, staging.StagedMidi) and Path(midi.path).is_file()
    assert spill.totals(midi) == spill.totals(result.midi)
    assert len(midi) == len(result.midi)
    with contextlib.closing(sqlite3.connect(midi.path)) as conn:
        notes = conn.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM midi_notes").fetchone()
        indexes = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'")
        assert indexes.fetchone() == (0,)
    total = spill.totals(result.midi)[1]
    assert notes == (total, 1, total)
    with pytest.raises(TypeError, match="staged as rows"):
        midi[0]
    spill.discard(handed)
    assert not Path(midi.path).exists()


def test_no_staging_file_outlives_a_run(tmp_path, monkeypatch):
    root = _corpus(tmp_path / "in")
    # a temporary folder of this test's own: other tests' runs stage beside it in parallel
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _run(root / "lmd", tmp_path / "db2.sqlite", workers=2)  # staged by the pool's workers
    assert list(scratch.iterdir()) == []
    staged: list[Path] = []
    stage = staging.stage

    def stage_and_record(result, *, directory):
        staged.append(Path(directory))
        return stage(result, directory=directory)

    monkeypatch.setattr(staging, "stage", stage_and_record)
    _run(root / "lmd", tmp_path / "db.sqlite", workers=1)
    assert staged and {p.parent for p in staged} == {scratch}  # the run staged, in there
    assert list(scratch.iterdir()) == []


def test_staging_is_for_sqlite_and_the_local_executor_without_the_llm(tmp_path):
    from kmidi_ingest.db import make_engine
    from kmidi_ingest.options import LlmConfig

    sqlite_engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    pg_engine = make_engine("postgresql://u@localhost:1/x")
    with runner.staging_folder(sqlite_engine, "local", None) as folder:
        assert folder is not None and Path(folder).is_dir()
    assert not Path(folder).exists()
    with runner.staging_folder(pg_engine, "local", None) as folder:
        assert folder is None
    with runner.staging_folder(sqlite_engine, "dask", None) as folder:
        assert folder is None
    with runner.staging_folder(sqlite_engine, "local", LlmConfig(api_key="k")) as folder:
        assert folder is None
