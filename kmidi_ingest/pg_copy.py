"""PostgreSQL's binary ``COPY``: whole buffers of tuples built from numpy columns.

The binary format (PostgreSQL's ``COPY`` documentation, "Binary Format") is a fixed header, then
per tuple an ``int16`` field count and per field an ``int32`` byte length (``-1``: NULL, no bytes
follow) and the value in network byte order, then an ``int16`` ``-1``. Every field here has a
fixed width, so one numpy structured array of big-endian fields *is* the tuple stream; NULL
fields are cut out of it with one boolean mask over its bytes. No Python code runs per row.

Pure functions of arrays, plus :func:`copy_in`, which sends a buffer on a SQLAlchemy connection.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import BigInteger, Boolean, Connection, Float, Integer, SmallInteger

from . import models as m
from .errors import StoreError

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, header extension length 0
TRAILER = b"\xff\xff"
COPY_CHUNK_BYTES = 1 << 20  # psycopg2 sends a COPY in pieces of this size (its default is 8 KiB)

# Column type → its binary wire layout. Subclasses first: BigInteger is an Integer.
_WIRE_TYPES: tuple[tuple[type, str], ...] = (
    (BigInteger, ">i8"),
    (SmallInteger, ">i2"),
    (Integer, ">i4"),
    (Float, ">f8"),  # PostgreSQL's FLOAT is double precision
    (Boolean, "u1"),
)


@dataclass(frozen=True)
class Column:
    """One field of every tuple: its values, and where they are NULL (``None``: nowhere)."""

    name: str
    values: np.ndarray
    null: np.ndarray | None = None


@functools.cache
def wire_dtype(table: str, column: str) -> np.dtype:
    """The big-endian numpy dtype of ``table.column``'s binary ``COPY`` field (from the models)."""
    column_type = m.Base.metadata.tables[table].c[column].type
    for sql_type, code in _WIRE_TYPES:
        if isinstance(column_type, sql_type):
            return np.dtype(code)
    raise StoreError(f"no binary COPY layout for column type {column_type!r}", path=table)


def _wire_values(values: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """``values`` cast to ``dtype``; an integer that does not fit is refused (as PostgreSQL
    refuses it in a text ``COPY``) rather than wrapped."""
    if dtype.kind in "iu" and values.dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        low, high = int(values.min()), int(values.max())
        if low < info.min or high > info.max:
            raise StoreError(f"value out of range for {dtype.itemsize * 8}-bit integer", path=where)
    if dtype.kind == "u" and dtype.itemsize == 1:  # booleans: one byte, 0 or 1
        return values.astype(bool).astype(dtype)
    return values.astype(dtype, copy=False)


@functools.cache
def _layout(table: str, names: tuple[str, ...]) -> tuple[tuple[np.dtype, ...], np.dtype]:
    """Each field's wire dtype, and the tuple's: field count, then length and value per field."""
    wire = tuple(wire_dtype(table, name) for name in names)
    fields = [field for i, dt in enumerate(wire) for field in ((f"n{i}", ">i4"), (f"v{i}", dt))]
    return wire, np.dtype([("count", ">i2"), *fields])


def copy_buffer(table: str, columns: Sequence[Column]) -> bytes:
    """The binary ``COPY`` stream of ``columns`` (equal lengths) for ``table``: header, tuples in
    the order of the arrays, trailer.

    Raises :class:`~kmidi_ingest.errors.StoreError` naming the table when an integer does not fit
    its column.
    """
    n = len(columns[0].values) if columns else 0
    wire, layout = _layout(table, tuple(c.name for c in columns))
    tuples = np.empty(n, layout)
    tuples["count"] = len(columns)
    nulls: list[tuple[int, np.ndarray]] = []
    for i, (column, dtype) in enumerate(zip(columns, wire, strict=True)):
        if len(column.values) != n:
            raise StoreError(f"column {column.name} has {len(column.values)} values, not {n}",
                             path=table)  # fmt: skip
        tuples[f"n{i}"] = dtype.itemsize
        tuples[f"v{i}"] = _wire_values(column.values, dtype, f"{table}.{column.name}")
        if column.null is not None and column.null.any():
            tuples[f"n{i}"][column.null] = -1
            nulls.append((i, column.null))
    if not nulls:
        return HEADER + tuples.tobytes() + TRAILER
    keep = np.ones((n, layout.itemsize), dtype=bool)
    offsets = layout.fields
    assert offsets is not None
    for i, null in nulls:
        start = offsets[f"v{i}"][1]
        keep[null, start : start + wire[i].itemsize] = False
    body = tuples.view(np.uint8).reshape(n, layout.itemsize)[keep]
    return HEADER + body.tobytes() + TRAILER


def copy_in(conn: Connection, table: str, columns: Sequence[Column]) -> None:
    """Append ``columns`` to ``table`` with one ``COPY … FROM STDIN (FORMAT binary)`` on
    ``conn`` (a psycopg2 connection, inside its transaction)."""
    if not columns or not len(columns[0].values):
        return
    buffer = copy_buffer(table, columns)
    names = ", ".join(c.name for c in columns)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(
            f"COPY {table} ({names}) FROM STDIN (FORMAT binary)",
            io.BytesIO(buffer),
            size=COPY_CHUNK_BYTES,
        )
    finally:
        cursor.close()
