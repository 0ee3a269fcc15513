"""indexes on the foreign keys of cues and ingest_errors

Deleting or replacing a cue cascades to ``ingest_errors`` by ``cue_id`` and analysts join errors
and cues to their run; without these indexes each of those scans the whole table.

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-22 02:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cues", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cues_run_id"), ["run_id"], unique=False)
    with op.batch_alter_table("ingest_errors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_errors_cue_id"), ["cue_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ingest_errors_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ingest_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_errors_run_id"))
        batch_op.drop_index(batch_op.f("ix_ingest_errors_cue_id"))
    with op.batch_alter_table("cues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cues_run_id"))
