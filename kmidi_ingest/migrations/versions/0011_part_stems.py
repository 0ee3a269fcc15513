"""track_matches: one part may own several stems (desk stems ``violin1`` … ``violin4``)

``UNIQUE(track_id)`` becomes ``UNIQUE(track_id, audio_file_id)`` and ``UNIQUE(track_id,
stem_rank)``: each part keeps one primary row (``stem_rank`` 0, the row of every part as before)
and may have further rows (``stem_rank`` 1, 2, …), one per additional stem. ``notes_view`` joins
the primary row only, so a note still appears once; ``cue_summary.matched_tracks`` still counts
parts. The downgrade keeps the primary rows and deletes the others.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 00:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = "({}) / CAST(1000000 AS DOUBLE PRECISION)"


def _notes_view(primary_only: bool) -> str:
    on = "m.track_id = t.id AND m.stem_rank = 0" if primary_only else "m.track_id = t.id"
    return f"""
CREATE VIEW notes_view AS
SELECT n.id AS note_id, c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path,
       f.id AS midi_file_id, f.file_name AS midi_file_name,
       t.id AS track_id, t.track_index, t.name AS track_name, t.category AS track_category,
       t.part_index, t.part_name, t.program AS part_program, t.is_drum,
       a.id AS stem_id, a.name AS stem_name, m.verified AS match_verified,
       n.channel, n.pitch, n.velocity, n.release_velocity, n.start_tick, n.end_tick,
       {_S.format("n.start_us")} AS start_s, {_S.format("n.end_us")} AS end_s,
       {_S.format("n.end_us - n.start_us")} AS duration_s,
       {_S.format("COALESCE(n.end_sustain_us, n.end_us)")} AS end_sustain_s,
       n.start_bar, n.start_beat, n.end_inferred
FROM midi_notes n
JOIN midi_tracks t ON t.id = n.track_id
JOIN midi_files f ON f.id = t.midi_file_id
JOIN cues c ON c.id = f.cue_id
LEFT JOIN track_matches m ON {on}
LEFT JOIN audio_files a ON a.id = m.audio_file_id
WHERE c.status = 'complete'
"""


def _cue_summary_view(primary_only: bool) -> str:
    rank = " AND m.stem_rank = 0" if primary_only else ""
    return f"""
CREATE VIEW cue_summary AS
SELECT c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path, c.ingested_at,
       (SELECT COUNT(*) FROM midi_files f WHERE f.cue_id = c.id) AS midi_files,
       (SELECT COUNT(*) FROM midi_tracks t JOIN midi_files f ON f.id = t.midi_file_id
         WHERE f.cue_id = c.id AND NOT t.is_conductor) AS instrument_tracks,
       (SELECT COALESCE(SUM(t.note_count), 0) FROM midi_tracks t
         JOIN midi_files f ON f.id = t.midi_file_id WHERE f.cue_id = c.id) AS notes,
       (SELECT COUNT(*) FROM audio_files a WHERE a.cue_id = c.id) AS stems,
       (SELECT COUNT(*) FROM final_mixes x WHERE x.cue_id = c.id) AS final_mixes,
       (SELECT COUNT(*) FROM track_matches m JOIN midi_tracks t ON t.id = m.track_id
         JOIN midi_files f ON f.id = t.midi_file_id
         WHERE f.cue_id = c.id AND m.audio_file_id IS NOT NULL{rank}) AS matched_tracks,
       (SELECT MAX(f.length_s) FROM midi_files f WHERE f.cue_id = c.id) AS midi_length_s,
       (SELECT MAX(a.duration_s) FROM audio_files a WHERE a.cue_id = c.id) AS audio_length_s,
       c.error_count AS errors
FROM cues c
WHERE c.status = 'complete'
"""


NOTES_VIEW = _notes_view(primary_only=True)
CUE_SUMMARY_VIEW = _cue_summary_view(primary_only=True)


def _drop_views() -> None:
    # SQLite's batch mode rebuilds the table the views name; PostgreSQL refuses to drop a column
    # a view reads. Both views are recreated below.
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.execute("DROP VIEW IF EXISTS cue_summary")


def upgrade() -> None:
    _drop_views()
    with op.batch_alter_table("track_matches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stem_rank", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.drop_constraint(batch_op.f("uq_track_matches_track_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_track_matches_track_id_audio_file_id"), ["track_id", "audio_file_id"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_track_matches_track_id_stem_rank"), ["track_id", "stem_rank"]
        )
    op.execute(NOTES_VIEW)
    op.execute(CUE_SUMMARY_VIEW)


def downgrade() -> None:
    _drop_views()
    op.execute("DELETE FROM track_matches WHERE stem_rank <> 0")
    with op.batch_alter_table("track_matches", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_track_matches_track_id_stem_rank"), type_="unique")
        batch_op.drop_constraint(
            batch_op.f("uq_track_matches_track_id_audio_file_id"), type_="unique"
        )
        batch_op.create_unique_constraint(batch_op.f("uq_track_matches_track_id"), ["track_id"])
        batch_op.drop_column("stem_rank")
    op.execute(_notes_view(primary_only=False))
    op.execute(_cue_summary_view(primary_only=False))
