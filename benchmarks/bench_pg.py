"""PostgreSQL section: a MIDI-only collection ingested into a real local server, against a bare
binary ``COPY`` of the same rows, and the writer's event path with binary against CSV ``COPY``.

The server is a private one from ``tests/pgserver.py`` (``fsync=off``, as the test suite's). The
corpus is ``bench_collection``'s: the real MIDI files of ``../shared/data/midi`` copied under
Lakh-like names, ``KMIDI_BENCH_PG_FILES`` files (1,000 by default, 80 with ``--quick``). Figures:

- end to end: ``python -m kmidi_ingest ROOT 22050 --workers 2`` into a fresh, empty database (a
  child process, wall clock, migrations included) against a bare binary ``COPY`` of every row that
  ingest stored (read back from the first run with ``COPY … TO STDOUT (FORMAT binary)``, held in
  memory) into a freshly migrated database: the same tables, indexes and foreign keys, one
  transaction. Target: ingest ≤ 2× the bare ``COPY``'s time (throughput ≥ 0.5×). The two
  alternate, the best of each is kept. Also the CPU seconds of the writing (main) process.
- writer path alone: the channel events of the parsed files (notes, CC, program changes, pitch
  bends, aftertouch) written by the store's event batches, binary ``COPY`` built in numpy
  (:mod:`kmidi_ingest.store_pg`) against the old rows + ``csv.writer`` + CSV ``COPY`` path
  (``store_midi._EventBatches``, still the SQLite and DSQL one), alternating, best of each.
"""

from __future__ import annotations

import io
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text

from benchmarks.bench_collection import ingest_run, make_collection
from benchmarks.common import Row
from kmidi_ingest import migrate, store, store_midi
from kmidi_ingest import models as m
from kmidi_ingest.db import make_engine
from kmidi_ingest.midi import MidiData, read_midi
from kmidi_ingest.store_pg import PgEventBatches

SECTION = "pg"
_EVENT_TABLES = ("midi_notes", "midi_cc", "midi_program_changes", "midi_pitch_bends",
                 "midi_aftertouch")  # fmt: skip

_ATTRIBUTES = ("notes", "cc", "program_changes", "pitch_bends", "aftertouch")


def _dbapi(engine: Engine) -> Any:
    return engine.raw_connection()


def dump_tables(engine: Engine) -> dict[str, bytes]:
    """Every kmidi table's rows (ids included) as binary ``COPY`` streams, parents first."""
    conn = _dbapi(engine)
    out: dict[str, bytes] = {}
    try:
        cursor = conn.cursor()
        for table in m.Base.metadata.sorted_tables:
            buffer = io.BytesIO()
            cursor.copy_expert(f"COPY {table.name} TO STDOUT (FORMAT binary)", buffer)
            out[table.name] = buffer.getvalue()
        conn.rollback()
    finally:
        conn.close()
    return out


def bare_copy(engine: Engine, dumps: dict[str, bytes]) -> float:
    """Seconds to ``COPY … FROM STDIN (FORMAT binary)`` ``dumps`` into ``engine``'s (migrated)
    empty tables in one transaction; the tables the migrations filled are left alone."""
    conn = _dbapi(engine)
    try:
        cursor = conn.cursor()
        filled = set()
        for name in dumps:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")
            if cursor.fetchone()[0]:
                filled.add(name)
        conn.commit()
        started = time.perf_counter()
        for name, data in dumps.items():
            if name not in filled and len(data) > 21:  # header + trailer: no rows
                cursor.copy_expert(
                    f"COPY {name} FROM STDIN (FORMAT binary)", io.BytesIO(data), size=1 << 20
                )
        conn.commit()
        return time.perf_counter() - started
    finally:
        conn.close()


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one())
            for t in _EVENT_TABLES
        }


