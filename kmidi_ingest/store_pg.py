"""The channel events of a cue on PostgreSQL: one binary ``COPY`` per table and batch.

:class:`PgEventBatches` is the PostgreSQL counterpart of :mod:`.store_midi`'s event batches (the
same ``add`` / ``flush``), taking the parser's numpy arrays straight to binary ``COPY`` tuples
(:mod:`.pg_copy`) instead of Python rows and CSV text. The stored values are those of the
row path (:func:`.store_midi.note_rows`): times in whole microseconds, the same sentinels NULL.
Not for the Aurora DSQL profile, which has no ``COPY``.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection

from .midi import NO_BAR, Track
from .pg_copy import Column, copy_in
from .store_midi import _EVENT_TABLES, microseconds  # store_midi imports this module lazily


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

    def flush(self) -> None:
        for table, arrays in self._arrays.items():
            rows = np.concatenate(arrays)
            tracks = np.concatenate(self._tracks[table])
            if table == "midi_notes":
                columns = note_columns(tracks, rows)
            else:
                columns = event_columns(table, tracks, rows)
            copy_in(self._conn, table, columns)
        self._arrays, self._tracks = {}, {}
