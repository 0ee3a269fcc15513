"""Bulk writes of ``midi_notes``: the project's write path against raw DB-API baselines.

Figures, each beside a baseline measured in the same run on the same rows and the same schema
(migrated: on SQLite the compact ``WITHOUT ROWID`` table keyed by ``(track_id, id)``, whose ids
the writer gives):

- SQLite: ``store.note_rows`` + ``store.bulk_insert`` (from the numpy note array, as the store
  receives it) against a raw ``sqlite3`` ``executemany`` of ready-made tuples. Target ≥ 0.7×.
- PostgreSQL (a private server from ``tests/pgserver.py``): the project path (a binary ``COPY``
  built from the numpy array, ``store_pg``) against a raw psycopg2 binary ``COPY`` of the same
  tuples built beforehand. Target ≥ 0.7×. Also the former path (rows, ``csv.writer``, CSV
  ``COPY``) against the same baseline.
- For reference (fewer rows): SQLAlchemy Core ``execute(insert(t), dicts)`` and ORM ``add_all``
  (PostgreSQL only: on SQLite the model's ``end_tick`` and ``end_us`` are computed columns, which
  the ORM cannot write; Core writes the table as SQLite stores it).

Each figure is the best of a few repetitions into a freshly emptied table, the project path and
its baseline alternating.
"""

from __future__ import annotations

import io
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, MetaData, Table, insert, text
from sqlalchemy.orm import Session

from benchmarks.common import Row
from kmidi_ingest import migrate, store
from kmidi_ingest import models as m
from kmidi_ingest.db import make_engine
from kmidi_ingest.midi import NOTE_DTYPE
from kmidi_ingest.pg_copy import copy_buffer, copy_in
from kmidi_ingest.store_pg import note_columns

SECTION = "db"
TRACK_ID = 1


def make_notes(n: int, seed: int = 0) -> np.ndarray:
    """``n`` plausible notes (structured array in the MIDI stage's dtype)."""
    rng = np.random.default_rng(seed)
    notes = np.zeros(n, NOTE_DTYPE)
    start = np.sort(rng.integers(0, 480 * 4 * 400, n))
    length = rng.integers(30, 1920, n)
    notes["channel"] = rng.integers(0, 16, n)
    notes["pitch"] = rng.integers(21, 109, n)
    notes["velocity"] = rng.integers(1, 128, n)
    notes["release_velocity"] = np.where(rng.random(n) < 0.1, -1, rng.integers(0, 128, n))
    notes["start_tick"] = start
    notes["end_tick"] = start + length
    notes["start_s"] = start / 960.0
    notes["end_s"] = (start + length) / 960.0
    notes["end_sustain_s"] = notes["end_s"] + rng.random(n)
    notes["start_bar"] = start // 1920 + 1
    notes["start_beat"] = (start % 1920) / 480.0 + 1.0
    notes["end_inferred"] = rng.random(n) < 0.01
    return notes


def _prepare(engine: Engine) -> None:
    """Schema plus one cue → file → track for the notes to belong to."""
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(m.Cue),
            {
                "id": 1,
                "name": "bench",
                "rel_path": "bench",
                "abs_path": "/bench",
                "status": "complete",
                "stat_fingerprint": "x",
                "content_fingerprint": "x",
                "sample_rate_hz": 48000,
                "ingested_at": store.now(),
            },
        )
        conn.execute(
            insert(m.MidiFile),
            {
                "id": 1,
                "cue_id": 1,
                "rel_path": "b.mid",
                "file_name": "b.mid",
                "size_bytes": 0,
                "sha256": "x",
                "midi_format": 1,
                "timing": "ppq",
                "track_count": 1,
                "note_count": 0,
                "length_tick": 0,
                "length_s": 0.0,
            },
        )
        conn.execute(
            insert(m.MidiTrack),
            {
                "id": TRACK_ID,
                "midi_file_id": 1,
                "track_index": 0,
                "part_index": 0,
                "name": "bench",
                "part_name": "bench",
                "is_conductor": False,
                "is_drum": False,
                "note_count": 0,
                "end_tick": 0,
                "end_s": 0.0,
            },
        )


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM midi_notes"))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM")


