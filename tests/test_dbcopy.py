"""``kmidi-ingest db copy``: SQLite → PostgreSQL → SQLite round trip, interruption and resume,
verification that notices a difference."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text

from kmidi_ingest import cli, dbcopy, ingest, migrate, store
from kmidi_ingest.db import make_engine
from kmidi_ingest.models import Base
from tests.conftest import EXAMPLES
from tests.dbutil import counts


@pytest.fixture(scope="module")
def examples_sqlite(tmp_path_factory) -> str:
    """The bundled example cues ingested once into SQLite (the copy source)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('src')}/examples.sqlite"
    summary = ingest(EXAMPLES, 16000, database_url=url)
    assert summary.ok and summary.notes > 100, summary.problems
    return url


def sqlite_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, in id order, as sqlite3 returns it (no normalisation)."""
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return {
            name: conn.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()
            for name in Base.metadata.tables
        }


def test_sqlite_to_postgresql_to_sqlite_is_row_for_row_identical(
    examples_sqlite, pg_url, tmp_path, capsys
):
    back = f"sqlite:///{tmp_path}/back.sqlite"
    assert cli.main(["db", "copy", examples_sqlite, pg_url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"at revision {migrate.head_revision()}" in out
    assert f"verified: {len(Base.metadata.tables)} tables identical" in out
    assert "midi_notes" in out and "MISMATCH" not in out

    assert cli.main(["db", "copy", pg_url, back, "--chunk-rows", "7", "--quiet"]) == 0
    original, returned = sqlite_rows(examples_sqlite), sqlite_rows(back)
    assert returned == original
    assert len(original["midi_notes"]) == counts(examples_sqlite)["midi_notes"] > 100
    assert original["audio_feature_chunks"] and isinstance(
        original["audio_feature_chunks"][0][-1], bytes
    )

    # Identity sequences were moved past the copied ids: new rows get fresh ids.
    engine = make_engine(pg_url)
    try:
        run_id = store.start_run(
            engine, root="/x", sample_rate_hz=1, matcher="fuzzy", version="t", parameters={}
        )
        assert run_id == len(original["ingest_runs"]) + 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT nextval(pg_get_serial_sequence('midi_notes', 'id'))"))
            next_note = conn.execute(
                text("SELECT nextval(pg_get_serial_sequence('midi_notes', 'id'))")
            ).scalar_one()
        assert next_note > max(row[0] for row in original["midi_notes"])
    finally:
        engine.dispose()


def snapshot(url: str) -> dict[str, object]:
    """Revision, identity row and (count, checksum) of every kmidi table: all a copy could touch."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = {
                t.name: dbcopy.table_checksum(conn, t) for t in dbcopy.copyable_tables(engine)
            }
            has_identity = inspect(engine).has_table(dbcopy.IDENTITY.name)
            identity = conn.execute(select(dbcopy.IDENTITY)).all() if has_identity else None
        return {"revision": migrate.current_revision(engine), "identity": identity, **tables}
    finally:
        engine.dispose()


def origin(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(dbcopy.IDENTITY.c.copied_from_uuid)).scalar_one()
    finally:
        engine.dispose()


