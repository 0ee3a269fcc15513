"""The analysts' questions of ``examples/queries.sql``: parsed, and timed on a database at the
current schema beside a copy of it downgraded to the note layout before issue 16.

Both sides are vacuumed copies of the same database; the "before" one is first taken down to
migration 0008 by Alembic: ``midi_notes`` with its seconds columns and its three global indexes
(``start_s``, ``track_id``, ``pitch``), no ``cues.name`` index, ``cue_summary`` counting note
rows, 0008's ``notes_view``. Questions 11 and 12 read
``track_matches.stem_rank`` (migration 0011, after it); on the old schema every match is its
part's only one, so they run there with ``m.stem_rank = 0`` read as true — the same question.
"""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path

QUERIES = Path(__file__).resolve().parents[1] / "examples" / "queries.sql"
EXAMPLE_CUE = "1M01 Opening"
BEFORE_REVISION = "0008"


def parse_queries(sql: str) -> list[tuple[str, str]]:
    """``(title, statement)`` per statement; the title is the numbered comment before it.

    Comment lines (``--``) are dropped; a statement ends with a line ending in ``;``.
    """
    out: list[tuple[str, str]] = []
    title, lines = "", []
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            if re.match(r"--\s*\d+\.", stripped):
                title = stripped.lstrip("- ")
            continue
        if stripped:
            lines.append(line)
        if stripped.endswith(";"):
            out.append((title, "\n".join(lines).rstrip(";")))
            lines = []
    if lines:
        raise ValueError(f"statement without a closing semicolon: {lines}")
    return out


def for_cue(statement: str, cue: str) -> str:
    """``statement`` asking about ``cue`` instead of the examples' cue."""
    return statement.replace(f"'{EXAMPLE_CUE}'", "'" + cue.replace("'", "''") + "'")


def before_stem_rank(statement: str) -> str:
    """``statement`` for a schema without ``stem_rank``, where each match is its part's primary."""
    return statement.replace("m.stem_rank = 0", "1 = 1")


def laid_out_copy(database: Path, copy: Path, revision: str | None = None) -> None:
    """A copy of the SQLite ``database`` (read through SQLite's backup API, WAL included),
    taken down to ``revision`` by the project's migrations when one is given, and vacuumed.

    Both sides of :func:`compare` are made this way, so the two differ by their schema only: a
    database written cue by cue interleaves its tables' pages, a rebuilt or vacuumed one does
    not, and on 2,000 files the vacuumed copy answered questions over small tables 10-20 %
    faster than the database it was copied from.
    """
    from kmidi_ingest import migrate
    from kmidi_ingest.db import make_engine

    copy.unlink(missing_ok=True)
    with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    if revision is not None:
        engine = make_engine(f"sqlite:///{copy}")
        try:
            migrate.downgrade(engine, revision)
        finally:
            engine.dispose()
    with closing(sqlite3.connect(copy)) as conn:
        conn.execute("VACUUM")


def busiest_cue(database: Path) -> str:
    """The name of the complete cue with the most notes: the per-cue questions ask about it."""
    with closing(sqlite3.connect(database)) as conn:
        row = conn.execute(
            "SELECT c.name FROM cues c JOIN midi_files f ON f.cue_id = c.id "
            "JOIN midi_tracks t ON t.midi_file_id = f.id WHERE c.status = 'complete' "
            "GROUP BY c.id, c.name ORDER BY SUM(t.note_count) DESC LIMIT 1"
        ).fetchone()
    if row is None:
        raise ValueError(f"{database}: no complete cue")
    return str(row[0])


def _time(conn: sqlite3.Connection, statement: str, budget_s: float = 0.3) -> tuple[float, int]:
    """The best of as many runs of ``statement`` as fit in ``budget_s`` (at least one): a
    question answered in a millisecond is otherwise timed by the scheduler's noise."""
    best, spent = float("inf"), 0.0
    while True:
        started = time.perf_counter()
        rows = len(conn.execute(statement).fetchall())
        seconds = time.perf_counter() - started
        best, spent = min(best, seconds), spent + seconds
        if spent >= budget_s:
            return best, rows


def compare(head: Path, before: Path, cue: str, rounds: int) -> list[tuple[str, float, float, int]]:
    """``(title, best seconds on head, best seconds on before, rows)`` per question, each timed
    ``rounds`` times on both databases in alternating order. Both must give as many rows."""
    questions = [(t, for_cue(s, cue)) for t, s in parse_queries(QUERIES.read_text())]
    best: dict[str, list[float]] = {t: [float("inf"), float("inf")] for t, _ in questions}
    counts: dict[str, set[int]] = {t: set() for t, _ in questions}
    with closing(sqlite3.connect(head)) as new, closing(sqlite3.connect(before)) as old:
        for r in range(rounds):
            for title, statement in questions:
                runs = [(0, new, statement), (1, old, before_stem_rank(statement))]
                for side, conn, sql in runs if r % 2 == 0 else runs[::-1]:
                    seconds, n = _time(conn, sql)
                    best[title][side] = min(best[title][side], seconds)
                    counts[title].add(n)
    for title, n in counts.items():
        if len(n) != 1:
            raise AssertionError(f"{title}: row counts differ between the schemas: {sorted(n)}")
    return [(t, best[t][0], best[t][1], counts[t].pop()) for t, _ in questions]
