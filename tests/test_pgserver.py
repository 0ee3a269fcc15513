"""Tests for the PostgreSQL test-server helpers (tests/pgserver.py, tests/pg_fixtures.py)."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from tests.pgserver import ExistingServer, _DatabaseAdmin, find_pg_bindir

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100), nullable=False),
)


def _roundtrip(url: str, titles: list[str]) -> list[str]:
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(notes.insert(), [{"title": t} for t in titles])
        with engine.connect() as conn:
            return list(conn.scalars(sa.select(notes.c.title).order_by(notes.c.id)))
    finally:
        engine.dispose()


def test_find_pg_bindir_has_all_binaries() -> None:
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries")
    assert all((bindir / name).is_file() for name in ("postgres", "initdb", "pg_ctl"))


def test_existing_server_urls() -> None:
    server = ExistingServer("postgresql://u:p%40ss@db.example:5433/whatever")
    assert server.url("t_1") == "postgresql+psycopg2://u:p%40ss@db.example:5433/t_1"


def test_pg_url_roundtrip(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg2://")
    assert _roundtrip(pg_url, ["a", "b", "c"]) == ["a", "b", "c"]
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT current_setting('server_encoding')")) == "UTF8"
    engine.dispose()


def test_pg_url_is_fresh(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


@pytest.mark.skipif(bool(os.environ.get("KMIDI_TEST_PG_URL")), reason="external server")
def test_server_runs_unprivileged(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT current_setting('fsync')")) == "off"
        assert conn.scalar(sa.text("SELECT current_setting('listen_addresses')")) == "127.0.0.1"
        pid = conn.scalar(sa.text("SELECT pg_backend_pid()"))
        # Checked while connected: the backend process exits with the connection.
        assert os.stat(f"/proc/{pid}").st_uid != 0
    engine.dispose()


def test_two_databases_are_isolated(pg_server: _DatabaseAdmin, pg_url: str) -> None:
    other = pg_server.create_database("t_isolation_other")
    try:
        _roundtrip(pg_url, ["only-in-first"])
        engine = sa.create_engine(other)
        assert sa.inspect(engine).get_table_names() == []
        # a connection left open must not prevent dropping the database
        conn = engine.connect()
        conn.execute(sa.text("SELECT 1"))
    finally:
        pg_server.drop_database("t_isolation_other")
    conn.invalidate()
    engine.dispose()


def test_db_url_roundtrip(db_url: str) -> None:
    assert _roundtrip(db_url, ["x", "y"]) == ["x", "y"]
    assert _roundtrip(db_url, ["z"]) == ["x", "y", "z"]
