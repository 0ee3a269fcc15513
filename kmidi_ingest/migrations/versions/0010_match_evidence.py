"""track_matches: the evidence of each pairing decision (issue 15)

Name score, content score, z and p against circularly shifted notes, content lag, runner-up stem
and margin, which evidence decided, and the reason ``verified`` is false or NULL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLOATS = ("name_score", "content_score", "content_z", "content_p", "content_lag_s", "margin_z")


def _drop_sqlite_views() -> list[tuple[str, str]]:
    """SQLite's batch mode rebuilds the table, which its views refer to: set them aside."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return []
    views = [
        (str(name), str(sql))
        for name, sql in bind.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY name"
        )
    ]
    for name, _ in views:
        op.execute(f'DROP VIEW "{name}"')
    return views


def _restore(views: list[tuple[str, str]]) -> None:
    for _, sql in views:
        op.execute(sql)


def upgrade() -> None:
    views = _drop_sqlite_views()
    with op.batch_alter_table("track_matches", schema=None) as batch_op:
        for name in _FLOATS[:5]:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "runner_up_audio_file_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("margin_z", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("decided_by", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("evidence", sa.String(length=48), nullable=True))
        batch_op.add_column(sa.Column("verify_reason", sa.Text(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_track_matches_runner_up_audio_file_id_audio_files"),
            "audio_files",
            ["runner_up_audio_file_id"],
            ["id"],
            ondelete="SET NULL",
        )
    _restore(views)


def downgrade() -> None:
    views = _drop_sqlite_views()
    with op.batch_alter_table("track_matches", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_track_matches_runner_up_audio_file_id_audio_files"), type_="foreignkey"
        )
        for name in (
            "verify_reason",
            "evidence",
            "decided_by",
            "margin_z",
            "runner_up_audio_file_id",
        ):
            batch_op.drop_column(name)
        for name in reversed(_FLOATS[:5]):
            batch_op.drop_column(name)
    _restore(views)
