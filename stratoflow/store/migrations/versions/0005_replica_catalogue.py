"""The replica catalogue of the lifecycle policies: datasets, files, storage endpoints,
replicas, rules, the locks tying rules to replicas, and the copies rules asked for.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ts = sa.DateTime(timezone=True)
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column:
    return sa.Column("id", _big_id, autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "datasets",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
    )
    op.create_table(
        "files",
        _id(),
        sa.Column("dataset_id", _big_id, nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("adler32", sa.String(8), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.UniqueConstraint("dataset_id", "name", name="uq_files_dataset_id_name"),
    )
    op.create_table(
        "storage_endpoints",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("site", sa.String(255), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_storage_endpoints"),
    )
    op.create_table(
        "replicas",
        _id(),
        sa.Column("file_id", _big_id, nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("verified_at", _ts, nullable=True),
        sa.Column("tombstone", _ts, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_replicas"),
        sa.UniqueConstraint("file_id", "endpoint", name="uq_replicas_file_id_endpoint"),
    )
    op.create_index("ix_replicas_endpoint_state", "replicas", ["endpoint", "state"])
    op.create_table(
        "rules",
        _id(),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("dataset_id", _big_id, nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("lifetime_s", sa.BigInteger(), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.Column("expires_at", _ts, nullable=True),
        sa.Column("stuck_at", _ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rules"),
        sa.UniqueConstraint("policy", "dataset_id", name="uq_rules_policy_dataset_id"),
    )
    op.create_index("ix_rules_dataset_id", "rules", ["dataset_id"])
    op.create_table(
        "replica_locks",
        sa.Column("rule_id", _big_id, autoincrement=False, nullable=False),
        sa.Column("replica_id", _big_id, autoincrement=False, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "replica_id", name="pk_replica_locks"),
    )
    op.create_index("ix_replica_locks_replica_id", "replica_locks", ["replica_id"])
    op.create_table(
        "replica_transfers",
        _id(),
        sa.Column("rule_id", _big_id, nullable=False),
        sa.Column("file_id", _big_id, nullable=False),
        sa.Column("source_replica_id", _big_id, nullable=False),
        sa.Column("dest_replica_id", _big_id, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_replica_transfers"),
    )
    op.create_index("ix_replica_transfers_state", "replica_transfers", ["state"])
    op.create_index("ix_replica_transfers_rule_id", "replica_transfers", ["rule_id"])


def downgrade() -> None:
    for table in (
        "replica_transfers",
        "replica_locks",
        "rules",
        "replicas",
        "storage_endpoints",
        "files",
        "datasets",
    ):
        op.drop_table(table)