def uuid_of(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return dbcopy.database_uuid(engine)
    finally:
        engine.dispose()


def test_an_unrelated_target_is_refused_and_left_untouched(
    examples_sqlite, db_url, tmp_path, capsys
):
    # Another database of the same project: one cue ingested into the target directly.
    one = tmp_path / "one" / "Reel 2"
    shutil.copytree(EXAMPLES / "Reel 2", one)
    summary = ingest(one.parent, 16000, database_url=db_url)
    assert summary.ok, summary.problems
    before = snapshot(db_url)
    assert before["cues"][0] == 1

    assert cli.main(["db", "copy", examples_sqlite, db_url, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "already holds" in captured.err and "(1 cues)" in captured.err
    assert "is no copy of this source (database " in captured.err
    assert "it was not made by `db copy`" in captured.err
    assert "nothing was written" in captured.err and "db downgrade base" in captured.err
    assert snapshot(db_url) == before

    with pytest.raises(dbcopy.CopyRefused) as refused:
        dbcopy.copy_database(make_engine(examples_sqlite), make_engine(db_url))
    assert refused.value.exit_code == 2
    assert snapshot(db_url) == before


def test_a_copy_of_another_source_is_refused(examples_sqlite, db_url, tmp_path, capsys):
    # `other` holds the very same rows as the examples but is another database (its own uuid).
    other = f"sqlite:///{tmp_path}/other.sqlite"
    assert cli.main(["db", "copy", examples_sqlite, other, "--quiet"]) == 0
    assert cli.main(["db", "copy", other, db_url, "--quiet"]) == 0
    assert origin(db_url) == uuid_of(other) != uuid_of(examples_sqlite)
    capsys.readouterr()
    before = snapshot(db_url)

    assert cli.main(["db", "copy", examples_sqlite, db_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        f"is a copy of another database ({uuid_of(other)}), "
        f"not of this source (database {uuid_of(examples_sqlite)})"
    ) in err
    assert snapshot(db_url) == before

    # The copy of `other` itself is still a finished copy of it: re-running writes nothing.
    assert cli.main(["db", "copy", other, db_url, "--quiet"]) == 0
    assert "0 rows written" in capsys.readouterr().out


def test_a_copy_written_to_afterwards_is_refused(examples_sqlite, tmp_path, capsys):
    target = f"sqlite:///{tmp_path}/t.sqlite"
    assert cli.main(["db", "copy", examples_sqlite, target, "--quiet"]) == 0
    engine = make_engine(target)
    try:
        run_id = store.start_run(
            engine, root="/x", sample_rate_hz=1, matcher="fuzzy", version="t", parameters={}
        )
    finally:
        engine.dispose()
    capsys.readouterr()
    before = snapshot(target)
    assert cli.main(["db", "copy", examples_sqlite, target, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"ingest_runs: {run_id} rows up to id {run_id}, the source has {run_id - 1}" in err
    assert snapshot(target) == before


def test_a_target_at_another_revision_with_data_is_refused(examples_sqlite, tmp_path, capsys):
    target = f"sqlite:///{tmp_path}/t.sqlite"
    engine = make_engine(target)
    try:
        migrate.upgrade(engine, "0005")
        store.start_run(
            engine, root="/x", sample_rate_hz=1, matcher="fuzzy", version="t", parameters={}
        )
    finally:
        engine.dispose()
    before = snapshot(target)
    assert cli.main(["db", "copy", examples_sqlite, target, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"at revision 0005, the source is at {migrate.head_revision()}" in err
    assert snapshot(target) == before


def test_an_empty_target_with_the_schema_is_accepted(examples_sqlite, tmp_path, capsys):
    target = f"sqlite:///{tmp_path}/t.sqlite"
    assert cli.main(["db", "upgrade", "--database-url", target]) == 0
    assert cli.main(["db", "copy", examples_sqlite, target, "--quiet"]) == 0
    assert "verified:" in capsys.readouterr().out
    assert origin(target) == uuid_of(examples_sqlite)


class Interrupt(Exception):
    pass


def test_a_source_before_revision_0006_is_judged_by_its_rows(examples_sqlite, tmp_path, capsys):
    # No uuid on either side: an interrupted copy still resumes, an unrelated target is refused.
    old = f"sqlite:///{tmp_path}/old.sqlite"
    assert cli.main(["db", "copy", examples_sqlite, old, "--quiet"]) == 0
    source = make_engine(old)
    with source.begin() as conn:  # revision 0005 cannot read compressed features
        conn.execute(text("DELETE FROM audio_feature_chunks"))
        conn.execute(text("DELETE FROM audio_features"))
    migrate.downgrade(source, "0005")
    assert dbcopy.database_uuid(source) is None
    resumed, unrelated = (
        make_engine(f"sqlite:///{tmp_path}/r.sqlite"),
        make_engine(f"sqlite:///{tmp_path}/u.sqlite"),
    )
    calls = 0

    def die_after_five(table: str, rows: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise Interrupt(table)

    try:
        with pytest.raises(Interrupt):
            dbcopy.copy_database(source, resumed, chunk_rows=10, on_chunk=die_after_five)
        assert migrate.current_revision(resumed) == "0005"
        assert dbcopy.target_state(source, resumed).kind == "resume"
        assert dbcopy.copy_database(source, resumed).ok

        migrate.upgrade(unrelated, "0005")
        store.start_run(
            unrelated, root="/x", sample_rate_hz=1, matcher="fuzzy", version="t", parameters={}
        )
        with pytest.raises(dbcopy.CopyRefused) as refused:
            dbcopy.copy_database(source, unrelated)
        assert "no earlier copy of this source (ingest_runs: row 1 differs)" in str(refused.value)
        assert counts(str(unrelated.url))["ingest_runs"] == 1
    finally:
        for engine in (source, resumed, unrelated):
            engine.dispose()


def test_interrupted_copy_resumes_without_duplicates(examples_sqlite, db_url):
    source, target = make_engine(examples_sqlite), make_engine(db_url)
    chunks = 0

    def die_after_twenty(table: str, rows: int) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 20:
            raise Interrupt(table)

    try:
        with pytest.raises(Interrupt):
            dbcopy.copy_database(source, target, chunk_rows=10, on_chunk=die_after_twenty)
        partial = counts(db_url)
        total = counts(examples_sqlite)
        # The source's identity was recorded before the first data row.
        assert origin(db_url) == dbcopy.database_uuid(source) != dbcopy.database_uuid(target)
        assert dbcopy.target_state(source, target).kind == "resume"
        assert 0 < sum(partial.values()) < sum(total.values())
        assert not all(c.ok for c in dbcopy.verify(source, target))

        todo: dict[str, int] = {}
        report = dbcopy.copy_database(source, target, chunk_rows=10, on_start=todo.update)
        assert report.ok, [c for c in report.checks if not c.ok]
        assert counts(db_url) == total
        assert report.rows_copied == todo
        assert sum(report.rows_copied.values()) == sum(total.values()) - sum(partial.values())

        # A third run has nothing left to do.
        again = dbcopy.copy_database(source, target)
        assert again.ok and sum(again.rows_copied.values()) == 0
    finally:
        source.dispose()
        target.dispose()


def test_verification_reports_a_changed_row(examples_sqlite, tmp_path, capsys):
    target = f"sqlite:///{tmp_path}/t.sqlite"
    assert cli.main(["db", "copy", examples_sqlite, target, "--quiet"]) == 0
    capsys.readouterr()
    with sqlite3.connect(target.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE midi_notes SET velocity = velocity + 1 WHERE id = 3")
    assert cli.main(["db", "copy", examples_sqlite, target, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "midi_notes" in out and "MISMATCH" in out
    assert "verification FAILED for: midi_notes" in out
    assert "0 rows written" in out


def test_source_without_schema_is_refused(tmp_path, capsys):
    empty, target = f"sqlite:///{tmp_path}/empty.sqlite", f"sqlite:///{tmp_path}/t.sqlite"
    assert cli.main(["db", "copy", empty, target, "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"kmidi-ingest db: SOURCE_URL: no database at {tmp_path}/empty.sqlite\n"
    )
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    assert cli.main(["db", "copy", empty, target, "--quiet"]) == 1
    assert "no kmidi schema" in capsys.readouterr().err
    assert cli.main(["db", "copy", empty, target, "--chunk-rows", "0"]) == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "\\N"),
        (True, "1"),
        (False, "0"),
        (7, "7"),
        (0.1, "0.1"),
        (1e-300, "1e-300"),
        (float("nan"), "nan"),
        (b"\x00\xff", "00ff"),
        (datetime(2026, 1, 2, 3, 4, 5, 6), "2026-01-02T03:04:05.000006+00:00"),
        (
            datetime(2026, 1, 2, 4, 4, 5, 6, tzinfo=timezone(timedelta(hours=1))),
            "2026-01-02T03:04:05.000006+00:00",
        ),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05+00:00"),
        ("é", "é"),
    ],
)
def test_normalise_makes_backends_agree(value, expected):
    assert dbcopy.normalise(value) == expected


def test_chunks_are_split_by_bytes_too():
    rows = [{"id": i, "data": b"x" * 400} for i in range(10)]
    batches = list(dbcopy._byte_batches(rows, 1000))
    assert [len(b) for b in batches] == [2, 2, 2, 2, 2]
    assert [r["id"] for b in batches for r in b] == list(range(10))
    assert [len(b) for b in dbcopy._byte_batches([{"data": b"x" * 5000}], 1000)] == [1]


def test_copy_into_a_dsql_profile_target(examples_sqlite, pg_url, dsql_on_postgresql, capsys):
    # The target is migrated one DDL statement per transaction and filled in small chunks.
    assert cli.main(["db", "copy", examples_sqlite, f"{pg_url}?kmidi_profile=dsql", "--quiet"]) == 0
    assert "verified:" in capsys.readouterr().out
    assert counts(pg_url) == counts(examples_sqlite)
