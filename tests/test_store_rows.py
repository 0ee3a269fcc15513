"""``store.note_rows``: numpy note arrays to DB-API rows, sentinels to NULL, Python scalars."""

from __future__ import annotations

import numpy as np

from kmidi_ingest import store
from kmidi_ingest.midi import NO_BAR, NOTE_DTYPE


def test_note_rows_turn_sentinels_into_nulls_and_numpy_into_python_scalars():
    notes = np.zeros(3, NOTE_DTYPE)
    notes["pitch"] = [60, 61, 62]
    notes["release_velocity"] = [40, -1, 0]
    notes["start_bar"] = [1, NO_BAR, 2]
    notes["start_beat"] = [1.5, np.nan, 1.0]
    notes["start_s"] = [0.1, 0.2, 0.3]
    notes["end_s"] = [0.4, 0.5, 0.6]
    notes["end_sustain_s"] = [0.4, 0.9, 0.6]
    notes["end_inferred"] = [False, True, False]
    rows = store.note_rows(7, notes)
    columns = dict(zip(store.NOTE_COLUMNS, zip(*rows, strict=True), strict=True))
    assert columns["track_id"] == (7, 7, 7)
    assert columns["release_velocity"] == (40, None, 0)
    assert columns["start_bar"] == (1, None, 2)
    assert columns["start_beat"] == (1.5, None, 1.0)
    assert columns["start_us"] == (100_000, 200_000, 300_000)
    assert columns["end_us"] == (400_000, 500_000, 600_000)
    assert columns["end_sustain_us"] == (None, 900_000, None)  # NULL: no longer than the note
    assert columns["end_inferred"] == (False, True, False)
    for row in rows:
        assert all(v is None or type(v) in (int, float, bool) for v in row), row


def test_note_rows_without_nulls_and_empty():
    notes = np.zeros(2, NOTE_DTYPE)
    notes["start_bar"] = 1
    notes["start_beat"] = 1.0
    assert [row[10:12] for row in store.note_rows(1, notes)] == [(1, 1.0), (1, 1.0)]
    assert store.note_rows(1, np.zeros(0, NOTE_DTYPE)) == []


def test_note_rows_with_ids_and_one_part_per_note():
    notes = np.zeros(3, NOTE_DTYPE)
    notes["start_s"] = [0.0000004, 0.0000005, 2.9999996]  # rounded to the nearest microsecond
    rows = store.note_rows(np.array([4, 4, 5]), notes, first_id=10)
    columns = dict(zip(store.SQLITE_NOTE_COLUMNS, zip(*rows, strict=True), strict=True))
    assert columns["id"] == (10, 11, 12)
    assert columns["track_id"] == (4, 4, 5)
    assert columns["start_us"] == (0, 0, 3_000_000)
