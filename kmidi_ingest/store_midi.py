"""The MIDI rows of a cue: files, parts, notes and channel events, written in bulk.

Parent rows (files, parts) go through ``INSERT … RETURNING`` in batches (on PostgreSQL: ids
reserved from the sequences, then ``INSERT … SELECT FROM unnest``: :mod:`.store_pg`); the event
tables go in bulk (``executemany`` on SQLite, binary ``COPY`` on PostgreSQL), never row by row
through the ORM. Called by :mod:`kmidi_ingest.store` inside the cue's transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Connection, insert

from . import models as m
from .db import is_dsql
from .midi import NO_BAR, MidiData, Track
from .models import STORED_LENGTHS
from .results import CueResult, TrackMatchRow


def _rel(result: CueResult, path: Any) -> str:
    try:
        return path.relative_to(result.source.path).as_posix()
    except ValueError:
        return str(path)


def midi_file_row(cue_id: int, midi: MidiData, result: CueResult) -> dict[str, Any]:
    return {
        "cue_id": cue_id,
        "rel_path": _rel(result, midi.path),
        "file_name": midi.path.name,
        "size_bytes": midi.size_bytes,
        "sha256": midi.sha256,
        "midi_format": midi.midi_format,
        "timing": midi.timing,
        "ticks_per_beat": midi.ticks_per_beat,
        "smpte_fps": midi.smpte_fps,
        "smpte_ticks_per_frame": midi.smpte_ticks_per_frame,
        "smpte_offset_s": midi.smpte_offset_s,
        "track_count": midi.track_count,
        "note_count": midi.notes_total,
        "length_tick": midi.length_tick,
        "length_s": midi.length_s,
        "lenient": midi.lenient,
    }


def write_midi(conn: Connection, cue_id: int, result: CueResult) -> dict[tuple[int, int], int]:
    """Write the MIDI files of a cue: a few statements per batch of files, not per file.

    Files are taken in batches of about :data:`EVENT_BATCH_ROWS` channel events; per batch the
    files and their parts go in one ``INSERT … RETURNING`` each and the events in one bulk insert
    per table (after :class:`_EventBatches`). Only one batch of files is held at a time, so a
    cue read back file by file (:class:`~kmidi_ingest.spill.SpilledMidi`) never is in memory
    whole. Returns the part ids by ``(midi index, part index)``.
    """
    track_ids: dict[tuple[int, int], int] = {}
    events = _event_batches(conn)
    write_batch = _midi_batch_writer(conn)
    batch: list[tuple[int, MidiData]] = []
    rows = 0
    for midi_index, midi in enumerate(result.midi):
        batch.append((midi_index, midi))
        rows += _event_count(midi)
        if rows >= EVENT_BATCH_ROWS:
            write_batch(conn, cue_id, result, batch, events, track_ids)
            batch, rows = [], 0
    if batch:
        write_batch(conn, cue_id, result, batch, events, track_ids)
    return track_ids


class _Batches(Protocol):
    def add(self, track_id: int, track: Track) -> None: ...
    def flush(self) -> None: ...


def _event_batches(conn: Connection) -> _Batches:
    """The event batches of ``conn``'s backend: binary ``COPY`` from the arrays on PostgreSQL
    (:class:`~kmidi_ingest.store_pg.PgEventBatches`), rows elsewhere (no ``COPY`` on DSQL)."""
    if conn.dialect.name == "postgresql" and not is_dsql(conn):
        from .store_pg import PgEventBatches  # deferred: store_pg imports this module

        return PgEventBatches(conn)
    return _EventBatches(conn)


class _BatchWriter(Protocol):
    def __call__(
        self,
        conn: Connection,
        cue_id: int,
        result: CueResult,
        batch: list[tuple[int, MidiData]],
        events: _Batches,
        track_ids: dict[tuple[int, int], int],
    ) -> None: ...


def _midi_batch_writer(conn: Connection) -> _BatchWriter:
    """How ``conn``'s backend writes a batch of files, their parts and file-level rows: ids
    reserved from the sequences and one round trip of ``INSERT … SELECT FROM unnest`` on
    PostgreSQL (:func:`~kmidi_ingest.store_pg.write_midi_batch`), ``INSERT … RETURNING``
    elsewhere (DSQL included)."""
    if conn.dialect.name == "postgresql" and not is_dsql(conn):
        from .store_pg import write_midi_batch  # deferred: store_pg imports this module

        return write_midi_batch
    return _write_midi_batch


def _event_count(midi: MidiData) -> int:
    return sum(
        len(t.notes) + len(t.cc) + len(t.program_changes) + len(t.pitch_bends) + len(t.aftertouch)
        for t in midi.tracks
    )


def _write_midi_batch(
    conn: Connection,
    cue_id: int,
    result: CueResult,
    batch: list[tuple[int, MidiData]],
    events: _Batches,
    track_ids: dict[tuple[int, int], int],
) -> None:
    file_ids = _insert_returning(
        conn, m.MidiFile, [midi_file_row(cue_id, midi, result) for _, midi in batch]
    )
    parts = [(i, track) for i, midi in batch for track in midi.tracks]
    rows = [
        track_row(file_id, track, result.track_categories.get((i, track.part_index)))
        for (i, midi), file_id in zip(batch, file_ids, strict=True)
        for track in midi.tracks
    ]
    for (i, track), track_id in zip(parts, _insert_returning(conn, m.MidiTrack, rows), strict=True):
        track_ids[(i, track.part_index)] = track_id
    file_rows: dict[type[m.Base], list[dict[str, Any]]] = {}
    for (midi_index, midi), file_id in zip(batch, file_ids, strict=True):
        for track in midi.tracks:
            events.add(track_ids[(midi_index, track.part_index)], track)
        for model, model_rows in file_event_rows(file_id, midi):
            file_rows.setdefault(model, []).extend(model_rows)
    events.flush()
    for model, model_rows in file_rows.items():
        if model_rows:
            conn.execute(insert(model), model_rows)


def track_row(file_id: int, track: Track, guess: Any) -> dict[str, Any]:
    return {
        "midi_file_id": file_id,
        "track_index": track.index,
        "part_index": track.part_index,
        "name": track.name,
        "part_name": track.part_name,
        "is_conductor": track.is_conductor,
        "channel": track.channel,
        "program": track.program,
        "is_drum": track.is_drum,
        "category": None if guess is None else guess.category,
        "category_source": None if guess is None else guess.source,
        "note_count": len(track.notes),
        "sysex_count": track.sysex_count,
        "stray_note_off_count": track.stray_note_off_count,
        "end_tick": track.end_tick,
        "end_s": track.end_s,
    }


def _insert_returning(conn: Connection, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``model``'s table; their new ids, in the order of ``rows``."""
    if not rows:
        return []
    statement = insert(model).returning(model.id, sort_by_parameter_order=True)
    if is_dsql(conn) or len(rows) == 1:  # the chunked DSQL connection returns no rows for many
        return [int(conn.execute(statement, row).scalar_one()) for row in rows]
    return [int(i) for i in conn.execute(statement, rows).scalars()]


