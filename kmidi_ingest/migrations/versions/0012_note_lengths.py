"""midi_notes on SQLite: lengths stored, end times computed

On SQLite a note row now stores its length (``duration_ticks``, ``duration_us``) where it stored
its end (``end_tick``, ``end_us``): a length is a smaller integer than an end time late in a file,
and SQLite stores integers in 1 to 8 bytes by magnitude, so a note takes about 2.2 bytes less
(of about 42). ``end_tick`` and ``end_us`` stay columns of the table, with their meaning and
their place: ``VIRTUAL`` generated columns, ``start_tick + duration_ticks`` and
``start_us + duration_us``, computed when read and not stored. Every query that reads them
reads the same values; only a write names the lengths (SQLite refuses a value for a generated
column).

PostgreSQL is unchanged (it has no virtual generated columns before version 18; its rows keep
the end columns themselves): on it this revision only moves the version stamp.

Existing notes are converted, ids kept. ``notes_view`` reads the table and is recreated.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = "({}) / CAST(1000000 AS DOUBLE PRECISION)"

# 0011's view, unchanged: SQLite drops nothing a view names, but a rename rewrites the views
# that name the table, so the view is dropped before and made again after.
NOTES_VIEW = f"""
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
LEFT JOIN track_matches m ON m.track_id = t.id AND m.stem_rank = 0
LEFT JOIN audio_files a ON a.id = m.audio_file_id
WHERE c.status = 'complete'
"""

# The columns both layouts store.
_SHARED = (
    "id, track_id, channel, pitch, velocity, release_velocity, start_tick, start_us, "
    "end_sustain_us, start_bar, start_beat, end_inferred"
)


def _notes_table(lengths: bool) -> None:
    if lengths:
        end_tick = sa.Column(
            "end_tick",
            sa.BigInteger(),
            sa.Computed("start_tick + duration_ticks", persisted=False),
            nullable=False,
        )
        end_us = sa.Column(
            "end_us",
            sa.BigInteger(),
            sa.Computed("start_us + duration_us", persisted=False),
            nullable=False,
        )
        stored = [
            sa.Column("duration_ticks", sa.BigInteger(), nullable=False),
            sa.Column("duration_us", sa.BigInteger(), nullable=False),
        ]
    else:
        end_tick = sa.Column("end_tick", sa.BigInteger(), nullable=False)
        end_us = sa.Column("end_us", sa.BigInteger(), nullable=False)
        stored = []
    op.create_table(
        "midi_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("pitch", sa.SmallInteger(), nullable=False),
        sa.Column("velocity", sa.SmallInteger(), nullable=False),
        sa.Column("release_velocity", sa.SmallInteger(), nullable=True),
        sa.Column("start_tick", sa.BigInteger(), nullable=False),
        end_tick,
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        end_us,
        sa.Column("end_sustain_us", sa.BigInteger(), nullable=True),
        sa.Column("start_bar", sa.Integer(), nullable=True),
        sa.Column("start_beat", sa.Float(), nullable=True),
        sa.Column("end_inferred", sa.Boolean(), nullable=False),
        *stored,
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["midi_tracks.id"],
            name=op.f("fk_midi_notes_track_id_midi_tracks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("track_id", "id", name=op.f("pk_midi_notes")),
        sqlite_with_rowid=False,
    )


def _rebuild(lengths: bool) -> None:
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.rename_table("midi_notes", "midi_notes_old")
    _notes_table(lengths)
    if lengths:
        written, read = "duration_ticks, duration_us", "end_tick - start_tick, end_us - start_us"
    else:
        written = read = "end_tick, end_us"
    op.execute(
        f"INSERT INTO midi_notes ({_SHARED}, {written}) "
        f"SELECT {_SHARED}, {read} FROM midi_notes_old ORDER BY track_id, id"
    )
    op.drop_table("midi_notes_old")
    op.execute(NOTES_VIEW)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(lengths=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(lengths=False)
