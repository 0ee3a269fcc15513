"""The MIDI rows of a cue on PostgreSQL: few round trips, no per-row Python for the events.

- :class:`PgEventBatches` is the PostgreSQL counterpart of :mod:`.store_midi`'s event batches
  (the same ``add`` / ``flush``), taking the parser's numpy arrays straight to binary ``COPY``
  tuples (:mod:`.pg_copy`) instead of Python rows and CSV text. The stored values are those of
  the row path (:func:`.store_midi.note_rows`): times in whole microseconds, the same sentinels
  NULL.
- :func:`write_midi_batch` is the counterpart of ``store_midi._write_midi_batch``: the ids of
  the batch's files and parts are reserved from their sequences in one ``SELECT``, then the
  files, parts and file-level tables (tempo, meter, key, markers) go in one round trip of
  ``INSERT … SELECT FROM unnest(…)`` statements on the raw psycopg2 cursor, one array per
  column, and the events by ``COPY``. The rows (ids included) are those of the
  ``INSERT … RETURNING`` path.

Not for the Aurora DSQL profile, which has no ``COPY`` and keeps multi-row ``INSERT``s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Boolean, Connection, Float, Integer, String, Text

from . import models as m
from .errors import StoreError
from .midi import NO_BAR, MidiData, Track
from .pg_copy import Column, copy_in
from .results import CueResult
from .store_midi import (  # store_midi imports this module lazily
    _EVENT_TABLES,
    _Batches,
    file_event_rows,
    microseconds,
    midi_file_row,
    track_row,
)
from .text import safe_text


def note_columns(track_ids: np.ndarray, notes: np.ndarray) -> list[Column]:
    """``midi_notes`` columns (without ``id``: the identity sequence numbers them) of ``notes``
    (a ``NOTE_DTYPE`` array) and their part ids, NULLs where :func:`.store_midi.note_rows`
    puts ``None``."""
    end_us = microseconds(notes["end_s"])
    sustain_us = microseconds(notes["end_sustain_s"])
    return [
        Column("track_id", track_ids),
        Column("channel", notes["channel"]),
        Column("pitch", notes["pitch"]),
        Column("velocity", notes["velocity"]),
        Column("release_velocity", notes["release_velocity"], notes["release_velocity"] == -1),
        Column("start_tick", notes["start_tick"]),
        Column("end_tick", notes["end_tick"]),
        Column("start_us", microseconds(notes["start_s"])),
        Column("end_us", end_us),
        Column("end_sustain_us", sustain_us, sustain_us == end_us),
        Column("start_bar", notes["start_bar"], notes["start_bar"] == NO_BAR),
        Column("start_beat", notes["start_beat"], np.isnan(notes["start_beat"])),
        Column("end_inferred", notes["end_inferred"]),
    ]


def event_columns(table: str, track_ids: np.ndarray, events: np.ndarray) -> list[Column]:
    """Columns of one channel-event table (``midi_cc``, ...) of ``events`` and their part ids."""
    extra = _EVENT_TABLES[table][1]
    columns = [
        Column("track_id", track_ids),
        Column("channel", events["channel"]),
        Column("tick", events["tick"]),
        Column("time_s", events["time_s"]),
        Column("bar", events["bar"], events["bar"] == NO_BAR),
        Column("beat", events["beat"], np.isnan(events["beat"])),
    ]
    for name in extra:
        null = events[name] == -1 if (table, name) == ("midi_aftertouch", "pitch") else None
        columns.append(Column(name, events[name], null))
    return columns


class PgEventBatches:
    """The channel events of many parts, gathered as arrays, then one binary ``COPY`` per table.

    Nothing is converted per part: :meth:`add` keeps references to the part's arrays, and
    :meth:`flush` concatenates each table's and sends it.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._arrays: dict[str, list[np.ndarray]] = {}
        self._tracks: dict[str, list[np.ndarray]] = {}

    def add(self, track_id: int, track: Track) -> None:
        for table, attribute in (("midi_notes", "notes"), *(
            (t, a) for t, (a, _) in _EVENT_TABLES.items()
        )):  # fmt: skip
            array = getattr(track, attribute)
            if len(array):
                self._arrays.setdefault(table, []).append(array)
                self._tracks.setdefault(table, []).append(
                    np.full(len(array), track_id, dtype=np.int64)
                )

    def take_small(self, max_rows: int) -> list[tuple[str, list[Column]]]:
        """The columns of the tables holding at most ``max_rows`` rows so far, taken out of the
        batch (the caller inserts them); :meth:`flush` sends the others by ``COPY``."""
        small = [t for t, arrays in self._arrays.items() if sum(map(len, arrays)) <= max_rows]
        out = [(table, self._columns(table)) for table in small]
        for table in small:
            del self._arrays[table], self._tracks[table]
        return out

    def _columns(self, table: str) -> list[Column]:
        rows = np.concatenate(self._arrays[table])
        tracks = np.concatenate(self._tracks[table])
        if table == "midi_notes":
            return note_columns(tracks, rows)
        return event_columns(table, tracks, rows)

    def flush(self) -> None:
        for table in self._arrays:
            copy_in(self._conn, table, self._columns(table))
        self._arrays, self._tracks = {}, {}


def array_literal(column: Column) -> str:
    """``column`` as a PostgreSQL array literal (``{1,NULL,2.5}``): integers in decimal, floats
    by ``repr`` (the shortest text that reads back to the same double), booleans ``t``/``f``."""
    values = column.values.tolist()
    kind = column.values.dtype.kind
    if kind == "b":
        items = ["t" if v else "f" for v in values]
    else:
        items = list(map(repr if kind == "f" else str, values))
    if column.null is not None:
        for i in np.flatnonzero(column.null).tolist():
            items[i] = "NULL"
    return "{" + ",".join(items) + "}"