def _best(engine: Engine, write: Callable[[], None], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        _empty(engine)
        started = time.perf_counter()
        write()
        best = min(best, time.perf_counter() - started)
    return best


def _columns(engine: Engine) -> tuple[str, ...]:
    return store.SQLITE_NOTE_COLUMNS if engine.dialect.name == "sqlite" else store.NOTE_COLUMNS


def _note_rows(engine: Engine, notes: np.ndarray) -> list[tuple[Any, ...]]:
    first_id = 1 if engine.dialect.name == "sqlite" else None
    return store.note_rows(TRACK_ID, notes, first_id=first_id)


def project_path(engine: Engine, notes: np.ndarray) -> None:
    """What ``store.write_cue`` does for the notes of one track: rows and ``executemany`` on
    SQLite, a binary ``COPY`` built from the array on PostgreSQL (``store_pg``)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            tracks = np.full(len(notes), TRACK_ID, dtype=np.int64)
            copy_in(conn, "midi_notes", note_columns(tracks, notes))
        else:
            store.bulk_insert(conn, "midi_notes", _columns(engine), _note_rows(engine, notes))


def csv_path(engine: Engine, notes: np.ndarray) -> None:
    """The former PostgreSQL path: Python rows, ``csv.writer`` text, CSV ``COPY``."""
    with engine.begin() as conn:
        store.bulk_insert(conn, "midi_notes", _columns(engine), _note_rows(engine, notes))


def raw_sqlite(path: str, rows: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path)
    try:
        columns = store.SQLITE_NOTE_COLUMNS
        marks = ", ".join("?" * len(columns))
        with conn:
            conn.executemany(
                f"INSERT INTO midi_notes ({', '.join(columns)}) VALUES ({marks})", rows
            )
    finally:
        conn.close()


def raw_copy(dsn: dict[str, Any], data: bytes) -> None:
    """A bare psycopg2 binary ``COPY`` of a buffer built beforehand."""
    import psycopg2

    conn = psycopg2.connect(**dsn)
    try:
        with conn, conn.cursor() as cursor:
            cursor.copy_expert(
                f"COPY midi_notes ({', '.join(store.NOTE_COLUMNS)}) FROM STDIN (FORMAT binary)",
                io.BytesIO(data),
                size=1 << 20,
            )
    finally:
        conn.close()


def core_dicts(engine: Engine, rows: list[tuple[Any, ...]]) -> None:
    dicts = [dict(zip(_columns(engine), row, strict=True)) for row in rows]
    table = Table("midi_notes", MetaData(), autoload_with=engine)  # as stored (lengths on SQLite)
    with engine.begin() as conn:
        conn.execute(insert(table), dicts)


def orm_add_all(engine: Engine, rows: list[tuple[Any, ...]]) -> None:
    with Session(engine) as session:
        session.add_all(m.MidiNote(**dict(zip(_columns(engine), row, strict=True))) for row in rows)
        session.commit()


def _rows(
    backend: str,
    engine: Engine,
    notes: np.ndarray,
    baseline_name: str,
    baseline: Callable[[], None],
    small: int,
    repeats: int,
) -> list[Row]:
    n = len(notes)
    rows = _note_rows(engine, notes)
    # Alternate the two so that load from other processes hits both alike; keep the best of each.
    base_s = ours_s = float("inf")
    for _ in range(repeats):
        base_s = min(base_s, _best(engine, baseline, 1))
        ours_s = min(ours_s, _best(engine, lambda: project_path(engine, notes), 1))
    base_rate = n / base_s

    def rate(figure: str, rows_written: int, seconds: float, target: float | None = None) -> Row:
        return Row(
            section=SECTION,
            figure=f"{backend}: {figure}",
            value=rows_written / seconds,
            unit="rows/s",
            baseline=baseline_name,
            baseline_value=base_rate,
            target=target,
        )

    small_rows = rows[:small]
    core_s = _best(engine, lambda: core_dicts(engine, small_rows), 1)
    out = [
        rate(f"note write path ({n:,} notes)", n, ours_s, target=0.7),
        rate(f"SQLAlchemy Core insert(dicts) ({small:,})", small, core_s),
    ]
    if engine.dialect.name == "postgresql":
        orm_s = _best(engine, lambda: orm_add_all(engine, small_rows), 1)
        out.append(rate(f"ORM add_all ({small:,})", small, orm_s))
        csv_s = min(_best(engine, lambda: csv_path(engine, notes), 1) for _ in range(repeats))
        out.append(rate(f"former note path, rows + CSV COPY ({n:,} notes)", n, csv_s))
    return out


def run(quick: bool) -> list[Row]:
    n = 30_000 if quick else 100_000
    small = 5_000 if quick else 20_000
    repeats = 3 if quick else 5
    notes = make_notes(n)
    rows = store.note_rows(TRACK_ID, notes, first_id=1)
    out: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kmidi-bench-db-") as tmp:
        path = str(Path(tmp) / "bench.sqlite")
        engine = make_engine(f"sqlite:///{path}")
        _prepare(engine)
        out += _rows(
            "SQLite",
            engine,
            notes,
            "sqlite3 executemany",
            lambda: raw_sqlite(path, rows),
            small,
            repeats,
        )
        engine.dispose()
    tracks = np.full(n, TRACK_ID, dtype=np.int64)
    out += _postgresql(
        notes, copy_buffer("midi_notes", note_columns(tracks, notes)), small, repeats
    )
    return out


def _postgresql(notes: np.ndarray, data: bytes, small: int, repeats: int) -> list[Row]:
    from sqlalchemy.engine import make_url

    from tests.pgserver import PostgresServer, find_pg_bindir

    bindir = find_pg_bindir()
    if bindir is None:
        return []
    with PostgresServer(bindir) as server:
        url = server.create_database("bench_db")
        engine = make_engine(url)
        _prepare(engine)
        dsn = make_url(url).translate_connect_args(username="user", database="dbname")
        try:
            return _rows(
                "PostgreSQL",
                engine,
                notes,
                "psycopg2 binary COPY of a ready buffer",
                lambda: raw_copy(dsn, data),
                small,
                repeats,
            )
        finally:
            engine.dispose()
