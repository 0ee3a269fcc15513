"""compact notes: integer microseconds, clustered by part, no global note indexes

``midi_notes`` keeps its columns' meaning but stores times as whole microseconds
(``start_us``, ``end_us``; ``end_sustain_us`` is NULL where the pedal does not lengthen the note,
i.e. where it would equal ``end_us``), and is keyed by ``(track_id, id)``: on SQLite a
``WITHOUT ROWID`` table clustered by part, so the notes of a part are one range of the table and
no separate ``track_id`` index is needed. The indexes on ``pitch`` and ``start_s`` are gone (times
are per file; no question filters on them across files). Seconds stay available as ``start_s``,
``end_s`` and ``end_sustain_s`` in ``notes_view`` (and on the ORM model).

Two changes keep the analysts' questions as fast without those indexes: an index on
``cues.name`` (a question about one cue by name starts from it and reaches the notes through
the key), and ``cue_summary.notes`` as the sum of its parts' ``note_count`` instead of a count of
the note rows.

Existing notes are converted: seconds rounded to the nearest microsecond, ids kept.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Seconds from whole microseconds: an integer over a double constant is a double division on
# both backends (one operation per row; the constant is folded).
_S = "({}) / CAST(1000000 AS DOUBLE PRECISION)"

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
LEFT JOIN track_matches m ON m.track_id = t.id
LEFT JOIN audio_files a ON a.id = m.audio_file_id
WHERE c.status = 'complete'
"""

# 0006's view, restored by the downgrade.
OLD_NOTES_VIEW = """
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

CUE_SUMMARY_VIEW = """
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
         WHERE f.cue_id = c.id AND m.audio_file_id IS NOT NULL) AS matched_tracks,
       (SELECT MAX(f.length_s) FROM midi_files f WHERE f.cue_id = c.id) AS midi_length_s,
       (SELECT MAX(a.duration_s) FROM audio_files a WHERE a.cue_id = c.id) AS audio_length_s,
       c.error_count AS errors
FROM cues c
WHERE c.status = 'complete'
"""

# 0001's cue_summary, restored by the downgrade.
OLD_CUE_SUMMARY_VIEW = """
CREATE VIEW cue_summary AS
SELECT c.id AS cue_id, c.name AS cue_name, c.rel_path AS cue_path, c.ingested_at,
       (SELECT COUNT(*) FROM midi_files f WHERE f.cue_id = c.id) AS midi_files,
       (SELECT COUNT(*) FROM midi_tracks t JOIN midi_files f ON f.id = t.midi_file_id
         WHERE f.cue_id = c.id AND NOT t.is_conductor) AS instrument_tracks,
       (SELECT COUNT(*) FROM midi_notes n JOIN midi_tracks t ON t.id = n.track_id
         JOIN midi_files f ON f.id = t.midi_file_id WHERE f.cue_id = c.id) AS notes,
       (SELECT COUNT(*) FROM audio_files a WHERE a.cue_id = c.id) AS stems,
       (SELECT COUNT(*) FROM final_mixes x WHERE x.cue_id = c.id) AS final_mixes,
       (SELECT COUNT(*) FROM track_matches m JOIN midi_tracks t ON t.id = m.track_id
         JOIN midi_files f ON f.id = t.midi_file_id
         WHERE f.cue_id = c.id AND m.audio_file_id IS NOT NULL) AS matched_tracks,
       (SELECT MAX(f.length_s) FROM midi_files f WHERE f.cue_id = c.id) AS midi_length_s,
       (SELECT MAX(a.duration_s) FROM audio_files a WHERE a.cue_id = c.id) AS audio_length_s,
       c.error_count AS errors
