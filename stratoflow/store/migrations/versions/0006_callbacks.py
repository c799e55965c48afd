"""The callbacks to send: one row each time a deployment with a callback URL reaches a
final state, until the POST is answered 2xx or given up.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ts = sa.DateTime(timezone=True)
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", _ts, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("done_at", _ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_callbacks"),
    )
    op.create_index("ix_callbacks_state_next_at", "callbacks", ["state", "next_at"])
    op.create_index("ix_callbacks_deployment_id", "callbacks", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_callbacks_deployment_id", table_name="callbacks")
    op.drop_index("ix_callbacks_state_next_at", table_name="callbacks")
    op.drop_table("callbacks")
