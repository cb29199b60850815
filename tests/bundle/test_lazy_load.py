"""A server answering from a bundle's stored ONNX form never deserializes the native model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.bundle.model import load_bundle
from modelport.core.runner import Runner, RunnerOptions
from modelport.errors import IntegrityError


@pytest.fixture(scope="module")
def hgb_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    y = (x["a"] + x["c"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
    return modelport.save(model, tmp_path_factory.mktemp("lazy") / "hgb", example=x.head(40))


def test_a_lazy_model_deserializes_on_first_use(hgb_bundle: Path) -> None:
    model = load_bundle(hgb_bundle, lazy=True)
    assert not model.native_loaded
    runner = Runner(model, RunnerOptions(accelerate="auto")).load()
    assert runner.accelerated and not model.native_loaded
    rows = pd.DataFrame(np.zeros((3, 4)), columns=["a", "b", "c", "d"])
    batch = model.coerce(rows)
    onnx_labels = runner.predict(batch).labels
    native = model.predict_batch(batch)  # the first read of model.predictor loads it
    assert model.native_loaded
    assert np.asarray(native.labels).tolist() == np.asarray(onnx_labels).tolist()


def test_accelerate_off_loads_the_native_model_at_load(hgb_bundle: Path) -> None:
    model = load_bundle(hgb_bundle, lazy=True)
    runner = Runner(model, RunnerOptions(accelerate="off")).load()
    assert model.native_loaded and not runner.accelerated


def test_a_native_file_replaced_after_load_is_refused(hgb_bundle: Path, tmp_path: Path
                                                       ) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(hgb_bundle, copy)
    model = load_bundle(copy, lazy=True)
    (copy / "model.skops").write_bytes(b"not the model that was verified")
    with pytest.raises(IntegrityError, match="model.skops"):
        model.predictor  # noqa: B018


def test_serving_from_the_stored_form_never_imports_the_framework(
        hgb_bundle: Path, tmp_path: Path) -> None:
    """The worker's imports and load path (registry → service → runner) with the stored ONNX
    form: none of the frameworks (seconds and hundreds of MB at every cold start)."""
    script = """
import json, sys
import modelport.serving.app, modelport.serving.server  # what every server worker imports
from modelport.core.runner import RunnerOptions
from modelport.core.service import InferenceService
from modelport.registry import Registry
from modelport.settings import Settings
with Registry.from_settings(Settings.from_env()) as registry:
    registry.register(sys.argv[1])
    service = InferenceService(registry, options=RunnerOptions(accelerate="auto"))
    result = service.predict("hgb", [{"a": 0.5, "b": 0.1, "c": 0.2, "d": 0.0}])
    heavy = sorted(m for m in ("sklearn", "skops", "scipy", "torch", "skl2onnx", "pandas")
                   if m in sys.modules)
    runner = service.runner("hgb")
    print(json.dumps({"label": int(result.labels[0]), "imported": heavy,
                      "accelerated": runner.accelerated,
                      "native_loaded": runner.model.native_loaded}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(hgb_bundle)], capture_output=True, text=True,
        timeout=300, env={"MODELPORT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
                          "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == []
    assert report["accelerated"] and not report["native_loaded"]
    expected = modelport.load(str(hgb_bundle)).predict(
        pd.DataFrame([{"a": 0.5, "b": 0.1, "c": 0.2, "d": 0.0}]))
    assert report["label"] == int(expected[0])
