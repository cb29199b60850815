"""Registry fixtures: every store combination, a real PostgreSQL and a moto S3 server.

``store`` is parametrized over sqlite+local, postgresql+local, sqlite+s3 and postgresql+s3; each
test gets a fresh PostgreSQL schema (dropped afterwards), a fresh S3 prefix and fresh folders.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from modelport.registry import ModelVersion, Registry
from tests.conftest import moto_s3

PG_ADMIN_URL = os.environ.get(
    "MODELPORT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BUCKET = "modelport-test"
STORES = ["sqlite-local", "postgresql-local", "sqlite-s3", "postgresql-s3"]


@dataclass
class S3Server:
    endpoint: str
    bucket: str

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing"}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on a free 127.0.0.1 port, stopped by PID at the end of the session."""
    with moto_s3(BUCKET) as endpoint:
        yield S3Server(endpoint, BUCKET)


@pytest.fixture
def pg_schema_url() -> Iterator[Callable[[], str]]:
    """Make URLs of fresh PostgreSQL schemas (``search_path``); all dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL)
    created: list[str] = []

    def make() -> str:
        schema = f"mp_test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        created.append(schema)
        base = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
        return f"{base}?options={quote(f'-csearch_path={schema}')}"

    try:
        yield make
    finally:
        with admin.begin() as conn:
            for schema in created:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Store:
    """One store combination: where metadata and artifacts go, and how to reach the bytes."""

    kind: str
    url: str
    artifacts: str
    storage_options: dict[str, Any]
    tmp: Path
    s3: S3Server | None = None
    registries: list[Registry] = field(default_factory=list)

    def registry(self, *, cache: str = "cache", **kwargs: Any) -> Registry:
        reg = Registry(self.url, self.artifacts, storage_options=self.storage_options,
                       cache_dir=self.tmp / cache, **kwargs)
        self.registries.append(reg)
        return reg

    def read(self, mv: ModelVersion, rel: str) -> bytes:
        if self.s3 is None:
            return (Path(mv.artifact_uri) / rel).read_bytes()
        bucket, key = self._key(mv, rel)
        return bytes(self.s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def write(self, mv: ModelVersion, rel: str, data: bytes) -> None:
        """Overwrite one stored artifact file, behind the registry's back."""
        if self.s3 is None:
            (Path(mv.artifact_uri) / rel).write_bytes(data)
            return
        bucket, key = self._key(mv, rel)
        self.s3.client().put_object(Bucket=bucket, Key=key, Body=data)

    def remove(self, mv: ModelVersion, rel: str) -> None:
        if self.s3 is None:
            (Path(mv.artifact_uri) / rel).unlink()
            return
        bucket, key = self._key(mv, rel)
        self.s3.client().delete_object(Bucket=bucket, Key=key)

    def prefixes(self, name: str) -> list[str]:
        """Upload prefixes present in the artifact store for ``name`` (visible or not)."""
        if self.s3 is None:
            folder = Path(self.artifacts) / name
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        bucket, key = self.artifacts.removeprefix("s3://").split("/", 1)
        listing = self.s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{key}/{name}/")
        return sorted({obj["Key"].split("/")[-2] for obj in listing.get("Contents", [])})

    @staticmethod
    def _key(mv: ModelVersion, rel: str) -> tuple[str, str]:
        bucket, prefix = mv.artifact_uri.removeprefix("s3://").split("/", 1)
        return bucket, f"{prefix}/{rel}"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from _make_store(request, tmp_path, request.param)


@pytest.fixture(params=["sqlite-local", "postgresql-local"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The two metadata databases, with local artifacts (concurrency, crash tests)."""
    yield from _make_store(request, tmp_path, request.param)


def _make_store(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> Iterator[Store]:
    database, artifacts = kind.split("-")
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")()
    s3: S3Server | None = None
    options: dict[str, Any] = {}
    if artifacts == "s3":
        s3 = request.getfixturevalue("s3_server")
        root = f"s3://{s3.bucket}/{uuid.uuid4().hex[:12]}"
        options = s3.storage_options
    else:
        root = str(tmp_path / "artifacts")
    result = Store(kind, url, root, options, tmp_path, s3)
    try:
        yield result
    finally:
        for reg in result.registries:
            reg.close()


@pytest.fixture(scope="session")
def iris_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LogisticRegression on iris, saved as a bundle named ``iris`` (skops format)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import modelport

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    return modelport.save(model, tmp_path_factory.mktemp("bundles") / "iris", example=x[:5])


@pytest.fixture(scope="session")
def iris_rows() -> Any:
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True, as_frame=True)
    return x[:5]
