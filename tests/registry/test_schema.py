"""Schema creation and migrations on both databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelport.errors import ConfigurationError
from modelport.registry import schema
from modelport.registry.metadata import create_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'registry.db'}"
    make: Callable[[], str] = request.getfixturevalue("pg_schema_url")
    return make()


def test_upgrade_creates_everything_once(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert schema.upgrade(engine) == 0
        assert schema.upgrade(engine) == schema.LATEST_SCHEMA  # idempotent
        names = set(sa.inspect(engine).get_table_names())
        assert {t.name for t in schema.metadata.sorted_tables} | {"modelport_schema"} <= names
        with engine.connect() as conn:
            assert schema.current_version(conn) == schema.LATEST_SCHEMA
            assert conn.execute(sa.select(schema.state.c.counter)).scalar() == 0
    finally:
        engine.dispose()


def test_pending_migrations_are_applied_in_order(database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(database_url)
    try:
        schema.upgrade(engine)

        def add_owner(conn: sa.Connection) -> None:
            conn.execute(sa.text("ALTER TABLE modelport_models ADD COLUMN owner VARCHAR(64)"))

        latest = schema.LATEST_SCHEMA
        newer = (*schema.MIGRATIONS, schema.Migration(latest + 1, "models.owner", add_owner))
        monkeypatch.setattr(schema, "MIGRATIONS", newer)
        monkeypatch.setattr(schema, "LATEST_SCHEMA", latest + 1)
        assert schema.upgrade(engine) == latest
        assert schema.upgrade(engine) == latest + 1
        columns = {c["name"] for c in sa.inspect(engine).get_columns("modelport_models")}
        assert "owner" in columns
    finally:
        engine.dispose()


def test_a_newer_database_is_refused(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        schema.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(schema.schema_versions).values(
                version=99, description="from the future",
                applied_at=sa.func.current_timestamp()))
        with pytest.raises(ConfigurationError, match="upgrade modelport"):
            schema.upgrade(engine)
    finally:
        engine.dispose()
