"""Hand a cue's MIDI rows from a worker to the SQLite writer as a staging database file.

A worker writes every MIDI row of its cue (files, parts, notes, channel events, tempo, meter,
key and marker rows, and the matches of a cue without stems) into a SQLite file of its own, in a
temporary folder: the tables of the main database with the same column types, ids counted from
1 in the order the writer would have given them, no index, and the NULLs of the event tables
still as their sentinel values (-1, ``NO_BAR``; made NULL on copy, which spares the worker
object arrays). The rows go into a database in memory, written out in one piece. It returns a :class:`StagedMidi` (the path and a few counts) in place of the
MIDI data. The writer ``ATTACH``\\ es the file inside the cue's transaction and moves each table
with one ``INSERT INTO main.t SELECT … FROM staged.t``, shifting the ids past the last ones
stored (:func:`copy_staged`): SQLite copies the rows in C, no Python runs per row in the writer,
and no event array is pickled between the processes. The stored rows are those the direct path
(:func:`kmidi_ingest.store_midi.write_midi`) writes, ids included.

Only for SQLite (PostgreSQL keeps its ``COPY`` path) and only when the writer does not change
the rows after the workers (the LLM match step can re-categorise parts, so it runs unstaged).

Cost, on the 144 files of ``../shared/data/midi`` (2 cores, quiet): staging takes a worker
about 1.9 ms per cue with the notes and events bound in compiled code
(:mod:`kmidi_ingest.sqlite_bulk`), 2.9 ms with ``executemany``; reading the cue about 1.9 ms
with the compiled MIDI scan (4.4 with the Python one).
The writer's ``INSERT … SELECT`` of the staged rows costs it about 2.5 ms per cue.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite as sqlite_dialect

from . import kernels
from . import models as m
from .midi import NO_BAR, MidiData
from .results import CueResult
from .store_midi import (
    EVENT_ATTRIBUTES,
    NOTE_COLUMNS,
    event_columns,
    file_event_rows,
    match_row,
    microseconds,
    midi_file_row,
    next_note_id,
    track_row,
)
from .text import safe_text

if TYPE_CHECKING:
    from .sqlite_bulk import Library

SCHEMA = "kmidi_staged"  # the name the writer attaches a staging file under

_FILE_EVENT_TABLES = ("tempo_changes", "time_signatures", "key_signatures", "markers")
_TRACK_EVENT_TABLES = ("midi_cc", "midi_program_changes", "midi_pitch_bends", "midi_aftertouch")
# The tables of numeric rows, many per part, and the attribute of a Track that holds them.
_BULK_ATTRIBUTES = {"midi_notes": "notes", **{t: EVENT_ATTRIBUTES[t] for t in _TRACK_EVENT_TABLES}}
# Copy order: parents before children (the foreign keys of a replacing write are checked).
# track_matches only for a cue without stems (no row then points to an audio file).
TABLES = (
    "midi_files",
    "midi_tracks",
    "midi_notes",
    *_TRACK_EVENT_TABLES,
    *_FILE_EVENT_TABLES,
    "track_matches",
)
# The parent each table's rows point to (the column, the table), shifted like the parent's ids.
_PARENT = {
    "midi_tracks": ("midi_file_id", "midi_files"),
    "midi_notes": ("track_id", "midi_tracks"),
    **{t: ("track_id", "midi_tracks") for t in _TRACK_EVENT_TABLES},
    **{t: ("midi_file_id", "midi_files") for t in _FILE_EVENT_TABLES},
    "track_matches": ("track_id", "midi_tracks"),
}


def _sentinels(table: str) -> dict[str, str]:
    """The staged columns of ``table`` that hold a sentinel value where the stored row holds
    NULL, with the SQL that makes the stored value on copy (NaN needs none: SQLite stores a
    NaN as NULL)."""
    if table == "midi_notes":
        return {
            "release_velocity": "NULLIF(release_velocity, -1)",
            "end_sustain_us": "NULLIF(end_sustain_us, end_us)",  # NULL: the pedal adds nothing
            "start_bar": f"NULLIF(start_bar, {NO_BAR})",
        }
    if table in _TRACK_EVENT_TABLES:
        pitch = {"pitch": "NULLIF(pitch, -1)"} if table == "midi_aftertouch" else {}
        return {"bar": f"NULLIF(bar, {NO_BAR})", **pitch}
    return {}


def _note_columns(notes: np.ndarray) -> dict[str, np.ndarray]:
    """Staged ``midi_notes`` columns of some notes but ``track_id``, by name, sentinels kept
    (:func:`_sentinels`)."""
    return {
        **{f: notes[f] for f in ("channel", "pitch", "velocity", "release_velocity")},
        "start_tick": notes["start_tick"],
        "end_tick": notes["end_tick"],
        **{f"{f[:-2]}_us": microseconds(notes[f]) for f in ("start_s", "end_s", "end_sustain_s")},
        "start_bar": notes["start_bar"],
        "start_beat": notes["start_beat"],
        "end_inferred": notes["end_inferred"],
    }


def _bulk_columns(table: str, track_ids: np.ndarray, array: np.ndarray) -> dict[str, np.ndarray]:
    """Every staged column of ``table`` (:func:`_columns` names) for the events ``array`` of
    the parts ``track_ids`` (one per event), sentinels kept."""
    if table == "midi_notes":
        columns = _note_columns(array)
    else:
        columns = {f: array[f] for f in event_columns(table)[1:]}
    return {"track_id": track_ids, **columns}


def _rows(columns: dict[str, np.ndarray], names: Sequence[str]) -> list[tuple[Any, ...]]:
    """``columns`` as rows in ``names`` order for ``executemany``: one ``tolist`` per column,
    no Python per row but the ``zip``."""
    return list(zip(*(columns[c].tolist() for c in names), strict=True))


@functools.cache
def _columns(table: str) -> tuple[str, ...]:
    """The staged columns of ``table`` other than ``id`` (``midi_files`` without ``cue_id``:
    the writer knows it)."""
    if table == "midi_notes":
        return NOTE_COLUMNS
    if table in _TRACK_EVENT_TABLES:
        return event_columns(table)
    names = tuple(c.name for c in m.Base.metadata.tables[table].columns if c.name != "id")
    return tuple(n for n in names if n != "cue_id")


@functools.cache
def _insert(table: str) -> str:
    columns = _columns(table)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


@functools.cache
def _template() -> bytes:
    """An empty staging database (every table, no row), serialized: each cue starts from a copy
    in memory instead of creating the tables again."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for table in TABLES:
            conn.execute(_ddl(table))
        return conn.serialize()
    finally:
        conn.close()


