"""``kmidi-ingest db upgrade | downgrade | current | history | stamp`` on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from sqlalchemy import inspect

from kmidi_ingest import cli, migrate
from kmidi_ingest.db import make_engine
from kmidi_ingest.urls import mask_url
from tests.conftest import REPO


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def db(*args: str) -> int:
    return cli.main(["db", *args])


def test_upgrade_current_downgrade_stamp_through_the_cli(db_url, capsys):
    head = migrate.head_revision()
    if db_url.startswith("sqlite"):  # db current never creates the database it reads
        path = db_url.removeprefix("sqlite:///")
        assert db("current", "--database-url", db_url) == 2
        assert capsys.readouterr().err == f"kmidi-ingest db: no database at {path}\n"
        sqlite3.connect(path).close()
    assert db("current", "--database-url", db_url) == 0
    assert capsys.readouterr().out == (
        f"{mask_url(db_url)}: no revision (empty database; run `kmidi-ingest db upgrade`)\n"
    )

    assert db("upgrade", "--database-url", db_url) == 0
    assert capsys.readouterr().out.strip().endswith(f"upgraded to {head}")
    assert {"cues", "midi_notes", "alembic_version"} <= tables(db_url)
    assert db("current", "--database-url", db_url) == 0
    assert capsys.readouterr().out.strip().endswith(f": {head} (head)")

    assert db("downgrade", "base", "--database-url", db_url) == 0
    assert capsys.readouterr().out.strip().endswith("downgraded to base")
    assert tables(db_url) <= {"alembic_version"}

    # stamp records a revision without touching the tables
    assert db("stamp", head, "--database-url", db_url) == 0
    assert capsys.readouterr().out.strip().endswith(f"stamped {head}")
    assert tables(db_url) <= {"alembic_version"}
    assert db("stamp", "base", "--database-url", db_url) == 0
    assert db("upgrade", "head", "--database-url", db_url) == 0
    assert "midi_notes" in tables(db_url)


def test_database_url_defaults_to_the_environment(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/env.sqlite"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    assert db("upgrade") == 0
    assert db("current") == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{url}: {migrate.head_revision()} (head)"


def test_history_lists_every_revision_oldest_first(capsys):
    assert db("history") == 0
    lines = capsys.readouterr().out.splitlines()
    revisions = migrate.history()
    assert len(lines) == len(revisions) >= 1
    assert (
        lines[0]
        == f"<base> -> {revisions[0].revision}"
        + (" (head)" if revisions[0].is_head else "")
        + f", {revisions[0].message}"
    )
    assert lines[-1].split(",")[0].endswith(f"-> {migrate.head_revision()} (head)")


def test_unknown_revision_and_bad_url_are_usage_errors(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/x.sqlite"
    known = ", ".join(r.revision for r in migrate.history())
    assert db("downgrade", "nope", "--database-url", url) == 2
    assert capsys.readouterr().err == (
        f"kmidi-ingest db: unknown revision 'nope'; this version knows: {known} "
        "(or 'head', 'base')\n"
    )
    assert db("upgrade", "--database-url", "mysql://u:secret@h/db") == 2
    assert capsys.readouterr().err == (
        "kmidi-ingest db: configuration error: unsupported database 'mysql://u:***@h/db': "
        "use sqlite:///FILE or postgresql://...\n"
    )
    assert db("downgrade") == 2  # REV is required
    assert capsys.readouterr().err.endswith(
        "kmidi-ingest db downgrade: error: the following arguments are required: REV\n"
    )
    assert db("frobnicate") == 2
    assert not (tmp_path / "x.sqlite").exists()


def test_every_revision_downgrades_and_upgrades_again(db_url):
    engine = make_engine(db_url)
    try:
        for rev in migrate.history():
            migrate.upgrade(engine, rev.revision)
            before = set(inspect(engine).get_table_names())
            migrate.downgrade(engine, rev.down_revision or "base")
            assert migrate.current_revision(engine) == rev.down_revision
            migrate.upgrade(engine, rev.revision)
            assert migrate.current_revision(engine) == rev.revision
            assert set(inspect(engine).get_table_names()) == before
        migrate.check(engine)
    finally:
        engine.dispose()


def test_works_without_alembic_ini_in_the_working_directory(tmp_path):
    # The migrations ship inside the package (script_location = kmidi_ingest:migrations).
    assert not (tmp_path / "alembic.ini").exists()
    url = f"sqlite:///{tmp_path}/w.sqlite"
    out = subprocess.run(
        [sys.executable, "-m", "kmidi_ingest", "db", "upgrade", "--database-url", url],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{url}: upgraded to {migrate.head_revision()}"
    assert (REPO / "kmidi_ingest" / "migrations" / "versions" / "__init__.py").is_file()
