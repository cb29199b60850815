"""The registry's tables (SQLAlchemy Core) and its ordered list of schema migrations.

A database without a ``modelport_schema`` table is created from the current table definitions
and stamped with the newest migration number. A database stamped with an older number gets the
missing migrations applied in order, each in the same transaction as its stamp. ``upgrade`` is
idempotent and serialised between processes (PostgreSQL: a transaction-level advisory lock;
SQLite: ``BEGIN IMMEDIATE``), so two servers starting at once do not race.

To change the schema: edit the table below, then append a ``Migration`` whose ``apply`` brings
an existing database from the previous number to the new shape (``ALTER TABLE ...``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelport.errors import ConfigurationError

metadata = sa.MetaData()

models = sa.Table(
    "modelport_models",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    sa.Column("tags", sa.JSON, nullable=False),
)

versions = sa.Table(
    "modelport_versions",
    metadata,
    sa.Column("name", sa.String(128), sa.ForeignKey("modelport_models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("flavor", sa.String(64), nullable=False),
    sa.Column("manifest", sa.JSON, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    sa.Column("tags", sa.JSON, nullable=False),
)

aliases = sa.Table(
    "modelport_aliases",
    metadata,
    sa.Column("name", sa.String(128), sa.ForeignKey("modelport_models.name"), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(
        ["name", "version"], ["modelport_versions.name", "modelport_versions.version"]
    ),
)

audit = sa.Table(
    "modelport_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=True, index=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
)

#: One row; ``counter`` is bumped in the same transaction as every change (``state_token``).
state = sa.Table(
    "modelport_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("instance", sa.String(32), nullable=False),
    sa.Column("counter", sa.BigInteger, nullable=False),
)

#: Rollout endpoints (migration 2): spec and state as JSON, ``revision`` for optimistic updates.
endpoints = sa.Table(
    "modelport_endpoints",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
)

#: Per-variant traffic statistics flushed by every worker (summed by the canary and reports).
endpoint_stats = sa.Table(
    "modelport_endpoint_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("stats", sa.JSON, nullable=False),
    sa.Index("ix_modelport_endpoint_stats_endpoint_at", "endpoint", "at"),
)

#: Multi-armed bandit rewards per arm, shared by every replica (atomic increments).
endpoint_arms = sa.Table(
    "modelport_endpoint_arms",
    metadata,
    sa.Column("endpoint", sa.String(128), primary_key=True),
    sa.Column("variant", sa.String(64), primary_key=True),
    sa.Column("pulls", sa.BigInteger, nullable=False),
    sa.Column("reward_sum", sa.Float, nullable=False),
    sa.Column("reward_sq", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: API keys of ``modelport serve`` (serving/auth.py): only the SHA-256 of each secret is stored
api_keys = sa.Table(
    "modelport_api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("limits", sa.JSON, nullable=False),
)

#: Rows each API key had predicted per UTC day (migration 5), summed over every server on the
#: registry: daily quotas survive restarts and are shared (serving/limits.py)
key_usage = sa.Table(
    "modelport_key_usage",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
)

#: The monitor's configuration (migration 4): the applied rules document, one row per revision.
monitor_config = sa.Table(
    "modelport_monitor_config",
    metadata,
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("applied_by", sa.String(256), nullable=False),
)

#: The state of each rule's alert, kept between evaluations and processes.
monitor_alerts = sa.Table(
    "modelport_monitor_alerts",
    metadata,
    sa.Column("rule", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("since", sa.Float, nullable=True),
    sa.Column("fired_at", sa.Float, nullable=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("evaluated_at", sa.Float, nullable=False),
)

#: Every evaluation, notification and retraining run of the monitor.
monitor_history = sa.Table(
    "modelport_monitor_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("rule", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index("ix_modelport_monitor_history_at", "at"),
)

schema_versions = sa.Table(
    "modelport_schema",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``apply`` runs inside the upgrade transaction."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_baseline(conn: Connection) -> None:
    metadata.create_all(conn)


def _create_endpoints(conn: Connection) -> None:
    for table in (endpoints, endpoint_stats, endpoint_arms):
        table.create(conn, checkfirst=True)


def _add_api_keys(conn: Connection) -> None:
    api_keys.create(conn, checkfirst=True)


def _add_monitor(conn: Connection) -> None:
    for table in (monitor_config, monitor_alerts, monitor_history):
        table.create(conn, checkfirst=True)


def _add_key_usage(conn: Connection) -> None:
    key_usage.create(conn, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "models, versions, aliases, audit, state", _create_baseline),
    Migration(2, "rollout endpoints, endpoint statistics, bandit arms", _create_endpoints),
    Migration(3, "API keys of the serving edge (hashed)", _add_api_keys),
    Migration(4, "monitor configuration, alert states and history", _add_monitor),
    Migration(5, "rows predicted per API key and day (shared daily quotas)", _add_key_usage),
)
LATEST_SCHEMA = MIGRATIONS[-1].version

#: Arbitrary constant naming the PostgreSQL advisory lock held while upgrading.
_ADVISORY_LOCK_KEY = 0x6D6F64656C706F  # "modelpo"


def current_version(conn: Connection) -> int:
    """The newest migration recorded in the database; 0 for an empty database."""
    if not sa.inspect(conn).has_table(schema_versions.name):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_versions.c.version))).scalar() or 0)


def upgrade(engine: Engine) -> int:
    """Bring the database to ``LATEST_SCHEMA``; return the number it was at before.

    Cheap when nothing is to do (one read). Safe to call from many processes at once.
    """
    with engine.connect() as conn:
        before = current_version(conn)
        conn.rollback()
    if before == LATEST_SCHEMA:
        return before
    if before > LATEST_SCHEMA:
        raise _newer(before)
    with engine.connect() as conn:
        conn.execution_options(modelport_write=True)  # SQLite: BEGIN IMMEDIATE
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": _ADVISORY_LOCK_KEY})
            before = current_version(conn)
            if before > LATEST_SCHEMA:
                raise _newer(before)
            now = datetime.now(UTC)
            if before == 0:
                schema_versions.create(conn, checkfirst=True)
                metadata.create_all(conn)
                conn.execute(sa.insert(state).values(
                    id=1, instance=uuid.uuid4().hex[:12], counter=0))
                pending = list(MIGRATIONS)
            else:
                pending = [m for m in MIGRATIONS if m.version > before]
                for migration in pending:
                    migration.apply(conn)
            for migration in pending:
                conn.execute(sa.insert(schema_versions).values(
                    version=migration.version, description=migration.description,
                    applied_at=now))
    return before


def _newer(found: int) -> ConfigurationError:
    return ConfigurationError(
        f"the registry database has schema version {found}, newer than this modelport "
        f"understands ({LATEST_SCHEMA}); upgrade modelport on this machine"
    )


__all__ = [
    "LATEST_SCHEMA",
    "MIGRATIONS",
    "Migration",
    "aliases",
    "api_keys",
    "audit",
    "current_version",
    "endpoint_arms",
    "endpoint_stats",
    "endpoints",
    "metadata",
    "models",
    "state",
    "upgrade",
    "versions",
]
