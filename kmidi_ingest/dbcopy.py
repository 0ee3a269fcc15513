"""Copy a whole database between environments (SQLite ↔ PostgreSQL), resumable and verified.

The target is first migrated to the source's Alembic revision. Tables are then copied parent
first (foreign-key order), each in id order, in chunks of at most ``chunk_rows`` rows with one
transaction per chunk. A copy that is interrupted leaves every table either complete, empty, or
holding a prefix of the source's rows in id order, so the next run resumes each table from the
largest id already in the target: re-running finishes the copy without duplicates. Ids are
preserved; PostgreSQL identity sequences are moved past the copied ids afterwards.

Before anything is written the target is classified (:func:`target_state`): it must be empty
(no rows in any kmidi table) or an earlier copy of this very source — its ``kmidi_database``
row names the source's uuid and every table holds a prefix of the source's rows (same count up
to its largest id, same first and last row). Anything else is refused with :class:`CopyRefused`
and the target is left untouched: a copy never merges two databases.

Verification compares row counts and a SHA-256 checksum per table computed in Python over the
rows in id order with values normalised so both backends agree (see :func:`normalise`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
    true,
    tuple_,
    update,
)

from . import migrate
from .config import mask_url
from .db import DSQL_MAX_BYTES
from .errors import StoreError
from .models import STORED_LENGTHS, Base
from .store import retrying

DEFAULT_CHUNK_ROWS = 2000  # well below the 3,000 rows per transaction that Aurora DSQL allows
MAX_CHUNK_BYTES = DSQL_MAX_BYTES  # a chunk of feature bytes is split further to stay below this

IDENTITY = Table(
    "kmidi_database",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("database_uuid", String(36), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("copied_from_uuid", String(36)),
    Column("copied_from_url", Text),
    Column("copied_at", DateTime(timezone=True)),
)
"""One row (migration 0006): this database's uuid and the source it is a copy of."""

ChunkCallback = Callable[[str, int], None]
"""``on_chunk(table, rows)``: called after each committed chunk of ``rows`` rows of ``table``."""


@dataclass(frozen=True, kw_only=True)
class TableCheck:
    """Row counts and checksums of one table in the source and the target."""

    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256


class CopyRefused(StoreError):
    """The target holds data that is no earlier copy of this source; nothing was written.

    ``exit_code`` is the CLI's usage exit code: the arguments, not the data, are wrong.
    """

    exit_code = 2


@dataclass(frozen=True, kw_only=True)
class TargetState:
    """What the target holds before a copy: ``empty``, or ``resume`` of an earlier copy."""

    kind: str
    rows: int