def _ddl(table: str) -> str:
    """``CREATE TABLE`` of the staged ``table``: the main table's column types (so SQLite gives
    the values the same storage classes), ``id`` as the rowid, no constraint, no index."""
    columns = m.Base.metadata.tables[table].columns
    dialect = sqlite_dialect.dialect()
    types = ", ".join(f"{c} {columns[c].type.compile(dialect=dialect)}" for c in _columns(table))
    return f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {types})"


@dataclass(frozen=True)
class StagedMidi(Sequence[MidiData]):
    """The MIDI rows of one cue, in the staging database file ``path`` (see the module).

    A sequence of its ``len(paths)`` files for the counts only: the data itself is rows now, so
    reading a file back raises ``TypeError``.
    """

    path: str
    paths: tuple[str, ...]
    # (midi index, part index) of each staged part, in id order (part ``i`` has local id i + 1).
    part_keys: tuple[tuple[int, int], ...]
    rows: tuple[tuple[str, int], ...]  # (table, staged rows) of the tables that have any
    holds_matches: bool = False  # the cue's track_matches rows are staged too (no stems)
    instrument_tracks: int = 0
    notes_total: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> MidiData: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[MidiData]: ...

    def __getitem__(self, index: int | slice) -> MidiData | Sequence[MidiData]:
        raise TypeError(f"the MIDI data of this cue is staged as rows in {self.path}")

    def __iter__(self) -> Iterator[MidiData]:
        raise TypeError(f"the MIDI data of this cue is staged as rows in {self.path}")

    def remove(self) -> None:
        """Delete the file (once the cue is written, or given up)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _plain(row: dict[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    """``row``'s values in ``columns`` order, text made valid Unicode as the database edge
    does for the direct path (:func:`kmidi_ingest.text.safe_parameters`)."""
    return tuple(safe_text(v) if type(v) is str else v for v in (row[c] for c in columns))


def stage(result: CueResult, *, directory: str, bulk: bool | None = None) -> CueResult:
    """``result`` with its MIDI data written as rows to a new staging file in ``directory``.

    The rows of the small tables are inserted into a database in memory, written to the file in
    one piece. Notes and the other per-event rows go either into that database in memory
    through ``executemany`` (``bulk=False``), or afterwards into the file through
    :mod:`kmidi_ingest.sqlite_bulk` (``bulk=True``; the same rows, without a Python object per
    row). ``None`` chooses as :mod:`kmidi_ingest.kernels` says, and ``executemany`` wherever
    SQLite's C library cannot be loaded. The caller of the returned result removes the file
    (:func:`kmidi_ingest.spill.discard`).
    """
    library = _bulk_library(kernels.use_compiled() if bulk is None else bulk)
    events = _events(result)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.deserialize(_template())
        renting = library is None and bulk is None
        with kernels.renting() if renting else contextlib.nullcontext():
            counts, keys = _write(conn, result, events if library is None else {})
        image = conn.serialize()
    finally:
        conn.close()
    fd, path = tempfile.mkstemp(prefix="kmidi-stage-", suffix=".sqlite", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(image)
        if library is not None:
            _write_bulk(library, path, events)
    except BaseException:
        os.unlink(path)
        raise
    counts.update({t: len(c["track_id"]) for t, c in events.items()})
    return replace(
        result,
        midi=StagedMidi(
            path,
            paths=tuple(str(d.path) for d in result.midi),
            part_keys=keys,
            rows=tuple((t, counts[t]) for t in TABLES if counts.get(t)),
            holds_matches=_holds_matches(result),
            instrument_tracks=sum(len(d.instrument_tracks) for d in result.midi),
            notes_total=sum(d.notes_total for d in result.midi),
        ),
    )


def _bulk_library(wanted: bool) -> Library | None:
    """SQLite's C library for :mod:`kmidi_ingest.sqlite_bulk`, if ``wanted`` and loadable."""
    if not wanted:
        return None
    from . import sqlite_bulk  # numba: loaded by the workers that stage, not by the writer

    return sqlite_bulk.load()


