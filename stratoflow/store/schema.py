"""Table definitions (SQLAlchemy Core). The migrations in ``migrations/versions`` create
exactly these; ``tests/test_store_migrations.py`` checks that the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Airflow's metadata DB also has an ``alembic_version`` table; ours must not collide with it
# if an operator points both at the same PostgreSQL database.
VERSION_TABLE = "stratoflow_alembic_version"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def utc_raw(value: Any) -> datetime | None:
    """A timestamp as UTCDateTime hands it back, from a driver's datetime or from the text
    a bulk read selects (``cast(column, Text)``), where a million type calls cost seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Always hands back timezone-aware UTC datetimes.

    SQLite has no timezone type and returns naive values; PostgreSQL returns them in the
    session's time zone. Both are normalised here so callers can compare and serialise
    timestamps without caring about the backend.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return utc_raw(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY, not BIGINT.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

plans = Table(
    "plans",
    metadata,
    Column("plan_hash", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("dag_id", String(250), nullable=False, unique=True),
    Column("plan", JSON, nullable=False),
    Column("template_text", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# No foreign keys between these tables on purpose: each record is written by a different
# task, possibly out of order (a reaper, an undeploy run after the plan changed), and a
# bookkeeping write must never be what fails a task.
deployments = Table(
    "deployments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("plan_hash", String(64), nullable=False, index=True),
    Column("inputs", JSON, nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("outputs", JSON, nullable=False),
    Column("site", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # What works on the deployment now: BROKERING, DEPLOYER, DMS (INDIGO's); NULL: nothing.
    Column("task", String(64), nullable=True),
    # Submission options besides the inputs: {"keep_last_attempt": true}. NULL: none.
    Column("options", JSON, nullable=True),
    UniqueConstraint("dag_id", "run_id"),
    Index(None, "owner", "created_at"),
    Index(None, "created_at"),
)

step_events = Table(
    "step_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("deployment_id", String(36), nullable=False, index=True),
    Column("step", String(250), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

resources = Table(
    "resources",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("deployment_id", String(36), nullable=False, index=True),
    Column("site", String(255), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("node", String(255), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("external_id", String(255), nullable=True),
    Column("state", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "state", "site"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("site", String(255), primary_key=True),
    Column("deployment_id", String(36), primary_key=True),
    Column("cores", Float, nullable=False),
    Column("mem_bytes", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

usage = Table(
    "usage",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("deployment_id", String(36), nullable=False, index=True),
    Column("site", String(255), nullable=False),
    Column("step", String(250), nullable=False),
    Column("core_seconds", Float, nullable=False),
    Column("bytes_moved", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

reaper_actions = Table(
    "reaper_actions",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False),
    Column("site", String(255), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("deployment_id", String(36), nullable=True),
    Column("action", String(16), nullable=False),  # "deleted" | "failed" | "would_delete"
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "site", "created_at"),
)

# A callback to send: one row each time a deployment with a callback URL reaches a final
# state (stratoflow.store.callbacks); "pending" until its POST is answered 2xx
# ("delivered") or given up ("failed").
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("deployment_id", String(36), nullable=False, index=True),
    Column("status", String(32), nullable=False),  # the final state it announces
    Column("url", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime, nullable=True),
    Index(None, "state", "next_at"),
)

# Deployments waiting for capacity, and those admitted (stratoflow.admission decides). A
# row stays after its deployment leaves the queue, as the record of how it was admitted.
admission_queue = Table(
    "admission_queue",
    metadata,
    Column("deployment_id", String(36), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("candidates", JSON, nullable=False),
    Column("cores", Float, nullable=False),
    Column("mem_bytes", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # waiting | admitted | left
    Column("site", String(255), nullable=True),
    Column("reason", Text, nullable=True),
    Column("enqueued_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("deadline_at", UTCDateTime, nullable=False),
    Column("admitted_at", UTCDateTime, nullable=True),
    # When its room was given back: [admitted_at, released_at] is when it held capacity.
    Column("released_at", UTCDateTime, nullable=True),
    Column("left_at", UTCDateTime, nullable=True),
    Index(None, "state", "enqueued_at"),
)


# -- the replica catalogue (stratoflow.lifecycle; docs/lifecycle.md) ------------------------
# As above, no foreign keys: the lifecycle tasks write these in an order a crash may cut,
# and each step is written to converge when repeated.

datasets = Table(
    "datasets",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("meta", JSON, nullable=False),
    # Who registered it: "cli:<user>", "campaign:<deployment id>", "transfer:<deployment id>".
    Column("source", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("dataset_id", _BigId, nullable=False),
    Column("name", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("adler32", String(8), nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("dataset_id", "name"),
)

# Copied from the site catalogue's ``endpoints`` whenever it is read: a replica keeps the
# name of an endpoint that has since left the catalogue, and this row says what it was.
storage_endpoints = Table(
    "storage_endpoints",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("site", String(255), nullable=False),
    Column("url", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

replicas = Table(
    "replicas",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("file_id", _BigId, nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("url", Text, nullable=False),
    # AVAILABLE | COPYING | UNAVAILABLE | BAD | BEING_DELETED
    Column("state", String(16), nullable=False),
    Column("verified_at", UTCDateTime, nullable=True),
    # Set when no rule protects it any more: it may be deleted from this time on.
    Column("tombstone", UTCDateTime, nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("file_id", "endpoint"),
    Index(None, "endpoint", "state"),
)

# One rule per (policy, dataset): the policy's selector picked the dataset, as Rucio's
# subscriptions make one rule per matching DID.
rules = Table(
    "rules",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("policy", String(255), nullable=False),
    Column("dataset_id", _BigId, nullable=False),
    Column("copies", Integer, nullable=False),
    Column("expression", Text, nullable=False),
    Column("lifetime_s", BigInteger, nullable=True),  # NULL: it never expires
    # An operator's pin: a locked rule neither expires nor releases its locks.
    Column("locked", Boolean, nullable=False),
    Column("state", String(16), nullable=False),  # OK | REPLICATING | STUCK | SUSPENDED
    Column("state_reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("stuck_at", UTCDateTime, nullable=True),
    UniqueConstraint("policy", "dataset_id"),
    Index(None, "dataset_id"),
)

# A replica with a lock is protected: no tombstone, no deletion, whatever the other rules say.
replica_locks = Table(
    "replica_locks",
    metadata,
    Column("rule_id", _BigId, primary_key=True, autoincrement=False),
    Column("replica_id", _BigId, primary_key=True, autoincrement=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "replica_id"),
)

# A copy a rule asked for: its source replica is protected while it is unfinished.
replica_transfers = Table(
    "replica_transfers",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("rule_id", _BigId, nullable=False),
    Column("file_id", _BigId, nullable=False),
    Column("source_replica_id", _BigId, nullable=False),
    Column("dest_replica_id", _BigId, nullable=False),
    Column("state", String(16), nullable=False),  # QUEUED | SUBMITTED | DONE | FAILED
    Column("external_id", String(255), nullable=True),  # the service's job id
    Column("attempts", Integer, nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "state"),
    Index(None, "rule_id"),
)