FROM cues c
WHERE c.status = 'complete'
"""

_SHARED = (
    "id, track_id, channel, pitch, velocity, release_velocity, start_tick, end_tick, "
    "start_bar, start_beat, end_inferred"
)
_US = "CAST(ROUND({} * 1000000) AS BIGINT)"


def _fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["track_id"],
        ["midi_tracks.id"],
        name=op.f("fk_midi_notes_track_id_midi_tracks"),
        ondelete="CASCADE",
    )


def _common_columns() -> list[sa.Column]:
    return [
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("pitch", sa.SmallInteger(), nullable=False),
        sa.Column("velocity", sa.SmallInteger(), nullable=False),
        sa.Column("release_velocity", sa.SmallInteger(), nullable=True),
        sa.Column("start_tick", sa.BigInteger(), nullable=False),
        sa.Column("end_tick", sa.BigInteger(), nullable=False),
    ]


def _set_aside_old_table() -> None:
    """Rename ``midi_notes`` out of the way, with the names PostgreSQL keeps schema-wide."""
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.execute("DROP VIEW IF EXISTS cue_summary")
    for name in ("pitch", "start_s", "track_id"):
        op.execute(f"DROP INDEX IF EXISTS ix_midi_notes_{name}")
    op.rename_table("midi_notes", "midi_notes_old")
    if op.get_bind().dialect.name != "sqlite":
        op.execute(
            "ALTER TABLE midi_notes_old RENAME CONSTRAINT pk_midi_notes TO pk_midi_notes_old"
        )


def _restart_identity() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('midi_notes', 'id'), "
            "COALESCE((SELECT MAX(id) FROM midi_notes), 0) + 1, false)"
        )


def upgrade() -> None:
    _set_aside_old_table()
    op.create_table(
        "midi_notes",
        sa.Column("id", Id, sa.Identity(always=False), nullable=False),
        sa.Column("track_id", Id, nullable=False),
        *_common_columns(),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("end_sustain_us", sa.BigInteger(), nullable=True),
        sa.Column("start_bar", sa.Integer(), nullable=True),
        sa.Column("start_beat", sa.Float(), nullable=True),
        sa.Column("end_inferred", sa.Boolean(), nullable=False),
        _fk(),
        sa.PrimaryKeyConstraint("track_id", "id", name=op.f("pk_midi_notes")),
        sqlite_with_rowid=False,
    )
    op.execute(
        f"INSERT INTO midi_notes ({_SHARED}, start_us, end_us, end_sustain_us) "
        f"SELECT {_SHARED}, {_US.format('start_s')}, {_US.format('end_s')}, "
        f"CASE WHEN end_sustain_s = end_s THEN NULL ELSE {_US.format('end_sustain_s')} END "
        "FROM midi_notes_old"
    )
    op.drop_table("midi_notes_old")
    _restart_identity()
    op.create_index(op.f("ix_cues_name"), "cues", ["name"], unique=False)
    op.execute(NOTES_VIEW)
    op.execute(CUE_SUMMARY_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS notes_view")
    op.execute("DROP VIEW IF EXISTS cue_summary")
    op.drop_index(op.f("ix_cues_name"), table_name="cues")
    op.rename_table("midi_notes", "midi_notes_old")
    if op.get_bind().dialect.name != "sqlite":
        op.execute(
            "ALTER TABLE midi_notes_old RENAME CONSTRAINT pk_midi_notes TO pk_midi_notes_old"
        )
    op.create_table(
        "midi_notes",
        sa.Column("id", Id, sa.Identity(always=False), nullable=False),
        sa.Column("track_id", Id, nullable=False),
        *_common_columns(),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("end_sustain_s", sa.Float(), nullable=False),
        sa.Column("start_bar", sa.Integer(), nullable=True),
        sa.Column("start_beat", sa.Float(), nullable=True),
        sa.Column("end_inferred", sa.Boolean(), nullable=False),
        _fk(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_midi_notes")),
    )
    op.execute(
        f"INSERT INTO midi_notes ({_SHARED}, start_s, end_s, end_sustain_s) "
        f"SELECT {_SHARED}, {_S.format('start_us')}, {_S.format('end_us')}, "
        f"{_S.format('COALESCE(end_sustain_us, end_us)')} FROM midi_notes_old"
    )
    op.drop_table("midi_notes_old")
    _restart_identity()
    for name in ("pitch", "start_s", "track_id"):
        op.create_index(op.f(f"ix_midi_notes_{name}"), "midi_notes", [name], unique=False)
    op.execute(OLD_NOTES_VIEW)
    op.execute(OLD_CUE_SUMMARY_VIEW)