@dataclass(frozen=True, kw_only=True)
class CopyReport:
    """What a copy did: the revision, rows written now, and the verification per table."""

    revision: str | None
    rows_copied: dict[str, int]
    checks: tuple[TableCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def copy_database(
    source: Engine,
    target: Engine,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_start: Callable[[dict[str, int]], None] | None = None,
    on_chunk: ChunkCallback | None = None,
) -> CopyReport:
    """Copy every table of ``source`` into ``target``, then verify the two.

    Parameters
    ----------
    source, target
        Engines of the two databases. The target must be empty or hold an earlier, interrupted
        copy of the same source.
    chunk_rows
        Rows per transaction (fewer when their values exceed :data:`MAX_CHUNK_BYTES`).
    on_start
        Called once with the number of rows still to copy per table.
    on_chunk
        Called after each committed chunk (progress reporting; an exception raised here stops
        the copy with everything committed so far kept).

    Returns
    -------
    CopyReport
        Rows written by this run and the per-table verification.

    Raises
    ------
    CopyRefused
        The target holds data and is no earlier copy of ``source`` (nothing was written).
    StoreError
        The source has no schema, or the target is at a revision the source is not at or above.
    """
    if chunk_rows < 1:
        raise StoreError(f"chunk_rows must be at least 1, got {chunk_rows}")
    target_state(source, target)
    revision = prepare_target(source, target)
    record_origin(source, target)
    tables = copyable_tables(source)
    todo = _remaining(source, target, tables)
    if on_start is not None:
        on_start(todo)
    copied: dict[str, int] = {}
    for table in tables:
        copied[table.name] = _copy_table(source, target, table, chunk_rows, on_chunk)
    reset_sequences(target, tables)
    return CopyReport(revision=revision, rows_copied=copied, checks=tuple(verify(source, target)))


def _shown(engine: Engine) -> str:
    return mask_url(str(engine.url.render_as_string(hide_password=False)))


def database_uuid(engine: Engine) -> str | None:
    """The uuid of the database (``None`` before revision 0006)."""
    if not inspect(engine).has_table(IDENTITY.name):
        return None
    with engine.connect() as conn:
        value = conn.execute(select(IDENTITY.c.database_uuid).where(IDENTITY.c.id == 1)).scalar()
    return None if value is None else str(value)


def _copied_from(engine: Engine) -> str | None:
    if not inspect(engine).has_table(IDENTITY.name):
        return None
    with engine.connect() as conn:
        value = conn.execute(select(IDENTITY.c.copied_from_uuid).where(IDENTITY.c.id == 1)).scalar()
    return None if value is None else str(value)


def target_state(source: Engine, target: Engine) -> TargetState:
    """Decide, reading only, whether ``target`` may receive a copy of ``source``.

    Returns
    -------
    TargetState
        ``empty`` (no rows in any kmidi table) or ``resume`` (an earlier copy of this source:
        same revision, ``copied_from_uuid`` is the source's uuid — when both have one — and each
        table a prefix of the source's rows in id order).

    Raises
    ------
    CopyRefused
        Anything else, with the reason and what to do.
    """
    present = set(inspect(target).get_table_names())
    tables = [t for t in copyable_tables(target) if t.name in present]
    with target.connect() as dst:
        held = {t.name: _count(dst, t) for t in tables}
    rows = sum(held.values())
    if rows == 0:
        return TargetState(kind="empty", rows=0)
    where = f"the target {_shown(target)} already holds {rows} rows ({held.get('cues', 0)} cues)"
    todo = (
        "; nothing was written. Copy into an empty database, or empty the target first "
        "(`kmidi-ingest db downgrade base --database-url TARGET_URL` drops every kmidi table)"
    )
    source_rev, target_rev = migrate.current_revision(source), migrate.current_revision(target)
    if source_rev != target_rev:
        raise CopyRefused(
            f"{where} at revision {target_rev}, the source is at {source_rev}: "
            f"it is no copy of this source{todo}"
        )
    source_uuid, origin = database_uuid(source), _copied_from(target)
    if source_uuid is not None and origin != source_uuid:
        this = f"this source (database {source_uuid})"
        if origin is None:
            why = f"is no copy of {this}: it was not made by `db copy`"
        else:
            why = f"is a copy of another database ({origin}), not of {this}"
        raise CopyRefused(f"{where} and {why}{todo}")
    mismatch = _prefix_mismatch(source, target, copyable_tables(source))
    if mismatch is not None:
        raise CopyRefused(f"{where} that are no earlier copy of this source ({mismatch}){todo}")
    return TargetState(kind="resume", rows=rows)


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _prefix_mismatch(source: Engine, target: Engine, tables: Sequence[Table]) -> str | None:
    """Why ``target``'s tables are not each a prefix of ``source``'s rows, or ``None``."""
    with source.connect() as src, target.connect() as dst:
        for table in tables:
            count = _count(dst, table)
            if count == 0:
                continue
            low, high = dst.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
            upto = int(
                src.execute(
                    select(func.count()).select_from(table).where(table.c.id <= high)
                ).scalar_one()
            )
            if upto != count:
                return f"{table.name}: {count} rows up to id {high}, the source has {upto}"
            for row_id in (low, high):
                query = select(*table.columns).where(table.c.id == row_id)
                mine, theirs = dst.execute(query).one(), src.execute(query).one_or_none()
                if theirs is None or [normalise(v) for v in mine] != [normalise(v) for v in theirs]:
                    return f"{table.name}: row {row_id} differs"
    return None


def record_origin(source: Engine, target: Engine) -> None:
    """Write the source's uuid into the target's ``kmidi_database`` row (before any data row)."""
    source_uuid = database_uuid(source)
    if source_uuid is None or not inspect(target).has_table(IDENTITY.name):
        return
    values = {
        "copied_from_uuid": source_uuid,
        "copied_from_url": _shown(source),
        "copied_at": datetime.now(UTC),
    }
    retrying(
        target,
        lambda conn: conn.execute(
            update(IDENTITY)
            .where(IDENTITY.c.id == 1, IDENTITY.c.copied_from_uuid.is_distinct_from(source_uuid))
            .values(**values)
        ),
    )


def prepare_target(source: Engine, target: Engine) -> str | None:
    """Migrate ``target`` to the revision ``source`` is at; return that revision."""
    revision = migrate.current_revision(source)
    if revision is None:
        raise StoreError(
            "the source database has no kmidi schema (no Alembic revision); "
            "run `kmidi-ingest db upgrade` on it or check the URL",
            path=mask_url(str(source.url.render_as_string(hide_password=False))),
        )
    current = migrate.current_revision(target)
    if current == revision:
        return revision
    known = [r.revision for r in migrate.history()]
    if current is not None and (
        current not in known
        or revision not in known
        or known.index(current) > known.index(revision)
    ):
        raise StoreError(
            f"the target is at revision {current}, the source at {revision}; "
            f"upgrade the source or downgrade the target first",
            path=mask_url(str(target.url.render_as_string(hide_password=False))),
        )
    migrate.upgrade(target, revision)
    return revision


def copyable_tables(source: Engine) -> list[Table]:
    """The model tables present in ``source``, parents before children, with only the columns
    that exist there (the source may be at an older revision than the models)."""
    inspector = inspect(source)
    present = set(inspector.get_table_names())
    out = []
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            continue
        out.append(_as_in_source(table, inspector.get_columns(table.name)))
    return out


def _as_in_source(table: Table, reflected: list[Any]) -> Table:
    """``table`` with the columns the source has: the model's that exist there, and those of an
    older revision the models no longer have (e.g. ``midi_notes.start_s`` before 0009)."""
    # SQLite's stored note lengths are read as the end times they make (same values, model names).
    names = {c["name"] for c in reflected} - STORED_LENGTHS.keys()
    if names == set(table.columns.keys()):
        return table
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key) for c in table.columns if c.name in names
    ]
    columns += [Column(c["name"], c["type"]) for c in reflected if c["name"] not in table.columns]
    columns = [c for c in columns if c.name not in STORED_LENGTHS]
    return Table(table.name, MetaData(), *columns)


