"""Collection section: a MIDI-only collection (Lakh's layout) ingested end to end, against mido's
bare load of the same files, and the bytes each stored note takes.

The corpus: the real MIDI files of ``../shared/data/midi`` copied under Lakh-like names
(``<hex digit>/<md5 of the copy number>.mid`` in 16 folders) until there are
``KMIDI_BENCH_COLLECTION_FILES`` files (10,000 in full mode, 320 with ``--quick``). Each file is a
unit of its own (one transaction each). Figures:

- end to end: ``python -m kmidi_ingest ROOT 22050 --workers 2`` (a fresh SQLite database, a child
  process, wall clock) against ``mido.MidiFile(path)`` of every file in one process. Target
  ≤ 0.25× (issue 16). The workers parse each file and stage its rows in a SQLite file of their
  own; the writer attaches it and copies the rows (:mod:`kmidi_ingest.staging`).
- CPU: the writing (main) process's CPU seconds, and the pool workers' (``RUSAGE_CHILDREN``),
  each against the run's wall clock: the writer keeps up when its share stays below 1 and the
  workers' total near 2 (two cores busy).
- size: database bytes (pages in use, indexes included) per stored note, against the issue's budget
  of 60 bytes.
- memory: the writing process's peak RSS with the default ``KMIDI_WRITER_MEMORY_MB``, beside a run
  with a budget no cue exceeds. On SQLite the writer receives staging-file paths, not MIDI arrays,
  so both stay flat; the budget (the spill to temporary files) bounds the PostgreSQL writer.

The two timed runs alternate (mido, ingest, mido, ingest in full mode) and the best of each is
kept. The machine is shared: read the ratios, measured in the same run, not the seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import queries
from benchmarks.common import Row

SHARED_MIDI = Path(__file__).resolve().parents[2] / "shared" / "data" / "midi"
SECTION = "collection"
WRITER_MEMORY_MB = 256  # kmidi_ingest.config.Settings.writer_memory_mb's default


def make_collection(root: Path, count: int) -> list[Path]:
    sources = sorted(
        p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar")
    )
    if not sources:
        return []
    paths = []
    for i in range(count):
        name = hashlib.md5(str(i).encode()).hexdigest()
        path = root / name[0] / f"{name}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[i % len(sources)], path)
        paths.append(path)
    return paths


def _mido_load(paths: list[Path]) -> float:
    import mido

    started = time.perf_counter()
    for p in paths:
        # mido refuses a few damaged real files; they count as loaded
        with contextlib.suppress(Exception):
            mido.MidiFile(str(p))
    return time.perf_counter() - started


_INGEST = """
import resource, sys, time
from kmidi_ingest.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
wall = time.perf_counter() - started
cpu = resource.getrusage(resource.RUSAGE_SELF)
workers = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, cpu.ru_utime + cpu.ru_stime, cpu.ru_maxrss * 1024, workers.ru_utime + workers.ru_stime,
      code)
"""


def _ingest(
    root: Path, database: Path, env: dict[str, str] | None = None
) -> tuple[float, float, float, float]:
    """:func:`ingest_run` into a new SQLite database at ``database``."""
    database.unlink(missing_ok=True)
    return ingest_run(root, f"sqlite:///{database}", env)


def ingest_run(
    root: Path, url: str, env: dict[str, str] | None = None
) -> tuple[float, float, float, float]:
    """Wall clock (s), CPU (s) and peak RSS (bytes) of the writing process of one ingest of
    ``root`` into ``url`` with 2 workers, in a process of its own, and its pool workers' CPU (s)."""
    done = subprocess.run(
        [sys.executable, "-c", _INGEST, str(root), "22050", "--workers", "2", "--quiet",
         "--database-url", url],
        capture_output=True, text=True, check=False,
        env={**os.environ, "KMIDI_MATCHER": "fuzzy", **(env or {})},
    )  # fmt: skip
    if done.returncode not in (0, 1):
        raise RuntimeError(f"ingest failed: {done.stderr[-2000:]}")
    wall, writer_cpu, rss, workers_cpu, _code = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(writer_cpu), float(rss), float(workers_cpu)


