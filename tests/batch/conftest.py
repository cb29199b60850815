"""Batch fixtures: saved model bundles, input files, and real PostgreSQL, Redis and S3 (moto)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import moto_s3

FEATURES = ["f0", "f1", "f2", "f3"]
PG_URL = os.environ.get("MODELPORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def frame(n: int, *, seed: int = 0, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    data.insert(0, "id", np.arange(start, start + n, dtype=np.int64))
    return data


def write_parquet(path: Path, data: pd.DataFrame, row_group: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path,
                   row_group_size=row_group)
    return path


@pytest.fixture(scope="session")
def classifier_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LogisticRegression on four float features, saved as a bundle (skops, safe)."""
    from sklearn.linear_model import LogisticRegression

    import modelport

    data = frame(400, seed=1)
    x = data[FEATURES]
    y = (x["f0"] + x["f1"] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    path = tmp_path_factory.mktemp("bundles") / "lr"
    modelport.save(model, path, name="lr", example=x, flavor="sklearn")
    return path


@pytest.fixture(scope="session")
def slow_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HistGradientBoosting classifier: slow enough natively that a run can be killed mid-way."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    import modelport

    data = frame(2000, seed=2)
    x = data[FEATURES]
    y = (x["f0"] * x["f2"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x, y)
    path = tmp_path_factory.mktemp("bundles") / "hgb"
    modelport.save(model, path, name="hgb", example=x, flavor="sklearn")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELPORT_HOME", str(home))
    for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS", "MODELPORT_STORAGE_OPTIONS"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def pg_table() -> Iterator[str]:
    """A unique table name in the test database; it, its staging tables and run rows are dropped
    afterwards."""
    import sqlalchemy as sa

    name = f"mpt_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        tables = conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE :p"),
            {"p": f"{name}%"}).scalars().all()
        for table in tables:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        if sa.inspect(conn).has_table("modelport_batch_runs"):
            conn.execute(sa.text("DELETE FROM modelport_batch_runs WHERE target LIKE :p"),
                         {"p": f"{name}%"})
    engine.dispose()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"mpt:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, Any]]:
    """A real S3-compatible HTTP server (moto in server mode) with a bucket ``scores``."""
    with moto_s3("scores") as endpoint:
        yield {"endpoint": endpoint, "options": {
            "key": "test", "secret": "test", "endpoint_url": endpoint,
            "client_kwargs": {"region_name": "us-east-1"}}}
