"""The admission queue (deployments waiting for capacity) and a deployment's current task.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("task", sa.String(64), nullable=True))
    op.create_table(
        "admission_queue",
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("cores", sa.Float(), nullable=False),
        sa.Column("mem_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("site", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("enqueued_at", _ts, nullable=False),
        sa.Column("heartbeat_at", _ts, nullable=False),
        sa.Column("deadline_at", _ts, nullable=False),
        sa.Column("admitted_at", _ts, nullable=True),
        sa.Column("released_at", _ts, nullable=True),
        sa.Column("left_at", _ts, nullable=True),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_admission_queue"),
    )
    op.create_index(
        "ix_admission_queue_state_enqueued_at", "admission_queue", ["state", "enqueued_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_admission_queue_state_enqueued_at", table_name="admission_queue")
    op.drop_table("admission_queue")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("task")
