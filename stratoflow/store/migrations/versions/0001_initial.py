"""Initial Stratoflow store tables.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Literal types rather than imports from stratoflow.store.schema: a revision must keep
# describing the schema as it was, whatever the models become later.
_ts = sa.DateTime(timezone=True)
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("template_text", sa.Text(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("plan_hash", name="pk_plans"),
        sa.UniqueConstraint("dag_id", name="uq_plans_dag_id"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("site", sa.String(255), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_deployments_dag_id_run_id"),
    )
    op.create_index("ix_deployments_plan_hash", "deployments", ["plan_hash"])
    op.create_index("ix_deployments_owner_created_at", "deployments", ["owner", "created_at"])
    op.create_index("ix_deployments_created_at", "deployments", ["created_at"])

    op.create_table(
        "step_events",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("step", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_step_events"),
    )
    op.create_index("ix_step_events_deployment_id", "step_events", ["deployment_id"])

    op.create_table(
        "resources",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("site", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_resources"),
        sa.UniqueConstraint("idempotency_key", name="uq_resources_idempotency_key"),
    )
    op.create_index("ix_resources_deployment_id", "resources", ["deployment_id"])
    op.create_index("ix_resources_state_site", "resources", ["state", "site"])

    op.create_table(
        "reservations",
        sa.Column("site", sa.String(255), nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("cores", sa.Float(), nullable=False),
        sa.Column("mem_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("site", "deployment_id", name="pk_reservations"),
    )

    op.create_table(
        "usage",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("site", sa.String(255), nullable=False),
        sa.Column("step", sa.String(250), nullable=False),
        sa.Column("core_seconds", sa.Float(), nullable=False),
        sa.Column("bytes_moved", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage"),
    )
    op.create_index("ix_usage_deployment_id", "usage", ["deployment_id"])


def downgrade() -> None:
    for table in ("usage", "reservations", "resources", "step_events", "deployments", "plans"):
        op.drop_table(table)
