"""kmidi_database: this database's identity and the source it is a copy of

One row, written when the schema is created: a random ``database_uuid``. ``db copy`` records
the source's uuid in the target (``copied_from_uuid``) before its first data row, so a later
copy can tell an interrupted copy of the same source (resume) from an unrelated database
(refused). Bookkeeping, not data: it is not in the ORM models and is never copied itself.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:10:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "kmidi_database",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("database_uuid", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("copied_from_uuid", sa.String(length=36), nullable=True),
        sa.Column("copied_from_url", sa.Text(), nullable=True),
        sa.Column("copied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kmidi_database")),
    )
    op.bulk_insert(
        table,
        [{"id": 1, "database_uuid": str(uuid.uuid4()), "created_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.drop_table("kmidi_database")
