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

import numpy as np
import pytest

from kmidi_ingest import discover, ingest, kernels, spill, staging
from kmidi_ingest.batch import runner
from kmidi_ingest.batch.compute import CueSpec, hand_off, process_cue
from kmidi_ingest.midi import NO_BAR
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


@pytest.mark.parametrize(("workers", "kernels_now"), [(1, False), (1, True), (2, False)])
def test_staged_rows_are_the_direct_rows_id_for_id(tmp_path, monkeypatch, workers, kernels_now):
    monkeypatch.setattr(kernels, "_loaded", False)
    if kernels_now:  # the compiled scan and binding from the first cue (else Python first)
        monkeypatch.setattr(kernels, "COMPILE_AFTER_S", 0.0)
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
    assert kernels._loaded or not kernels_now
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


def _staged_tables(path: str) -> dict[str, list[tuple]]:
    """Every row of a staging file, each value beside its SQLite storage class."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        out = {}
        for table in staging.TABLES:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            both = ", ".join(f"{c}, typeof({c})" for c in cols)
            out[table] = conn.execute(f"SELECT {both} FROM {table} ORDER BY id").fetchall()
    return out


def test_compiled_binding_stages_what_executemany_stages(tmp_path):
    """The notes and events bound in compiled code (:mod:`kmidi_ingest.sqlite_bulk`) are the
    rows ``executemany`` gives, value for value and storage class for class: NaN beats as
    NULL, sentinels, booleans as 0/1, microseconds as integers."""
    from kmidi_ingest import sqlite_bulk

    assert sqlite_bulk.load() is not None  # this machine's Python links libsqlite3
    root = _corpus(tmp_path / "in")
    spec = CueSpec(sample_rate_hz=SR)
    tables_seen: set[str] = set()
    nulls = injected = 0
    for cue in discover.scan(root / "lmd").cues:
        result = process_cue(cue, spec, stat_fingerprint="x")
        for track in (t for d in result.midi for t in d.tracks if len(t.notes) > 1):
            # the beat an SMPTE file's notes have (NaN) and bar (the sentinel) on one note
            track.notes[["start_bar", "start_beat"]][1] = (NO_BAR, np.nan)
            injected += 1
            break
        bulk = staging.stage(result, directory=str(tmp_path), bulk=True).midi
        plain = staging.stage(result, directory=str(tmp_path), bulk=False).midi
        assert isinstance(bulk, staging.StagedMidi) and isinstance(plain, staging.StagedMidi)
        assert bulk.rows == plain.rows and bulk.part_keys == plain.part_keys
        got, want = _staged_tables(bulk.path), _staged_tables(plain.path)
        assert got == want, cue
        tables_seen |= {t for t, rows in got.items() if rows}
        nulls += sum(row.count("null") for row in got["midi_notes"])
        bulk.remove()
        plain.remove()
    assert {"midi_notes", "midi_cc", "midi_pitch_bends", "midi_program_changes"} <= tables_seen
    assert nulls == injected >= 5  # the NaN beats, NULL both ways (sentinels stay values)


def test_compiled_binding_reports_sqlites_error_with_the_file(tmp_path):
    from kmidi_ingest import sqlite_bulk

    path = tmp_path / "t.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER NOT NULL, x FLOAT)")
    library = sqlite_bulk.load()
    assert library is not None
    with sqlite_bulk.BulkFile(library, str(path)) as f:
        f.execute("BEGIN")
        f.insert("INSERT INTO t (id, a, x) VALUES (?, ?, ?)",
                 [np.array([1, 2, 3]), np.array([-5, 0, 2**40], dtype=np.int64)],
                 [np.array([0.5, np.nan, -1e300])])  # fmt: skip
        f.execute("COMMIT")
        with pytest.raises(sqlite_bulk.BulkError, match=r"t\.sqlite: UNIQUE constraint failed"):
            f.insert(
                "INSERT INTO t (id, a) VALUES (?, ?)", [np.array([4, 2]), np.array([1, 1])], []
            )
        with pytest.raises(sqlite_bulk.BulkError, match="no such table: u"):
            f.insert("INSERT INTO u VALUES (?)", [np.array([1])], [])
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT id, a, x, typeof(x) FROM t ORDER BY id").fetchall()
    # the failed statement's first row (id 4) stays in: no transaction was open around it
    assert rows == [(1, -5, 0.5, "real"), (2, 0, None, "null"), (3, 2**40, -1e300, "real"),
                    (4, 1, None, "null")]  # fmt: skip
    with pytest.raises(sqlite_bulk.BulkError, match="unable to open"):
        sqlite_bulk.BulkFile(library, str(tmp_path / "missing" / "x.sqlite"))
