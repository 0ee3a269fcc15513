"""instrument parts: midi_tracks rows are (track, channel) parts

A track whose notes use several channels (a format-0 file) is stored as one ``midi_tracks`` row
per channel with notes. ``part_index`` numbers the rows of a file (unique with ``midi_file_id``);
``part_name`` is the part's name (the track name when the track is one part, else the GM program
name of the part). Existing rows were one per track: they get ``part_index = track_index`` and
``part_name = name``. ``notes_view`` gains the part's columns.

Revision ID: 0006_midi_parts
Revises: 0005
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_midi_parts"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTES_VIEW = """
CREATE VIEW notes_view AS
SELECT n.id AS note_id, c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path,
       f.id AS midi_file_id, f.file_name AS midi_file_name,
       t.id AS track_id, t.track_index, t.name AS track_name, t.category AS track_category,
       t.part_index, t.part_name, t.program AS part_program, t.is_drum,
       a.id AS stem_id, a.name AS stem_name, m.verified AS match_verified,
       n.channel, n.pitch, n.velocity, n.release_velocity, n.start_tick, n.end_tick,
       n.start_s, n.end_s, n.end_s - n.start_s AS duration_s, n.end_sustain_s,
       n.start_bar, n.start_beat, n.end_inferred
FROM midi_notes n
JOIN midi_tracks t ON t.id = n.track_id
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
LEFT JOIN track_matches m ON m.track_id = t.id
LEFT JOIN audio_files a ON a.id = m.audio_file_id
WHERE c.status = 'complete'
"""

# 0001's view, restored by the downgrade.
OLD_NOTES_VIEW = """
CREATE VIEW notes_view AS
SELECT n.id AS note_id, c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path,
       f.id AS midi_file_id, f.file_name AS midi_file_name,
       t.id AS track_id, t.track_index, t.name AS track_name, t.category AS track_category,
       a.id AS stem_id, a.name AS stem_name, m.verified AS match_verified,
       n.channel, n.pitch, n.velocity, n.release_velocity, n.start_tick, n.end_tick,
       n.start_s, n.end_s, n.end_s - n.start_s AS duration_s, n.end_sustain_s,
       n.start_bar, n.start_beat, n.end_inferred
FROM midi_notes n
JOIN midi_tracks t ON t.id = n.track_id
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
LEFT JOIN track_matches m ON m.track_id = t.id
LEFT JOIN audio_files a ON a.id = m.audio_file_id
WHERE c.status = 'complete'
"""


def upgrade() -> None:
    # Plain ADD COLUMN with a default (no table rebuild): rebuilding midi_tracks on SQLite would
    # drop the table its notes and events cascade from.
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.add_column(
        "midi_tracks", sa.Column("part_index", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "midi_tracks", sa.Column("part_name", sa.Text(), nullable=False, server_default="")
    )
    op.execute("UPDATE midi_tracks SET part_index = track_index, part_name = name")
    if op.get_bind().dialect.name != "sqlite":  # SQLite cannot drop a default in place
        op.alter_column("midi_tracks", "part_index", server_default=None)
        op.alter_column("midi_tracks", "part_name", server_default=None)
    op.create_index(
        op.f("ix_midi_tracks_midi_file_id_part_index"),
        "midi_tracks",
        ["midi_file_id", "part_index"],
        unique=True,
    )
    op.execute(NOTES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.drop_index(op.f("ix_midi_tracks_midi_file_id_part_index"), table_name="midi_tracks")
    op.drop_column("midi_tracks", "part_name")
    op.drop_column("midi_tracks", "part_index")
    op.execute(OLD_NOTES_VIEW)