def _bytes_per_note(database: Path) -> tuple[float, int]:
    with sqlite3.connect(database) as conn:
        notes = conn.execute("SELECT COUNT(*) FROM midi_notes").fetchone()[0]
        pages, free, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_count", "freelist_count", "page_size")
        )
    return (pages - free) * size / max(notes, 1), notes


def _query_rows(database: Path, rounds: int) -> list[Row]:
    """One row per question of ``examples/queries.sql``: its best time on a vacuumed copy of
    ``database`` against the same on a copy taken down to the note layout before issue 16."""
    head, before = database.with_name("head.sqlite"), database.with_name("before.sqlite")
    queries.laid_out_copy(database, head)
    queries.laid_out_copy(database, before, queries.BEFORE_REVISION)
    cue = queries.busiest_cue(database)
    return [
        Row(
            section=SECTION,
            figure=f"query {title.split('.')[0]} ({answers:,} rows): {title.split('. ', 1)[1]}",
            value=new_s,
            unit="s",
            baseline=f"the same on the database downgraded to {queries.BEFORE_REVISION}",
            baseline_value=old_s,
            higher_is_better=False,
            target=1.0,
        )
        for title, new_s, old_s, answers in queries.compare(head, before, cue, rounds)
    ]


def run(quick: bool) -> list[Row]:
    count = int(os.environ.get("KMIDI_BENCH_COLLECTION_FILES", 320 if quick else 10_000))
    rounds = 1 if quick else 2
    with tempfile.TemporaryDirectory(prefix="kmidi-bench-collection-") as tmp:
        root = Path(tmp) / "lmd"
        paths = make_collection(root, count)
        if not paths:
            return []
        database = Path(tmp) / "collection.sqlite"
        mido_s, ours, writer, rss, workers = [], [], [], [], []
        for _ in range(rounds):
            mido_s.append(_mido_load(paths))
            wall, cpu, peak, workers_cpu = _ingest(root, database)
            ours.append(wall)
            writer.append(cpu)
            rss.append(peak)
            workers.append(workers_cpu)
        per_note, notes = _bytes_per_note(database)
        asked = _query_rows(database, 1 if quick else 3)
        # The same run with every cue kept in memory (a budget no cue exceeds): what the
        # writer's peak would be without the spill.
        unbounded = _ingest(root, database, {"KMIDI_WRITER_MEMORY_MB": str(1 << 20)})[2]
    best = min(range(rounds), key=lambda i: ours[i])
    return [
        Row(
            section=SECTION,
            figure=f"MIDI-only collection end to end, 2 workers ({count:,} files, {notes:,} notes)",
            value=ours[best],
            unit="s",
            baseline="mido MidiFile() of the same files, 1 process",
            baseline_value=min(mido_s),
            higher_is_better=False,
            target=0.25,
        ),
        Row(
            section=SECTION,
            figure="writer (main process) CPU over the run's wall clock",
            value=writer[best],
            unit="s",
            baseline="the run's wall clock",
            baseline_value=ours[best],
            higher_is_better=False,
        ),
        Row(
            section=SECTION,
            figure="the 2 pool workers' CPU over the run's wall clock (2: both cores busy)",
            value=workers[best],
            unit="s",
            baseline="the run's wall clock",
            baseline_value=ours[best],
        ),
        Row(
            section=SECTION,
            figure="SQLite bytes per stored note, indexes included",
            value=per_note,
            unit="B",
            baseline="the issue's budget",
            baseline_value=60.0,
            higher_is_better=False,
            target=1.0,
        ),
        Row(
            section=SECTION,
            figure=f"writer peak RSS, KMIDI_WRITER_MEMORY_MB={WRITER_MEMORY_MB} (default)",
            value=rss[best] / 2**20,
            unit="MB",
            baseline="the same with no cue spilled (unbounded)",
            baseline_value=unbounded / 2**20,
            higher_is_better=False,
        ),
        *asked,
    ]