def _events(result: CueResult) -> dict[str, dict[str, np.ndarray]]:
    """The staged columns of the per-event tables (notes, CC, program changes, pitch bends,
    aftertouch) of every part of the cue, parts in id order; tables without rows left out."""
    parts: dict[str, list[tuple[int, np.ndarray]]] = {t: [] for t in _BULK_ATTRIBUTES}
    track_id = 0
    for midi in result.midi:
        for track in midi.tracks:
            track_id += 1
            for table, attribute in _BULK_ATTRIBUTES.items():
                array = getattr(track, attribute)
                if len(array):
                    parts[table].append((track_id, array))
    out = {}
    for table, arrays in parts.items():
        if arrays:
            ids = np.repeat([i for i, _ in arrays], [len(a) for _, a in arrays])
            out[table] = _bulk_columns(table, ids, np.concatenate([a for _, a in arrays]))
    return out


def _write_bulk(library: Library, path: str, events: dict[str, dict[str, np.ndarray]]) -> None:
    """Insert ``events`` (:func:`_events`) into the staging file ``path``, in one transaction."""
    if not events:
        return
    from . import sqlite_bulk  # loaded already: the library came from it

    with sqlite_bulk.BulkFile(library, path) as f:
        f.execute("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN")
        for table, columns in events.items():
            ints = [c for c in _columns(table) if columns[c].dtype.kind != "f"]
            floats = [c for c in _columns(table) if columns[c].dtype.kind == "f"]
            names = [*ints, *floats]
            f.insert(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [columns[c] for c in ints],
                [columns[c] for c in floats],
            )
        f.execute("COMMIT")
    kernels.loaded()


