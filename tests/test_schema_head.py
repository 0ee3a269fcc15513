"""A new SQLite database created from the snapshot of the head: the same schema as the
migrations build, or nothing done."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from kmidi_ingest import ingest, migrate
from kmidi_ingest.db import make_engine
from kmidi_ingest.schema_head import (
    SQLITE_SNAPSHOT,
    at_head,
    create_sqlite_head,
    shipped_head,
    snapshot,
)


def _canonical(sql: str | None) -> str | None:
    """``sql`` with its table constraints sorted: Alembic's batch mode writes a recreated
    table's constraints in an order that changes from run to run (columns keep theirs)."""
    if sql is None:
        return None
    lines = [line.rstrip().removesuffix(",") for line in sql.split("\n")]
    constraints = sorted(line for line in lines if line.startswith("\tCONSTRAINT "))
    others = [line for line in lines if not line.startswith("\tCONSTRAINT ")]
    return "\n".join(others[:-1] + constraints + others[-1:])


def _master(path: Path) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
        ).fetchall()
    return [(kind, name, table, _canonical(sql)) for kind, name, table, sql in rows]


def _statements(snapshot_text: str) -> list[str | None]:
    return [_canonical(s) for s in snapshot_text.split("\n;\n")]


def _migrated(path: Path) -> Path:
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return path


def _created(path: Path, snapshot_path: Path = SQLITE_SNAPSHOT) -> bool:
    engine = make_engine(f"sqlite:///{path}")
    try:
        return create_sqlite_head(engine, snapshot_path)
    finally:
        engine.dispose()


def test_the_snapshot_is_what_the_migrations_build_now(tmp_path):
    path = _migrated(tmp_path / "m.sqlite")
    with sqlite3.connect(path) as conn:
        fresh = snapshot(conn, migrate.head_revision() or "")
    assert _statements(SQLITE_SNAPSHOT.read_text(encoding="utf-8")) == _statements(fresh), (
        "the schema changed: run `python -m kmidi_ingest.schema_head` to write the snapshot again"
    )


def test_a_new_database_from_the_snapshot_equals_a_migrated_one(tmp_path):
    migrated = _migrated(tmp_path / "m.sqlite")
    assert _created(tmp_path / "s.sqlite")
    created = tmp_path / "s.sqlite"
    assert _master(created) == _master(migrated)
    assert len(_master(created)) == 53  # tables, their indexes and the two views
    with sqlite3.connect(created) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (shipped_head(),)
        ]
        (row,) = conn.execute("SELECT * FROM kmidi_database").fetchall()
    with sqlite3.connect(migrated) as conn:
        (theirs,) = conn.execute("SELECT * FROM kmidi_database").fetchall()
    assert row[0] == 1 and row[3:] == (None, None, None) == theirs[3:]
    assert uuid.UUID(row[1]).version == 4 and row[1] != theirs[1]
    # Stored as SQLAlchemy stores a DateTime on SQLite: the same text layout as the migration's.
    assert len(row[2]) == len(theirs[2]) == 26
    assert abs((datetime.fromisoformat(row[2]) - datetime.fromisoformat(theirs[2])).days) <= 1


def test_alembic_takes_over_from_a_created_database(tmp_path):
    path = tmp_path / "s.sqlite"
    assert _created(path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert at_head(engine) and migrate.current_revision(engine) == shipped_head()
        before = _master(path)
        migrate.upgrade(engine)  # nothing to do
        assert _master(path) == before
        history = migrate.history()
        migrate.downgrade(engine, history[-2].revision)
        assert migrate.current_revision(engine) == history[-2].revision
        migrate.upgrade(engine)
        assert at_head(engine)
    finally:
        engine.dispose()


def test_two_new_databases_have_their_own_identity(tmp_path):
    assert _created(tmp_path / "a.sqlite") and _created(tmp_path / "b.sqlite")
    uuids = set()
    for name in ("a.sqlite", "b.sqlite"):
        with sqlite3.connect(tmp_path / name) as conn:
            uuids.add(conn.execute("SELECT database_uuid FROM kmidi_database").fetchone()[0])
    assert len(uuids) == 2


def test_a_database_with_any_schema_is_left_to_alembic(tmp_path):
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE mine (x INTEGER)")
    assert not _created(path)
    assert [r[1] for r in _master(path)] == ["mine"]
    migrated = _migrated(tmp_path / "m.sqlite")
    assert not _created(migrated)  # at the head already: untouched
    assert _master(migrated) == _master(_migrated(tmp_path / "m2.sqlite"))


def test_a_snapshot_of_another_revision_is_not_used(tmp_path):
    old = tmp_path / "old.sql"
    old.write_text(
        SQLITE_SNAPSHOT.read_text(encoding="utf-8").replace(
            f"-- revision: {shipped_head()}\n", "-- revision: 0003\n", 1
        ),
        encoding="utf-8",
    )
    assert not _created(tmp_path / "s.sqlite", old)
    assert not _created(tmp_path / "t.sqlite", tmp_path / "missing.sql")
    cut = tmp_path / "cut.sql"  # the right revision, its statements cut short
    cut.write_text(SQLITE_SNAPSHOT.read_text(encoding="utf-8")[:200], encoding="utf-8")
    assert not _created(tmp_path / "u.sqlite", cut)
    for name in ("s.sqlite", "t.sqlite", "u.sqlite"):
        assert _master(tmp_path / name) == []


def test_a_failing_statement_leaves_the_database_empty(tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text(
        SQLITE_SNAPSHOT.read_text(encoding="utf-8") + "CREATE TABLE cues (x INTEGER)\n;\n",
        encoding="utf-8",
    )
    with pytest.raises(OperationalError, match="cues already exists"):
        _created(tmp_path / "s.sqlite", bad)
    assert _master(tmp_path / "s.sqlite") == []
    assert _created(tmp_path / "s.sqlite")  # and it can be created afterwards


def test_postgresql_is_left_to_alembic():
    engine = create_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none")  # never connected
    assert not create_sqlite_head(engine)


def test_an_ingest_into_a_new_database_does_not_run_the_migrations(tmp_path, monkeypatch):
    def no_alembic(*_args, **_kwargs):
        raise AssertionError("Alembic ran on a new SQLite database")

    migrated = _master(_migrated(tmp_path / "m.sqlite"))
    monkeypatch.setattr(migrate, "upgrade", no_alembic)
    (tmp_path / "empty").mkdir()
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    summary = ingest(tmp_path / "empty", 8000, database_url=url)
    assert summary.ok and summary.cues_found == 0
    assert _master(tmp_path / "new.sqlite") == migrated