def _key(table: Table) -> list[Column]:
    """The primary key's columns: ``id``, or ``(track_id, id)`` for ``midi_notes``."""
    return list(table.primary_key.columns)


def _last_key(conn: Connection, table: Table) -> tuple[Any, ...] | None:
    """The largest primary key in ``table`` (``None`` when empty), found through the key."""
    key = _key(table)
    row = conn.execute(select(*key).order_by(*(c.desc() for c in key)).limit(1)).first()
    return None if row is None else tuple(row)


def _after(table: Table, last: tuple[Any, ...] | None) -> Any:
    if last is None:
        return true()
    return tuple_(*_key(table)) > tuple_(*last)


def _remaining(source: Engine, target: Engine, tables: Sequence[Table]) -> dict[str, int]:
    out = {}
    with source.connect() as src, target.connect() as dst:
        for table in tables:
            start = _last_key(dst, table)
            out[table.name] = int(
                src.execute(
                    select(func.count()).select_from(table).where(_after(table, start))
                ).scalar_one()
            )
    return out


def _copy_table(
    source: Engine,
    target: Engine,
    table: Table,
    chunk_rows: int,
    on_chunk: ChunkCallback | None,
) -> int:
    """Copy the rows of ``table`` past the target's largest key, in key order (so each chunk is
    one range of the key, and a rerun resumes after the last committed chunk)."""
    with target.connect() as dst:
        last = _last_key(dst, table)
    columns = list(table.columns)
    key_names = [c.name for c in _key(table)]
    written, to_stored = _as_in_target(target, table)
    copied = 0
    with source.connect() as src:
        while True:
            rows = src.execute(
                select(*columns).where(_after(table, last)).order_by(*_key(table)).limit(chunk_rows)
            ).all()
            if not rows:
                return copied
            dicts = [to_stored(row._asdict()) for row in rows]
            for batch in _byte_batches(dicts, MAX_CHUNK_BYTES):
                retrying(target, lambda conn, b=batch: conn.execute(insert(written), b))
                copied += len(batch)
                if on_chunk is not None:
                    on_chunk(table.name, len(batch))
            last = tuple(getattr(rows[-1], name) for name in key_names)


