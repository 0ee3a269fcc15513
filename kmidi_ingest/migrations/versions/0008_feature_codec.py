"""audio_features.codec: how a feature's .npy bytes are compressed

Features were stored as raw ``.npy`` bytes (1.44 MB per stem-minute at 48 kHz). New rows name the
codec their chunks were compressed with (see ``kmidi_ingest.features``); rows from before this
revision keep ``NULL``, which reads as raw ``.npy`` bytes, so nothing is rewritten.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audio_features", schema=None) as batch_op:
        batch_op.add_column(sa.Column("codec", sa.String(length=64), nullable=True))


def downgrade() -> None:
    compressed = (
        op.get_bind()
        .execute(sa.text("SELECT COUNT(*) FROM audio_features WHERE codec IS NOT NULL"))
        .scalar_one()
    )
    if compressed:
        # Without the column these rows would read as raw .npy bytes, i.e. as corrupt.
        raise RuntimeError(
            f"{compressed} audio_features rows hold compressed features; revision 0005 cannot"
            " read them: export them first, or delete those cues, before downgrading"
        )
    # Not batch mode: on SQLite that recreates the table, and dropping the old one would cascade
    # to every audio_feature_chunks row. SQLite >= 3.35 drops a column in place.
    op.drop_column("audio_features", "codec")