def _prepare_parts(engine: Engine, files: list[MidiData]) -> list[list[int]]:
    """Schema, one cue, a ``midi_files`` row per file and a ``midi_tracks`` row per part; the part
    ids per file."""
    migrate.upgrade(engine)
    with engine.begin() as conn:
        cue_id = conn.execute(
            insert(m.Cue).returning(m.Cue.id),
            {"name": "bench", "rel_path": "bench", "abs_path": "/bench", "status": "complete",
             "stat_fingerprint": "x", "content_fingerprint": "x", "sample_rate_hz": 22050,
             "ingested_at": store.now()},
        ).scalar_one()  # fmt: skip
        ids: list[list[int]] = []
        for i, midi in enumerate(files):
            file_id = conn.execute(
                insert(m.MidiFile).returning(m.MidiFile.id),
                {"cue_id": cue_id, "rel_path": f"{i}.mid", "file_name": f"{i}.mid",
                 "size_bytes": 0, "sha256": "x", "midi_format": 1, "timing": "ppq",
                 "track_count": len(midi.tracks), "note_count": 0, "length_tick": 0,
                 "length_s": 0.0},
            ).scalar_one()  # fmt: skip
            ids.append(
                [
                    conn.execute(
                        insert(m.MidiTrack).returning(m.MidiTrack.id),
                        {
                            "midi_file_id": file_id,
                            "track_index": t.index,
                            "part_index": t.part_index,
                            "name": "",
                            "part_name": "",
                            "is_conductor": False,
                            "is_drum": False,
                            "note_count": 0,
                            "end_tick": 0,
                            "end_s": 0.0,
                        },
                    ).scalar_one()  # fmt: skip
                    for t in midi.tracks
                ]
            )
    return ids