def _as_in_target(
    target: Engine, table: Table
) -> tuple[Table, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The table that ``table``'s rows go into on ``target``, and what makes a source row one
    of its rows: the row itself, but where the target stores note lengths (SQLite from 0012 on)
    in place of end times, which are computed columns there and take no value."""
    if table.name != "midi_notes":
        return table, _same
    stored = {c["name"] for c in inspect(target).get_columns(table.name)}
    if not STORED_LENGTHS.keys() <= stored:
        return table, _same
    ends = {end for end, _start in STORED_LENGTHS.values()}
    columns = [Column(c.name, c.type, primary_key=c.primary_key) for c in table.columns]
    columns = [c for c in columns if c.name not in ends]
    columns += [Column(length, BigInteger) for length in STORED_LENGTHS]
    return Table(table.name, MetaData(), *columns), _with_lengths


def _same(row: dict[str, Any]) -> dict[str, Any]:
    return row


def _with_lengths(row: dict[str, Any]) -> dict[str, Any]:
    for length, (end, start) in STORED_LENGTHS.items():
        row[length] = row.pop(end) - row[start]
    return row


def _byte_batches(rows: list[dict[str, Any]], max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive runs of ``rows`` of at most ``max_bytes`` bytes of values (at least one row)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_size = sum(len(v) if isinstance(v, str | bytes) else 8 for v in row.values())
        if batch and size + row_size > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


def reset_sequences(engine: Engine, tables: Iterable[Table]) -> None:
    """Move each PostgreSQL identity sequence past the largest id (no-op on SQLite, whose rowid
    allocation follows the largest id by itself)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in tables:
            # setval(seq, max + 1, false): the next nextval() returns max + 1 (1 when empty).
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                )
            )


def normalise(value: Any) -> str:
    """A backend-neutral text form of one column value.

    NULL → ``\\N``; booleans as ``0``/``1``; floats via ``repr`` (exact round trip; NaN and
    infinities by name); bytes as hex; datetimes in UTC ISO 8601 (a naive value, as SQLite
    returns them, is taken as UTC — the schema stores UTC); everything else via ``str``.
    """
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    return str(value)


def table_checksum(conn: Connection, table: Table, *, batch_rows: int = 5000) -> tuple[int, str]:
    """Row count and SHA-256 over the normalised rows of ``table`` in key order, columns sorted
    by name."""
    columns = sorted(table.columns, key=lambda c: c.name)
    digest = hashlib.sha256()
    count = 0
    result = conn.execution_options(yield_per=batch_rows).execute(
        select(*columns).order_by(*_key(table))
    )
    for row in result:
        digest.update("\x1f".join(normalise(v) for v in row).encode())
        digest.update(b"\x1e")
        count += 1
    return count, digest.hexdigest()


def verify(source: Engine, target: Engine) -> list[TableCheck]:
    """Compare row counts and checksums of every table of ``source`` with ``target``."""
    tables = copyable_tables(source)
    checks = []
    with source.connect() as src, target.connect() as dst:
        for table in tables:
            src_rows, src_sum = table_checksum(src, table)
            dst_rows, dst_sum = table_checksum(dst, table)
            checks.append(
                TableCheck(
                    table=table.name,
                    source_rows=src_rows,
                    target_rows=dst_rows,
                    source_sha256=src_sum,
                    target_sha256=dst_sum,
                )
            )
    return checks
