"""notes_view: each track's notes read as one range of the table, after the track's joins

The view's columns, rows and meaning are unchanged; only the order of its ``FROM`` clause is.
It used to name ``midi_notes`` first, and SQLite's planner, given a question over every note
(notes per category, the busiest tracks), scanned the notes and looked up the note's track,
file, cue, primary match and stem once per note: five B-tree searches per row, most of such a
question's time. Now the tracks, files, cues, matches and stems come first and ``midi_notes``
after them through ``CROSS JOIN`` — which SQLite keeps as the inner loop (on every other engine
it is an inner join like any other, its condition in ``WHERE``) — so those searches run once per
track and the notes of a track are read as one range of the table keyed by
``(track_id, id)`` (migration 0009). On 2,000 files of ``../shared/data/midi`` questions 1, 6
and 7 of ``examples/queries.sql`` took 0.52×, 0.55× and 0.69× the time, and the per-cue
questions start from the cue's name as before.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = "({}) / CAST(1000000 AS DOUBLE PRECISION)"

_COLUMNS = f"""
SELECT n.id AS note_id, c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path,
       f.id AS midi_file_id, f.file_name AS midi_file_name,
       t.id AS track_id, t.track_index, t.name AS track_name, t.category AS track_category,
       t.part_index, t.part_name, t.program AS part_program, t.is_drum,
       a.id AS stem_id, a.name AS stem_name, m.verified AS match_verified,
       n.channel, n.pitch, n.velocity, n.release_velocity, n.start_tick, n.end_tick,
       {_S.format("n.start_us")} AS start_s, {_S.format("n.end_us")} AS end_s,
       {_S.format("n.end_us - n.start_us")} AS duration_s,
       {_S.format("COALESCE(n.end_sustain_us, n.end_us)")} AS end_sustain_s,
       n.start_bar, n.start_beat, n.end_inferred"""

NOTES_VIEW = f"""
CREATE VIEW notes_view AS{_COLUMNS}
FROM midi_tracks t
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
LEFT JOIN track_matches m ON m.track_id = t.id AND m.stem_rank = 0
LEFT JOIN audio_files a ON a.id = m.audio_file_id
CROSS JOIN midi_notes n
WHERE n.track_id = t.id AND c.status = 'complete'
"""

# 0011's and 0012's view.
NOTES_VIEW_0012 = f"""
CREATE VIEW notes_view AS{_COLUMNS}
FROM midi_notes n
JOIN midi_tracks t ON t.id = n.track_id
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
LEFT JOIN track_matches m ON m.track_id = t.id AND m.stem_rank = 0
LEFT JOIN audio_files a ON a.id = m.audio_file_id
WHERE c.status = 'complete'
"""


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.execute(NOTES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.execute(NOTES_VIEW_0012)