def _nullable(values: np.ndarray, sentinel: Any) -> list[Any]:
    """``values`` as Python scalars with ``None`` where they equal ``sentinel`` (or are NaN when
    ``sentinel`` is NaN), without a Python loop over the rows."""
    null = np.isnan(values) if sentinel != sentinel else values == sentinel
    if not null.any():
        return values.tolist()
    out = values.astype(object)
    out[null] = None
    return out.tolist()


def _event_columns(array: np.ndarray, extra: Sequence[str]) -> list[list[Any]]:
    return [
        array["channel"].tolist(),
        array["tick"].tolist(),
        array["time_s"].tolist(),
        _nullable(array["bar"], NO_BAR),
        _nullable(array["beat"], np.nan),
        *(array[name].tolist() for name in extra),
    ]


_EVENT_COLUMNS = ("track_id", "channel", "tick", "time_s", "bar", "beat")
# Without ``id``: PostgreSQL numbers notes from its identity sequence. SQLite's midi_notes is a
# WITHOUT ROWID table that numbers nothing itself; there the writer gives each note its id.
NOTE_COLUMNS = (
    "track_id",
    "channel",
    "pitch",
    "velocity",
    "release_velocity",
    "start_tick",
    "end_tick",
    "start_us",
    "end_us",
    "end_sustain_us",
    "start_bar",
    "start_beat",
    "end_inferred",
)
# SQLite stores a note's length where PostgreSQL stores its end (see models.STORED_LENGTHS).
_STORED_AS = {end: length for length, (end, _start) in STORED_LENGTHS.items()}
# A note row as SQLite stores it: the writer's ids, lengths for end times.
SQLITE_NOTE_COLUMNS = ("id", *(_STORED_AS.get(c, c) for c in NOTE_COLUMNS))


def microseconds(seconds: np.ndarray) -> np.ndarray:
    """Seconds as whole microseconds (int64, rounded to the nearest)."""
    return np.rint(seconds * 1e6).astype(np.int64)


