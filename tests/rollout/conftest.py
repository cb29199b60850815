"""Rollout fixtures: a registry (SQLite file or a fresh PostgreSQL schema) holding three
versions of a small iris model, with ``production`` on version 1."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from modelport.registry import Registry

PG_URL = os.environ.get("MODELPORT_TEST_POSTGRES",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def iris_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import modelport

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    path = tmp_path_factory.mktemp("bundles") / "iris"
    modelport.save(model, path, name="iris", example=x.head(20), accelerate=False)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path,
             iris_bundle: Path) -> Iterator[Registry]:
    """The registry on each database (for what depends on the database: transactions)."""
    yield from _registry(request.param, tmp_path, iris_bundle)


@pytest.fixture
def local_registry(tmp_path: Path, iris_bundle: Path) -> Iterator[Registry]:
    """The registry on SQLite only (for logic that does not depend on the database)."""
    yield from _registry("sqlite", tmp_path, iris_bundle)


def _registry(kind: str, tmp_path: Path, iris_bundle: Path) -> Iterator[Registry]:
    import sqlalchemy as sa

    schema = None
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/registry.db"
    else:
        schema = f"mp_rollout_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
        url = f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"
    reg = Registry(url, tmp_path / "artifacts", cache_dir=tmp_path / "cache", actor="tester")
    for _ in range(3):
        reg.register(iris_bundle)
    reg.set_alias("iris", "production", 1)
    try:
        yield reg
    finally:
        reg.close()
        if schema is not None:
            engine = sa.create_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()
