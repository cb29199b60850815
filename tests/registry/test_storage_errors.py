"""Failures of the database or the artifact store reach the user as clear modelport errors."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml

from modelport.errors import (
    ConfigurationError,
    InvalidReferenceError,
    NotFoundError,
    StorageError,
)
from modelport.registry import Registry

from .conftest import S3Server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_postgresql_is_a_storage_error(tmp_path: Path) -> None:
    url = f"postgresql://mp:s3cret@127.0.0.1:{_closed_port()}/registry"
    reg = Registry(url, tmp_path / "art")
    with pytest.raises(StorageError, match="cannot reach the registry database at "
                                           "postgresql://mp:\\*\\*\\*@127.0.0.1") as info:
        reg.list_models()
    assert "s3cret" not in str(info.value)
    assert "refused" in str(info.value).lower()


def test_unsupported_database_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unsupported registry database"):
        Registry("mysql+pymysql://root@127.0.0.1/test", tmp_path).list_models()
    with pytest.raises(ConfigurationError, match="cannot parse"):
        Registry("not a url", tmp_path).list_models()


def test_missing_bucket_is_a_storage_error(s3_server: S3Server, tmp_path: Path,
                                           iris_bundle: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}", "s3://no-such-bucket/models",
                   storage_options=s3_server.storage_options)
    with pytest.raises(StorageError, match="s3://no-such-bucket/models/iris/"):
        reg.register(iris_bundle)
    assert reg.list_models() == []
    reg.close()


def test_bundle_listing_a_path_outside_itself_is_refused(tmp_path: Path,
                                                         iris_bundle: Path) -> None:
    bundle = Path(shutil.copytree(iris_bundle, tmp_path / "evil"))
    (tmp_path / "secret.txt").write_text("x")
    manifest = yaml.safe_load((bundle / "modelport.yaml").read_text())
    manifest["files"]["../secret.txt"] = "0" * 64
    (bundle / "modelport.yaml").write_text(yaml.safe_dump(manifest))
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "art")
    with pytest.raises(InvalidReferenceError, match="not a plain relative path"):
        reg.register(bundle)
    assert not (tmp_path / "art").exists()
    reg.close()


def test_not_a_bundle(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "art")
    with pytest.raises(NotFoundError, match="is this a model bundle"):
        reg.register(tmp_path)
    reg.close()


def test_embedded_default_uses_modelport_home(modelport_home: Path, iris_bundle: Path) -> None:
    import modelport

    with Registry() as reg:
        assert reg.register(iris_bundle).ref == "iris:1"
        assert modelport.load("iris", registry=reg).version == 1
    assert (modelport_home / "registry.db").is_file()
    assert len(list((modelport_home / "artifacts" / "iris").iterdir())) == 1
    assert modelport.load("iris:1").version == 1  # a fresh Registry() finds the same home