def note_rows(
    track_id: int | np.ndarray, notes: np.ndarray, *, first_id: int | None = None
) -> list[tuple[Any, ...]]:
    """Rows for ``midi_notes`` in :data:`NOTE_COLUMNS` order; with ``first_id``, SQLite's stored
    rows in :data:`SQLITE_NOTE_COLUMNS` order (ids ``first_id, first_id + 1, ...``, lengths in
    place of end times).

    ``track_id`` is one part's id, or one id per note. Times become whole microseconds;
    ``end_sustain_us`` is NULL where it equals ``end_us``. Built column by column in numpy: no
    Python code runs per row except the final ``zip``.
    """
    n = len(notes)
    if not n:
        return []
    tracks = np.broadcast_to(np.asarray(track_id, dtype=np.int64), (n,))
    start_us = microseconds(notes["start_s"])
    end_us = microseconds(notes["end_s"])
    sustain_us = microseconds(notes["end_sustain_s"])
    sqlite = first_id is not None
    columns = [
        tracks.tolist(),
        notes["channel"].tolist(),
        notes["pitch"].tolist(),
        notes["velocity"].tolist(),
        _nullable(notes["release_velocity"], -1),
        notes["start_tick"].tolist(),
        (notes["end_tick"] - notes["start_tick"] if sqlite else notes["end_tick"]).tolist(),
        start_us.tolist(),
        (end_us - start_us if sqlite else end_us).tolist(),
        _nullable_where(sustain_us, sustain_us == end_us),
        _nullable(notes["start_bar"], NO_BAR),
        _nullable(notes["start_beat"], np.nan),
        notes["end_inferred"].tolist(),
    ]
    if first_id is not None:
        columns.insert(0, range(first_id, first_id + n))
    return list(zip(*columns, strict=True))


def _nullable_where(values: np.ndarray, null: np.ndarray) -> list[Any]:
    if not null.any():
        return values.tolist()
    if null.all():
        return [None] * len(values)
    out = values.astype(object)
    out[null] = None
    return out.tolist()


def next_note_id(conn: Connection) -> int:
    """The id the next note written on SQLite gets: one more than the last note's.

    Parts get ever larger ids (SQLite's rowid rule for ``midi_tracks``) and their notes are
    numbered on from the last note, so the last note in key order has the largest id, found by
    one descent of the key without a scan.
    """
    last = conn.exec_driver_sql(
        "SELECT id FROM midi_notes ORDER BY track_id DESC, id DESC LIMIT 1"
    ).scalar()
    return 1 if last is None else int(last) + 1


EVENT_BATCH_ROWS = 100_000  # channel events (notes, CC, ...) of the files written together