def _write_events(
    server: Any,
    url: str,
    files: list[MidiData],
    ids: list[list[int]],
    batches: Callable[[Any], Any],
) -> tuple[float, float]:
    """Wall clock and CPU (this process + the server) of writing the files' channel events
    through ``batches`` into the emptied event tables, in one transaction."""
    engine = make_engine(url)
    with engine.begin() as conn:
        for t in _EVENT_TABLES:
            conn.execute(text(f"TRUNCATE {t}"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    engine = make_engine(url)
    server_0, client_0 = _settled(server), time.process_time()
    started = time.perf_counter()
    with engine.begin() as conn:
        events = batches(conn)
        rows = 0
        for midi, part_ids in zip(files, ids, strict=True):
            for track, track_id in zip(midi.tracks, part_ids, strict=True):
                events.add(track_id, track)
                rows += sum(len(getattr(track, a)) for a in _ATTRIBUTES)
            if rows >= store_midi.EVENT_BATCH_ROWS:
                events.flush()
                rows = 0
        events.flush()
    wall = time.perf_counter() - started
    engine.dispose()  # its backend ends: its CPU is counted
    return wall, _settled(server) - server_0 + time.process_time() - client_0


def _writer_rows(paths: list[Path], server: Any, repeats: int) -> list[Row]:
    files = [read_midi(p) for p in paths]
    name = f"bench_w_{uuid.uuid4().hex[:8]}"
    url = server.create_database(name)
    engine = make_engine(url)
    ids = _prepare_parts(engine, files)
    engine.dispose()
    csv_s = binary_s = csv_cpu = binary_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = _write_events(server, url, files, ids, store_midi._EventBatches)
        csv_s, csv_cpu = min(csv_s, wall), min(csv_cpu, cpu)
        wall, cpu = _write_events(server, url, files, ids, PgEventBatches)
        binary_s, binary_cpu = min(binary_s, wall), min(binary_cpu, cpu)
    engine = make_engine(url)
    rows = sum(_counts(engine).values())
    engine.dispose()
    server.drop_database(name)
    return [
        Row(
            section=SECTION,
            figure=f"writer event path, binary COPY from numpy ({rows:,} rows)",
            value=rows / binary_s,
            unit="rows/s",
            baseline="the old path: rows + csv.writer + CSV COPY",
            baseline_value=rows / csv_s,
        ),
        Row(
            section=SECTION,
            figure="the same in CPU (writer + server)",
            value=binary_cpu,
            unit="s",
            baseline="the old path's CPU",
            baseline_value=csv_cpu,
            higher_is_better=False,
        ),
    ]


def _server_cpu(server: Any) -> float:
    """CPU seconds of the server so far: the postmaster's own and its ended children's (every
    backend of a closed connection, autovacuum workers), from ``/proc``; NaN where unreadable."""
    try:
        pid = int((server.datadir / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _settled(server: Any) -> float:
    """The server's CPU once the backends of closed connections have ended."""
    time.sleep(0.5)
    return _server_cpu(server)


def run(quick: bool) -> list[Row]:
    from tests.pgserver import PostgresServer, find_pg_bindir

    bindir = find_pg_bindir()
    count = int(os.environ.get("KMIDI_BENCH_PG_FILES", 80 if quick else 1_000))
    rounds = 1 if quick else 2
    with tempfile.TemporaryDirectory(prefix="kmidi-bench-pg-") as tmp:
        root = Path(tmp) / "lmd"
        paths = make_collection(root, count)
        if bindir is None or not paths:
            return []
        with PostgresServer(bindir) as server:
            ingest_s, writer_s, ingest_cpu, copy_s, copy_cpu = [], [], [], [], []
            dumps: dict[str, bytes] = {}
            notes = rows = 0
            for _ in range(rounds):  # ingest, bare COPY, ingest, bare COPY
                name = f"bench_i_{uuid.uuid4().hex[:8]}"
                url = server.create_database(name)
                server_0, clients_0 = _settled(server), _children_cpu()
                wall, cpu, _rss, _workers = ingest_run(root, url)
                ingest_cpu.append(_settled(server) - server_0 + _children_cpu() - clients_0)
                ingest_s.append(wall)
                writer_s.append(cpu)
                if not dumps:
                    engine = make_engine(url)
                    dumps = dump_tables(engine)
                    counted = _counts(engine)
                    notes, rows = counted["midi_notes"], sum(counted.values())
                    engine.dispose()
                server.drop_database(name)  # no autovacuum of it in later rounds
                name = f"bench_c_{uuid.uuid4().hex[:8]}"
                target = make_engine(server.create_database(name))
                migrate.upgrade(target)
                server_0, client_0 = _settled(server), time.process_time()
                copy_s.append(bare_copy(target, dumps))
                target.dispose()
                copy_cpu.append(_settled(server) - server_0 + time.process_time() - client_0)
                server.drop_database(name)
            best = ingest_s.index(min(ingest_s))
            out = [
                Row(
                    section=SECTION,
                    figure=(
                        f"PostgreSQL: MIDI-only collection end to end, 2 workers "
                        f"({count:,} files, {notes:,} notes, {rows:,} event rows)"
                    ),
                    value=min(ingest_s),
                    unit="s",
                    baseline="bare binary COPY of every stored row, same schema",
                    baseline_value=min(copy_s),
                    higher_is_better=False,
                    target=2.0,
                ),
                Row(
                    section=SECTION,
                    figure="PostgreSQL: the same in CPU (writer + workers + server)",
                    value=min(ingest_cpu),
                    unit="s",
                    baseline="the bare COPY's CPU (client + server)",
                    baseline_value=min(copy_cpu),
                    higher_is_better=False,
                ),
                Row(
                    section=SECTION,
                    figure="PostgreSQL: writer (main process) CPU over the run's wall clock",
                    value=writer_s[best],
                    unit="s",
                    baseline="the run's wall clock",
                    baseline_value=ingest_s[best],
                    higher_is_better=False,
                ),
            ]
            out += _writer_rows(paths[: 20 if quick else 400], server, rounds + 1)
    return out
