"""Whether a database is at the newest schema, and a new SQLite one created at it, without
loading Alembic.

Loading Alembic and its migration environment, then running every migration on a new database,
costs about 0.4 s of CPU: a third of a short run. A run on a database already at the head only
needs one plain query (:func:`at_head`). A new, empty SQLite database is given the schema the
migrations would build from :data:`SQLITE_SNAPSHOT`, the statements ``sqlite_master`` holds
after ``alembic upgrade head`` on an empty file, replayed in their order
(:func:`create_sqlite_head`); the tests check that both ways give the same schema. Anything this
cannot tell for sure (scripts that do not form one linear chain, a snapshot of another
revision, a database that is not empty) answers "no", and :func:`kmidi_ingest.migrate.upgrade`
decides as before.

``python -m kmidi_ingest.schema_head`` writes the snapshot again after a new migration.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

VERSIONS = Path(__file__).parent / "migrations" / "versions"
SQLITE_SNAPSHOT = Path(__file__).parent / "migrations" / "sqlite_head.sql"
_SNAPSHOT_REVISION = re.compile(r"\A-- revision: (\S+)\n")
_REVISION = re.compile(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN = re.compile(r"^down_revision\b[^=\n]*=\s*(?:None|[\"']([^\"']+)[\"'])\s*$", re.M)


def shipped_head(versions: Path = VERSIONS) -> str | None:
    """The head revision of the migration scripts in ``versions``, read from their
    ``revision = "…"`` and ``down_revision = "…"`` lines; ``None`` when the scripts are not one
    linear chain with one head (a merge, a branch, a line this does not parse)."""
    revisions: dict[str, str | None] = {}
    for script in sorted(versions.glob("*.py")):
        if script.name == "__init__.py":
            continue
        source = script.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(source), _DOWN.findall(source)
        if len(revision) != 1 or len(down) != 1 or revision[0] in revisions:
            return None
        revisions[revision[0]] = down[0] or None
    parents = [d for d in revisions.values() if d is not None]
    if len(set(parents)) != len(parents) or not set(parents) <= set(revisions):
        return None
    heads = set(revisions) - set(parents)
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine, versions: Path = VERSIONS) -> bool:
    """Whether the database of ``engine`` records exactly the head revision of ``versions``
    (one ``SELECT`` of ``alembic_version``; False when the table is missing or unreadable)."""
    head = shipped_head(versions)
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except Exception:  # no table yet (a new database), or no access: the full upgrade decides
        return False
    return [tuple(r) for r in rows] == [(head,)]


def snapshot(connection: sqlite3.Connection, revision: str) -> str:
    """The snapshot text of the schema of ``connection`` (a SQLite database at ``revision``):
    a header naming the revision, then every statement of ``sqlite_master`` in creation order,
    one per line group, each ending with ``;`` on a line of its own."""
    rows = connection.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
    ).fetchall()
    return f"-- revision: {revision}\n" + "".join(f"{sql}\n;\n" for (sql,) in rows)


def _statements(snapshot_text: str) -> list[str]:
    """The statements of a :func:`snapshot`, each exactly as ``sqlite_master`` held it."""
    body = _SNAPSHOT_REVISION.sub("", snapshot_text, count=1)
    if not body.endswith("\n;\n"):
        return []
    return body[: -len("\n;\n")].split("\n;\n")


def create_sqlite_head(engine: Engine, snapshot_path: Path = SQLITE_SNAPSHOT) -> bool:
    """Give an empty SQLite database the newest schema from the snapshot, in one transaction.

    Returns False, having changed nothing, when ``engine`` is not SQLite, the snapshot is
    missing, unreadable or of another revision than the scripts' head, or the database holds any schema
    object already (checked inside the transaction, so two processes creating one file at once
    do it once). Then the caller upgrades through Alembic.
    """
    if engine.dialect.name != "sqlite":
        return False
    head = shipped_head()
    try:
        text_ = snapshot_path.read_text(encoding="utf-8")
    except OSError:
        return False
    found = _SNAPSHOT_REVISION.match(text_)
    statements = _statements(text_)
    if head is None or found is None or found.group(1) != head or not statements:
        return False
    # Through SQLAlchemy, so that an error is a SQLAlchemy one the command line explains (a
    # folder that does not exist, a read-only file), naming the database.
    with engine.connect() as connection:
        dbapi = connection.connection.driver_connection
        assert isinstance(dbapi, sqlite3.Connection)
        isolation = dbapi.isolation_level
        dbapi.isolation_level = None  # the DDL inside this transaction, not committed one by one
        run = connection.exec_driver_sql
        try:
            run("BEGIN IMMEDIATE")
            try:
                if run("SELECT COUNT(*) FROM sqlite_master").scalar():
                    run("ROLLBACK")
                    return False
                for statement in statements:
                    run(statement)
                # The two rows the migrations write: the revision stamp and the database's
                # identity (a new uuid per database, as migration 0006 writes it).
                run("INSERT INTO alembic_version (version_num) VALUES (?)", (head,))
                created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                run(
                    "INSERT INTO kmidi_database (id, database_uuid, created_at) VALUES (1, ?, ?)",
                    (str(uuid.uuid4()), created),
                )
                run("COMMIT")
            except BaseException:
                if dbapi.in_transaction:
                    dbapi.execute("ROLLBACK")
                raise
        finally:
            dbapi.isolation_level = isolation
    return True


def _write_snapshot(path: Path = SQLITE_SNAPSHOT) -> None:
    """Run the migrations on a new file and write its schema to ``path``."""
    import tempfile

    from .db import make_engine
    from .migrate import head_revision, upgrade

    revision = head_revision()
    if revision is None or revision != shipped_head():
        raise SystemExit(f"the migration scripts have no single head this can read ({revision})")
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "head.sqlite"
        engine = make_engine(f"sqlite:///{database}")
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        with contextlib.closing(sqlite3.connect(database)) as connection:
            path.write_text(snapshot(connection, revision), encoding="utf-8")


if __name__ == "__main__":
    _write_snapshot()
    print(f"wrote {SQLITE_SNAPSHOT}", file=sys.stderr)
