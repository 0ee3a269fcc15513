"""Every question in ``examples/queries.sql`` runs on SQLite and PostgreSQL and answers something
on the ingested example cues; both backends give the same answers."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import inspect, make_url, text

from benchmarks import queries
from benchmarks.queries import parse_queries
from kmidi_ingest import dbcopy, ingest
from kmidi_ingest.db import make_engine
from tests.conftest import REPO, note_track, write_midi

EXAMPLES = REPO / "examples"
QUERIES = EXAMPLES / "queries.sql"
QUESTIONS = parse_queries(QUERIES.read_text())


def _write_mismatched_cue(root: Path) -> None:
    """A cue whose "Strings" stem does not follow its "Strings" track (bursts at other times)."""
    notes = [(i * 480, i * 480 + 240, 60 + i % 5) for i in range(16)]  # every beat at 120 BPM
    write_midi(
        root / "9M99 Mismatch" / "MIDI" / "9M99 Mismatch.mid",
        [note_track("Strings", notes, program=48)],
    )
    rate = 16000
    audio = np.zeros(rate * 9, dtype=np.float32)
    rng = np.random.default_rng(7)
    for start in rng.uniform(0.1, 8.5, size=11):  # irregular, unrelated to the notes
        i = int(start * rate)
        audio[i : i + 1600] += rng.normal(0, 0.3, 1600).astype(np.float32)
    path = root / "9M99 Mismatch" / "Audio Files" / "9M99 Strings.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, audio, rate)


@pytest.fixture(scope="module")
def ingested_sqlite(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("q")
    root = base / "cues"
    shutil.copytree(EXAMPLES / "cues", root)
    _write_mismatched_cue(root)
    url = f"sqlite:///{base}/examples.sqlite"
    summary = ingest(root, 16000, database_url=url)
    assert summary.ok, summary.problems
    return url


def answers(url: str) -> list[list[tuple]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [[tuple(row) for row in conn.execute(text(sql))] for _, sql in QUESTIONS]
    finally:
        engine.dispose()


def test_the_file_holds_twelve_numbered_questions():
    assert [title.split(".")[0] for title, _ in QUESTIONS] == [str(i) for i in range(1, 13)]


def test_every_question_answers_on_sqlite_and_postgresql(ingested_sqlite, pg_url):
    source, target = make_engine(ingested_sqlite), make_engine(pg_url)
    try:
        assert dbcopy.copy_database(source, target).ok
    finally:
        source.dispose()
        target.dispose()
    on_sqlite, on_postgresql = answers(ingested_sqlite), answers(pg_url)
    for (title, _), lite, pg in zip(QUESTIONS, on_sqlite, on_postgresql, strict=True):
        assert lite, f"no rows on SQLite for: {title}"
        assert len(lite) == len(pg), title
        for a, b in zip(lite, pg, strict=True):
            assert [_plain(v) for v in a] == pytest.approx([_plain(v) for v in b]), title


def _plain(value):
    """Numbers as floats and booleans as ints (PostgreSQL answers Decimal and bool where SQLite
    answers float and int); everything else unchanged."""
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, str):
        return value
    return float(value)


def test_known_answers_on_the_examples(ingested_sqlite):
    by_number = {
        title.split(".")[0]: rows
        for (title, _), rows in zip(QUESTIONS, answers(ingested_sqlite), strict=True)
    }
    # 1M01 Opening has a four-bar phrase; every note of it lands in a bar >= 1.
    assert all(bar >= 1 for bar, _ in by_number["2"])
    assert sum(n for _, n in by_number["2"]) == _scalar(
        ingested_sqlite, "SELECT COUNT(*) FROM notes_view WHERE cue_name = '1M01 Opening'"
    )
    # "Click" has no stem in 1M01 Opening.
    assert ("1M01 Opening", "Click") in {(row[0], row[1]) for row in by_number["4"]}
    assert len(by_number["10"]) == 4  # the three examples and the mismatched cue
    # The mismatched cue's stem is matched by name, but its audio does not follow the MIDI.
    assert [(row[0], row[1], row[2]) for row in by_number["5"]] == [
        ("9M99 Mismatch", "Strings", "Strings")
    ]


def _scalar(url: str, sql: str):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def test_views_joins_are_indexed(ingested_sqlite):
    engine = make_engine(ingested_sqlite)
    try:
        inspector = inspect(engine)
        indexed = {
            (table, tuple(ix["column_names"]))
            for table in inspector.get_table_names()
            for ix in inspector.get_indexes(table)
        } | {
            (table, tuple(uq["column_names"][:n]))
            for table in inspector.get_table_names()
            for uq in inspector.get_unique_constraints(table)
            for n in range(1, len(uq["column_names"]) + 1)
        }
        # A key whose leading column is the join column serves the join as well (midi_notes is
        # keyed, and on SQLite clustered, by (track_id, id)).
        indexed |= {
            (table, tuple(inspector.get_pk_constraint(table)["constrained_columns"][:1]))
            for table in inspector.get_table_names()
        }
    finally:
        engine.dispose()
    for join in [
        ("midi_notes", ("track_id",)),
        ("midi_tracks", ("midi_file_id",)),
        ("midi_files", ("cue_id",)),
        ("track_matches", ("track_id",)),
        ("audio_files", ("cue_id",)),
        ("final_mixes", ("cue_id",)),
        ("ingest_errors", ("cue_id",)),
        ("cues", ("run_id",)),
    ]:
        assert join in indexed, join


def test_readme_schema_documents_every_table_and_column():
    from kmidi_ingest.models import Base

    readme = (REPO / "README.md").read_text()
    schema = readme[
        readme.index("## Schema") : readme.index("\n## ", readme.index("## Schema") + 3)
    ]
    assert "```mermaid\nerDiagram" in schema
    for table in Base.metadata.sorted_tables:
        block = schema[schema.index(f"**`{table.name}`**") :]
        block = block.split("\n\n")[1]
        documented = re.findall(r"^\| `(\w+)` \|", block, re.M)
        assert documented == [c.name for c in table.columns], table.name
        if table.name not in ("llm_cache",):
            assert table.name in schema.split("```")[1], f"{table.name} missing from the ER diagram"


def test_every_question_answers_the_same_on_the_schema_before_issue_16(ingested_sqlite, tmp_path):
    """The collection benchmark times each question on a copy taken down to 0008 (the note layout
    before issue 16): the copy must hold the same answers, or the timings compare nothing."""
    head = Path(make_url(ingested_sqlite).database)
    before = tmp_path / "before.sqlite"
    queries.laid_out_copy(head, before, queries.BEFORE_REVISION)
    engine = make_engine(f"sqlite:///{before}")
    try:
        with engine.connect() as conn:
            assert (
                conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0008"
            )
            columns = {c["name"] for c in inspect(conn).get_columns("midi_notes")}
            assert {"start_s", "end_s"} <= columns and "duration_us" not in columns
            old = [
                [tuple(r) for r in conn.execute(text(queries.before_stem_rank(sql)))]
                for _, sql in QUESTIONS
            ]
    finally:
        engine.dispose()
    for (title, _), new_rows, old_rows in zip(
        QUESTIONS, answers(ingested_sqlite), old, strict=True
    ):
        assert new_rows, title
        assert len(new_rows) == len(old_rows), title
        for a, b in zip(new_rows, old_rows, strict=True):
            assert [_plain(v) for v in a] == pytest.approx([_plain(v) for v in b]), title


def test_the_benchmark_asks_about_the_cue_with_the_most_notes(ingested_sqlite):
    head = Path(make_url(ingested_sqlite).database)
    assert queries.busiest_cue(head) == _scalar(
        ingested_sqlite,
        "SELECT cue_name FROM notes_view GROUP BY cue_name ORDER BY COUNT(*) DESC LIMIT 1",
    )
    statement = dict(QUESTIONS)[QUESTIONS[1][0]]
    assert "'1M01 Opening'" in statement
    assert "'It''s Late'" in queries.for_cue(statement, "It's Late")