def _write(
    conn: sqlite3.Connection, result: CueResult, events: dict[str, dict[str, np.ndarray]]
) -> tuple[dict[str, int], tuple[tuple[int, int], ...]]:
    """Insert the cue's rows of the small tables, and ``events`` (:func:`_events`; empty where
    they go in through :func:`_write_bulk`), into ``conn``."""
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    keys: list[tuple[int, int]] = []
    file_columns = _columns("midi_files")
    track_columns = _columns("midi_tracks")
    for midi_index, midi in enumerate(result.midi):
        file_id = midi_index + 1
        rows["midi_files"].append(_plain(midi_file_row(0, midi, result), file_columns))
        for track in midi.tracks:
            key = (midi_index, track.part_index)
            keys.append(key)
            guess = result.track_categories.get(key)
            rows["midi_tracks"].append(_plain(track_row(file_id, track, guess), track_columns))
        for model, dict_rows in file_event_rows(file_id, midi):
            table = model.__tablename__
            columns = _columns(table)
            rows[table].extend(_plain(r, columns) for r in dict_rows)
    for table, arrays in events.items():
        rows[table] = _rows(arrays, _columns(table))
    if _holds_matches(result):
        columns = _columns("track_matches")
        part_ids = {key: i + 1 for i, key in enumerate(keys)}
        rows["track_matches"] = [
            _plain(match_row(row, part_ids[(row.midi_index, row.track_index)], ()), columns)
            for row in result.matches
        ]
    conn.execute("BEGIN")
    for table, table_rows in rows.items():
        if table_rows:
            conn.executemany(_insert(table), table_rows)
    conn.execute("COMMIT")
    return {t: len(r) for t, r in rows.items()}, tuple(keys)


def _holds_matches(result: CueResult) -> bool:
    """Whether the staging file holds the cue's matches: when no stem is there to point to."""
    return not result.stems and not result.mixes


def _stored_lengths(columns: Sequence[str], values: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The staged note columns and their values with each end time replaced by the length the
    main table stores in its place (:data:`~kmidi_ingest.models.STORED_LENGTHS`)."""
    ends = {end: (length, f"{end} - {start}") for length, (end, start) in m.STORED_LENGTHS.items()}
    pairs = [ends.get(c, (c, v)) for c, v in zip(columns, values, strict=True)]
    return tuple(c for c, _ in pairs), [v for _, v in pairs]


@contextlib.contextmanager
def attached(conn: Connection, staged: StagedMidi) -> Iterator[None]:
    """The staging file attached to ``conn``'s SQLite connection as :data:`SCHEMA` while the
    block runs; enter it outside a transaction (SQLite attaches no file inside one)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (staged.path,))
    try:
        yield
    finally:
        dbapi.execute(f"DETACH DATABASE {SCHEMA}")


def copy_staged(conn: Connection, cue_id: int, staged: StagedMidi) -> dict[tuple[int, int], int]:
    """Move an attached staging file's rows into the main tables, in the open transaction.

    Every table's ids are shifted past its largest stored id (the id SQLite would give the next
    row; ``midi_notes`` numbers on from :func:`~kmidi_ingest.store_midi.next_note_id`), and each
    row's parent id by its parent table's shift. Returns the part ids by
    ``(midi index, part index)``, as :func:`~kmidi_ingest.store_midi.write_midi` does.
    """
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    present = dict(staged.rows)
    if not present:  # a cue whose MIDI files all failed to read
        return {}
    shift = dict(
        zip(
            present,
            dbapi.execute(
                "SELECT "
                + ", ".join(
                    f"{next_note_id(conn) - 1}"
                    if t == "midi_notes"
                    else f"(SELECT COALESCE(MAX(id), 0) FROM main.{t})"
                    for t in present
                )
            ).fetchone(),
            strict=True,
        )
    )
    for table in TABLES:
        if table not in present:
            continue
        columns = _columns(table)
        parent = _PARENT.get(table)
        stored = _sentinels(table)
        values = [
            f"{c} + {int(shift[parent[1]])}"
            if parent is not None and c == parent[0]
            else stored.get(c, c)
            for c in columns
        ]
        if table == "midi_files":
            columns, values = ("cue_id", *columns), [str(int(cue_id)), *values]
        if table == "midi_notes":
            columns, values = _stored_lengths(columns, values)
        dbapi.execute(
            f"INSERT INTO main.{table} (id, {', '.join(columns)}) "
            f"SELECT id + {int(shift[table])}, {', '.join(values)} FROM {SCHEMA}.{table} "
            "ORDER BY id"
        )
    first_part = int(shift.get("midi_tracks", 0)) + 1
    return {key: first_part + i for i, key in enumerate(staged.part_keys)}