class _EventBatches:
    """The channel events of many parts, gathered, then written in one bulk insert per table.

    On SQLite the notes are numbered here: from :func:`next_note_id` on, in part order, so they
    go in at the end of the ``(track_id, id)`` key (parts get ascending ids).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._sqlite = conn.dialect.name == "sqlite"
        self._next_note_id: int | None = None
        self._notes: list[np.ndarray] = []
        self._note_tracks: list[np.ndarray] = []
        self._other: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _EVENT_TABLES}

    def add(self, track_id: int, track: Track) -> None:
        if len(track.notes):
            self._notes.append(track.notes)
            self._note_tracks.append(np.full(len(track.notes), track_id, dtype=np.int64))
        for table, rows in track_event_rows(track_id, track).items():
            self._other[table].extend(rows)

    def flush(self) -> None:
        if self._notes:
            first_id = None
            if self._sqlite:
                if self._next_note_id is None:
                    self._next_note_id = next_note_id(self._conn)
                first_id = self._next_note_id
            notes = np.concatenate(self._notes)
            rows = note_rows(np.concatenate(self._note_tracks), notes, first_id=first_id)
            columns = SQLITE_NOTE_COLUMNS if self._sqlite else NOTE_COLUMNS
            bulk_insert(self._conn, "midi_notes", columns, rows)
            if self._next_note_id is not None:
                self._next_note_id += len(notes)
        for table, rows in self._other.items():
            bulk_insert(self._conn, table, event_columns(table), rows)
        self._notes, self._note_tracks = [], []
        self._other = {name: [] for name in _EVENT_TABLES}


# Table → (Track attribute, columns after the shared event columns).
_EVENT_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "midi_cc": ("cc", ("controller", "value")),
    "midi_program_changes": ("program_changes", ("program",)),
    "midi_pitch_bends": ("pitch_bends", ("value",)),
    "midi_aftertouch": ("aftertouch", ("pitch", "value")),
}
EVENT_ATTRIBUTES = {table: attribute for table, (attribute, _) in _EVENT_TABLES.items()}


def event_columns(table: str) -> tuple[str, ...]:
    """The columns of a row of :func:`track_event_rows` for ``table`` (without ``id``)."""
    return (*_EVENT_COLUMNS, *_EVENT_TABLES[table][1])


def track_event_rows(track_id: int, track: Track) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of the per-event tables other than notes (CC, program changes, pitch bends,
    aftertouch) of one part, by table, in :func:`event_columns` order; tables without events
    are left out."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, (attribute, extra) in _EVENT_TABLES.items():
        array = getattr(track, attribute)
        if not len(array):
            continue
        cols = _event_columns(array, extra)
        if table == "midi_aftertouch":
            cols[-2] = _nullable(array["pitch"], -1)
        out[table] = list(zip([track_id] * len(array), *cols, strict=True))
    return out


def file_event_rows(
    file_id: int, midi: MidiData
) -> list[tuple[type[m.Base], list[dict[str, Any]]]]:
    """Rows of the file-level event tables (tempo, meter, key, markers) of one file."""
    return [
        (
            m.TempoChange,
            [
                {
                    "midi_file_id": file_id,
                    "tick": t.tick,
                    "time_s": t.time_s,
                    "track_index": t.track_index,
                    "tempo_us": t.tempo_us,
                    "bpm": t.bpm,
                    "bar": t.bar or None,
                    "beat": None if t.beat != t.beat else t.beat,
                }
                for t in midi.tempo_changes
            ],
        ),
        (
            m.TimeSignature,
            [
                {
                    "midi_file_id": file_id,
                    "tick": t.tick,
                    "time_s": t.time_s,
                    "track_index": t.track_index,
                    "bar": t.bar or None,
                    "numerator": t.numerator,
                    "denominator": t.denominator,
                    "clocks_per_click": t.clocks_per_click,
                    "notated_32nds_per_beat": t.notated_32nds_per_beat,
                }
                for t in midi.time_signatures
            ],
        ),
        (
            m.KeySignature,
            [
                {
                    "midi_file_id": file_id,
                    "tick": k.tick,
                    "time_s": k.time_s,
                    "track_index": k.track_index,
                    "key": k.key,
                }
                for k in midi.key_signatures
            ],
        ),
        (
            m.Marker,
            [
                {
                    "midi_file_id": file_id,
                    "tick": x.tick,
                    "time_s": x.time_s,
                    "track_index": x.track_index,
                    "kind": x.kind,
                    "text": x.text,
                    "bar": x.bar or None,
                    "beat": None if x.beat != x.beat else x.beat,
                }
                for x in midi.markers
            ],
        ),
    ]


def bulk_insert(
    conn: Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows of plain numbers (and NULLs) the fastest way the backend offers."""
    if not rows:
        return
    names = ", ".join(columns)
    if is_dsql(conn):  # no COPY on DSQL: multi-row INSERTs, split by _ChunkedConnection
        table_obj = m.Base.metadata.tables[table]
        conn.execute(insert(table_obj), [dict(zip(columns, row, strict=True)) for row in rows])
    elif conn.dialect.name == "postgresql":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        buffer.seek(0)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv)", buffer)
        finally:
            cursor.close()
    else:
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


def match_row(row: TrackMatchRow, track_id: int, stem_ids: Sequence[int]) -> dict[str, Any]:
    """The ``track_matches`` row of one part's match (``stem_ids``: the stems' row ids)."""
    return {
        "track_id": track_id,
        "audio_file_id": None if row.stem_index is None else stem_ids[row.stem_index],
        "method": row.method,
        "score": row.score,
        "fallback_reason": row.fallback_reason,
        "onset_correlation": row.onset_correlation,
        "lag_s": row.lag_s,
        "verified": row.verified,
        "name_score": row.name_score,
        "content_score": row.content_score,
        "content_z": row.content_z,
        "content_p": row.content_p,
        "content_lag_s": row.content_lag_s,
        "runner_up_audio_file_id": None
        if row.runner_up_stem_index is None
        else stem_ids[row.runner_up_stem_index],
        "margin_z": row.margin_z,
        "decided_by": row.decided_by,
        "evidence": row.evidence,
        "verify_reason": row.verify_reason,
        "stem_rank": row.stem_rank,
    }
