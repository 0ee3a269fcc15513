"""The Aurora DSQL profile, proven on the local PostgreSQL: every statement and transaction sent
during migration + ingest (+ a forced re-ingest) is recorded and checked against DSQL's limits."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import mido
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.pool import Pool

from kmidi_ingest import ingest, store
from kmidi_ingest.db import DSQL_MAX_BYTES, DSQL_MAX_ROWS, is_dsql, make_engine
from tests.conftest import note_track, write_midi
from tests.dbutil import counts, scalar

SR = 8000
BIG_NOTES = 4000
FORBIDDEN = re.compile(
    r"\b(BIG)?SERIAL\b|\bJSONB?\b|\bTRUNCATE\b|\bSAVEPOINT\b|\bTEMP(ORARY)?\s+TABLE\b|\bCOPY\b",
    re.I,
)
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|COMMENT)\b", re.I)
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.I)


@dataclass
class Transaction:
    statements: list[str] = field(default_factory=list)
    rows_written: int = 0
    bytes_written: int = 0
    rolled_back: bool = False

    @property
    def ddl(self) -> int:
        return sum(1 for s in self.statements if DDL.match(s))


def _size(params: object) -> int:
    if isinstance(params, str | bytes | memoryview):
        return len(params)
    if isinstance(params, dict):
        return sum(_size(v) for v in params.values())
    if isinstance(params, list | tuple):
        return sum(_size(v) for v in params)
    return 8


class Audit:
    """Every statement sent by any engine, grouped into the database transactions it ran in."""

    def __init__(self) -> None:
        self.done: list[Transaction] = []
        self.open: dict[int, Transaction] = {}
        self.rows_by_table: dict[str, int] = defaultdict(int)

    def _close(self, dbapi_conn: object, *, rolled_back: bool) -> None:
        txn = self.open.pop(id(dbapi_conn), None)
        if txn is not None and txn.statements:
            txn.rolled_back = rolled_back
            self.done.append(txn)

    def before(self, conn, _cursor, statement, parameters, _context, _many) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        txn = self.open.setdefault(id(dbapi_conn), Transaction())
        txn.statements.append(statement)
        if WRITE.match(statement):
            txn.bytes_written += _size(parameters)

    def after(self, conn, cursor, statement, _parameters, _context, _many) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        if WRITE.match(statement) and cursor.rowcount > 0:
            self.open[id(dbapi_conn)].rows_written += cursor.rowcount
            match = re.match(r"\s*INSERT INTO (\w+)", statement)
            if match:
                self.rows_by_table[match.group(1)] += cursor.rowcount
        if dbapi_conn.autocommit:  # every statement is its own transaction
            self._close(dbapi_conn, rolled_back=False)

    def commit(self, conn) -> None:
        self._close(conn.connection.dbapi_connection, rolled_back=False)

    def rollback(self, conn) -> None:
        self._close(conn.connection.dbapi_connection, rolled_back=True)

    def reset(self, dbapi_conn, _record, _reset_state) -> None:
        self._close(dbapi_conn, rolled_back=True)

    def handle_error(self, context) -> None:
        if context.connection is not None and context.connection.connection is not None:
            self._close(context.connection.connection.dbapi_connection, rolled_back=True)

    def transactions(self) -> list[Transaction]:
        return self.done + [t for t in self.open.values() if t.statements]


@pytest.fixture
def audit() -> Iterator[Audit]:
    recorder = Audit()
    hooks = [
        (Engine, "before_cursor_execute", recorder.before),
        (Engine, "after_cursor_execute", recorder.after),
        (Engine, "commit", recorder.commit),
        (Engine, "rollback", recorder.rollback),
        (Engine, "handle_error", recorder.handle_error),
        (Pool, "reset", recorder.reset),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield recorder
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


@pytest.fixture
def cues(make_cue, tmp_path):
    """A cue with stems and a mix, and a MIDI-only cue with more notes than one DSQL
    transaction may hold."""
    make_cue("1M01 Opening")
    notes = [(i * 60, i * 60 + 50, 36 + i % 48) for i in range(BIG_NOTES)]
    write_midi(
        tmp_path / "cues" / "1M02 Big" / "MIDI" / "1M02 Big.mid",
        [[mido.MetaMessage("set_tempo", tempo=400_000)], note_track("Piano", notes)],
    )
    return tmp_path / "cues"


def dsql_url(pg_url: str) -> str:
    return f"{pg_url}?kmidi_profile=dsql"


def assert_within_dsql_limits(audit: Audit, *, max_rows: int, max_bytes: int) -> None:
    transactions = audit.transactions()
    assert transactions
    for txn in transactions:
        for statement in txn.statements:
            assert not FORBIDDEN.search(statement), statement
            if DDL.match(statement):
                assert not re.search(r"\[\]|\bARRAY\b", statement, re.I), statement
        assert txn.ddl <= 1, [s for s in txn.statements if DDL.match(s)]
        assert txn.rows_written <= max_rows, (txn.rows_written, txn.statements[:3])
        assert txn.bytes_written <= max_bytes, (txn.bytes_written, txn.statements[:3])


def test_migration_and_ingest_stay_within_dsql_limits(cues, pg_url, audit, dsql_on_postgresql):
    url = dsql_url(pg_url)
    engine = make_engine(url)
    assert is_dsql(engine)
    engine.dispose()
    summary = ingest(cues, SR, database_url=url)
    assert summary.ok, summary.problems
    assert summary.notes == 5 + BIG_NOTES

    assert_within_dsql_limits(audit, max_rows=DSQL_MAX_ROWS, max_bytes=DSQL_MAX_BYTES)
    ddl = [t for t in audit.transactions() if t.ddl]
    assert len(ddl) > 30  # every CREATE TABLE / INDEX / VIEW in a transaction of its own
    # DSQL builds indexes asynchronously only, and wants an explicit identity cache.
    statements = [s for t in ddl for s in t.statements if DDL.match(s)]
    indexes = [s for s in statements if re.match(r"CREATE (UNIQUE )?INDEX", s)]
    assert len(indexes) > 20 and all(" INDEX ASYNC " in s for s in indexes), indexes
    tables = [s for s in statements if s.lstrip().startswith("CREATE TABLE")]
    identities = [s for s in tables if "AS IDENTITY" in s]
    # 21 tables; midi_notes is made twice (0001, and rebuilt compact by 0007).
    named = {re.match(r"\s*CREATE TABLE (\w+)", s).group(1) for s in identities}
    assert len(named) == 21 and all("AS IDENTITY (CACHE 65536)" in s for s in identities)
    # Every note went through an audited INSERT (no COPY), in more than one transaction.
    n = counts(pg_url)
    assert audit.rows_by_table["midi_notes"] == n["midi_notes"] == 5 + BIG_NOTES
    note_txns = [
        t for t in audit.transactions() if any("INTO midi_notes" in s for s in t.statements)
    ]
    assert len(note_txns) >= BIG_NOTES // DSQL_MAX_ROWS + 1
    assert scalar(pg_url, "SELECT COUNT(*) FROM cues WHERE status <> 'complete'") == 0
    assert scalar(pg_url, "SELECT COUNT(*) FROM notes_view") == 5 + BIG_NOTES

    # Re-ingesting replaces each cue: its old rows are removed in chunks, leaves first.
    audit.done.clear()
    again = ingest(cues, SR, database_url=url, force=True)
    assert again.ok and again.cues_ingested == 2
    assert_within_dsql_limits(audit, max_rows=DSQL_MAX_ROWS, max_bytes=DSQL_MAX_BYTES)
    deletes = [s for t in audit.transactions() for s in t.statements if s.startswith("DELETE")]
    assert any("midi_notes" in s for s in deletes)
    assert counts(pg_url) == {**n, "ingest_runs": 2}


def test_smaller_limits_split_rows_and_bytes(cues, pg_url, audit, dsql_on_postgresql, monkeypatch):
    # Feature chunks are bytes-heavy: a 64 KiB budget forces byte-based splits too.
    monkeypatch.setattr(store, "DSQL_MAX_ROWS", 500)
    monkeypatch.setattr(store, "DSQL_MAX_BYTES", 64 * 1024)
    summary = ingest(cues, SR, database_url=dsql_url(pg_url))
    assert summary.ok, summary.problems
    writes = [t for t in audit.transactions() if t.rows_written]
    assert_within_dsql_limits(audit, max_rows=500, max_bytes=64 * 1024 + 1024 * 1024)
    # one row may exceed a small byte budget on its own (a feature chunk of up to 1 MiB);
    # otherwise every transaction keeps to 64 KiB
    big_rows = [t for t in writes if t.bytes_written > 64 * 1024]
    assert all(t.rows_written == 1 for t in big_rows)
    assert max(t.rows_written for t in writes) == 500
    assert counts(pg_url)["midi_notes"] == 5 + BIG_NOTES


@pytest.mark.parametrize("sqlstate", ["40001", "OC000"])
def test_serialization_failure_is_retried_after_removing_the_pending_rows(
    cues, pg_url, audit, dsql_on_postgresql, sqlstate, monkeypatch
):
    monkeypatch.setattr(store, "RETRY_BASE_S", 0.001)
    url = dsql_url(pg_url)
    engine = make_engine(url)
    from kmidi_ingest import migrate

    migrate.upgrade(engine)
    # Fail the fifth INSERT into midi_notes once (a sequence is not transactional, so the count
    # survives the rollback): 1M01's notes and the big cue's first chunk of notes (three
    # statements of up to 1,000 rows) are committed by then; the big cue's rows must be removed
    # before the retry.
    with engine.begin() as conn:
        conn.execute(text("CREATE SEQUENCE fail_once"))
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF nextval('fail_once') = 5 THEN "
                f"RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '{sqlstate}'; END IF; "
                "RETURN NULL; END $$"
            )
        )
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER fail_once AFTER INSERT ON midi_notes "
                "FOR EACH STATEMENT EXECUTE FUNCTION fail_once()"
            )
        )
    engine.dispose()

    summary = ingest(cues, SR, database_url=url)
    assert summary.ok, summary.problems
    assert any(t.rolled_back for t in audit.transactions())
    assert scalar(pg_url, "SELECT last_value FROM fail_once") > 5  # it did fail, then went on
    txns = audit.transactions()
    failed = next(
        i
        for i, t in enumerate(txns)
        if t.rolled_back and any("INTO midi_notes" in s for s in t.statements)
    )
    cleanup = [s for t in txns[failed:] for s in t.statements if s.startswith("DELETE FROM")]
    assert any("midi_notes" in s for s in cleanup)  # committed leftovers were removed
    assert any(s.startswith("DELETE FROM cues") for s in cleanup)
    assert counts(pg_url)["midi_notes"] == 5 + BIG_NOTES
    assert counts(pg_url)["cues"] == 2
    assert scalar(pg_url, "SELECT COUNT(*) FROM cues WHERE status <> 'complete'") == 0
    assert scalar(pg_url, "SELECT COUNT(DISTINCT track_id) FROM midi_notes") == 3


def test_profile_needs_postgresql_and_a_known_name(tmp_path):
    from kmidi_ingest.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a postgresql"):
        make_engine(f"sqlite:///{tmp_path}/x.sqlite?kmidi_profile=dsql")
    with pytest.raises(ConfigError, match="kmidi_profile='aurora' is not known"):
        make_engine("postgresql://u@h/db?kmidi_profile=aurora")


def test_alembic_knows_the_auroradsql_dialect(tmp_path):
    from alembic.ddl.impl import _impls

    from kmidi_ingest import migrate

    engine = make_engine(f"sqlite:///{tmp_path}/x.sqlite")
    migrate.upgrade(engine)  # loads migrations/env.py, which registers the implementation
    engine.dispose()
    impl = _impls["auroradsql"]
    assert impl.__dialect__ == "auroradsql" and impl.transactional_ddl is False