# A table's events of a batch up to this many go in the batch's one round trip of INSERTs as
# array literals (about 0.3 µs of writer CPU per value) rather than by a COPY of their own
# (two round trips: on a loaded machine each waits milliseconds for the server's turn).
SMALL_EVENT_ROWS = 500

# Column type → the array type its values are sent as. Wide on purpose: the assignment to the
# column then refuses what does not fit (an integer out of range, text over a VARCHAR's
# length), as an INSERT of the value itself does; a cast to the column's own type would not
# (``'abc'::varchar(2)`` truncates).
_ARRAY_TYPES: tuple[tuple[type, str], ...] = (
    (Integer, "bigint[]"),  # BigInteger and SmallInteger are Integers
    (Float, "double precision[]"),
    (Boolean, "boolean[]"),
    (String, "text[]"),  # Text is a String
)
_TEXT = (String, Text)


@functools.cache
def _unnest_sql(table: str, columns: tuple[str, ...]) -> str:
    """``INSERT INTO table (columns) SELECT * FROM unnest(%s::type[], ...)``, one parameter per
    column (cached per table and columns)."""
    casts = []
    for name in columns:
        column_type = m.Base.metadata.tables[table].c[name].type
        cast = next((a for t, a in _ARRAY_TYPES if isinstance(column_type, t)), None)
        if cast is None:
            raise StoreError(f"no array type for column type {column_type!r}", path=table)
        casts.append(f"%s::{cast}")
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({', '.join(casts)})"


@functools.cache
def _text_columns(table: str) -> frozenset[str]:
    return frozenset(c.name for c in m.Base.metadata.tables[table].c if isinstance(c.type, _TEXT))


def _safe(value: Any) -> Any:
    """A text value made valid Unicode (the raw cursor bypasses the engine's escaping hook)."""
    if type(value) is str and not value.isascii():
        return safe_text(value)
    return value


def unnest_insert(table: str, rows: Sequence[dict[str, Any]]) -> tuple[str, list[list[Any]]]:
    """The statement and its parameters (one list per column) inserting ``rows`` (dicts with
    the same keys) into ``table``; text escaped as :func:`~kmidi_ingest.text.safe_parameters`
    escapes it."""
    names = tuple(rows[0])
    text = _text_columns(table)
    arrays = [
        [_safe(row[name]) for row in rows] if name in text else [row[name] for row in rows]
        for name in names
    ]
    return _unnest_sql(table, names), arrays


def reserve_ids(cursor: Any, counts: Sequence[tuple[str, int]]) -> list[list[int]]:
    """``n`` new ids from the identity sequence of each ``(table, n)``, ascending, in one
    ``SELECT``. Sequences are not transactional: a rolled-back cue leaves a gap, as an
    ``INSERT … RETURNING`` that rolls back does."""
    arrays = ", ".join(
        "ARRAY(SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s))"
        for _ in counts
    )
    cursor.execute(f"SELECT {arrays}", [v for table, n in counts for v in (table, n)])
    return [[int(i) for i in ids] for ids in cursor.fetchone()]


def write_midi_batch(
    conn: Connection,
    cue_id: int,
    result: CueResult,
    batch: list[tuple[int, MidiData]],
    events: _Batches,
    track_ids: dict[tuple[int, int], int],
) -> None:
    """Write a batch of a cue's MIDI files, their parts, file-level rows and channel events
    (``events``, flushed here) inside ``conn``'s transaction; ``track_ids`` gets the new part
    ids by ``(midi index, part index)``.

    Three round trips and the ``COPY``s: the ids, then every ``INSERT`` in one ``execute``.
    """
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        parts = [(i, track) for i, midi in batch for track in midi.tracks]
        file_ids, part_ids = reserve_ids(
            cursor, [("midi_files", len(batch)), ("midi_tracks", len(parts))]
        )
        statements: list[str] = []
        parameters: list[Any] = []

        def add(table: str, rows: list[dict[str, Any]]) -> None:
            if rows:
                statement, arrays = unnest_insert(table, rows)
                statements.append(statement)
                parameters.extend(arrays)

        add(
            "midi_files",
            [
                {"id": file_id, **midi_file_row(cue_id, midi, result)}
                for (_, midi), file_id in zip(batch, file_ids, strict=True)
            ],
        )
        file_of = {i: file_id for (i, _), file_id in zip(batch, file_ids, strict=True)}
        add(
            "midi_tracks",
            [
                {
                    "id": part_id,
                    **track_row(
                        file_of[i], track, result.track_categories.get((i, track.part_index))
                    ),
                }
                for (i, track), part_id in zip(parts, part_ids, strict=True)
            ],
        )
        for (i, track), part_id in zip(parts, part_ids, strict=True):
            track_ids[(i, track.part_index)] = part_id
            events.add(part_id, track)
        file_rows: dict[str, list[dict[str, Any]]] = {}
        for (_, midi), file_id in zip(batch, file_ids, strict=True):
            for model, rows in file_event_rows(file_id, midi):
                file_rows.setdefault(model.__tablename__, []).extend(rows)
        for table, rows in file_rows.items():
            add(table, rows)
        if isinstance(events, PgEventBatches):  # few events: in this round trip, not a COPY
            for table, columns in events.take_small(SMALL_EVENT_ROWS):
                statements.append(_unnest_sql(table, tuple(c.name for c in columns)))
                parameters.extend(array_literal(c) for c in columns)
        if statements:
            cursor.execute(";\n".join(statements), parameters)
    finally:
        cursor.close()
    events.flush()
