"""Every path a manifest names is relative, inside the bundle and covered by a recorded SHA-256
(issue 14.3): ``flavor_info.file: /etc/passwd`` or ``../x`` or an unlisted file is refused at
registration and at load, before the file is opened."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

import modelport
from modelport.bundle.model import load_bundle
from modelport.errors import IntegrityError
from modelport.registry import Registry


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    return Path(modelport.save(model, tmp_path_factory.mktemp("saved") / "bundle", name="clf",
                               example=x[:5], accelerate=False))


@pytest.fixture
def bundle(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "bundle"))


def _point_file_at(bundle: Path, target: str) -> None:
    path = bundle / "modelport.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["flavor_info"]["file"] = target
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside.skops", "sub/../../x",
                                    "unlisted.skops", "C:/x", ""])
def test_paths_outside_the_checked_files_are_refused(bundle: Path, tmp_path: Path,
                                                     target: str) -> None:
    (bundle / "unlisted.skops").write_bytes((bundle / "model.skops").read_bytes())
    _point_file_at(bundle, target)
    with pytest.raises(IntegrityError, match="flavor_info.file"):
        load_bundle(bundle, trusted=True)
    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "artifacts")
    with pytest.raises(IntegrityError, match="flavor_info.file"):
        registry.register(bundle)
    assert registry.list_models() == []
    registry.close()


def test_an_intact_bundle_still_loads(bundle: Path) -> None:
    assert load_bundle(bundle).flavor == "sklearn"
