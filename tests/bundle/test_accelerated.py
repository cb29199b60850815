"""The ONNX form a bundle stores at save time, and its re-check at load."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import modelport
from modelport.bundle.accelerated import CHECK_FILE, ONNX_FILE, load_stored
from modelport.bundle.hashing import MANIFEST_NAME, hash_tree
from modelport.bundle.manifest import Manifest
from modelport.core.runner import Runner, RunnerOptions


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def hgb_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = _frame(600)
    y = (x["a"] * x["b"] > 0).astype(int)
    x.iloc[::7, 1] = np.nan  # "b" is nullable, so the missing-value path is checked too
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, y)
    return modelport.save(model, tmp_path_factory.mktemp("b") / "hgb", example=x.head(50))


def _rehash(bundle: Path) -> None:
    """Rewrite the manifest's file list, as someone editing a bundle on purpose would."""
    manifest = Manifest.read(bundle)
    manifest.files = hash_tree(bundle)
    manifest.write(bundle)


def test_save_stores_a_checked_onnx_form(hgb_bundle: Path) -> None:
    manifest = yaml.safe_load((hgb_bundle / MANIFEST_NAME).read_text())
    stored = manifest["accelerated"]
    assert stored["file"] == ONNX_FILE and stored["check"] == CHECK_FILE
    assert "matches the native model" in stored["reason"]
    assert {ONNX_FILE, CHECK_FILE} <= set(manifest["files"])  # covered by the hashes
    with np.load(hgb_bundle / CHECK_FILE, allow_pickle=False) as check:
        assert set(check.files) >= {"example_n", "example_labels", "example_probabilities",
                                    "missing_labels", "missing_probabilities"}
        assert int(check["example_n"]) == 50


def test_stored_form_predicts_like_the_native_model(hgb_bundle: Path) -> None:
    model = modelport.load(str(hgb_bundle))
    predictor, reason = load_stored(model.manifest, hgb_bundle)
    assert predictor is not None, reason
    assert reason.startswith("stored ONNX form") and "re-checked on 50" in reason
    x = _frame(2000, seed=7)
    x.iloc[::5, 1] = np.nan  # the missing-value path through the trees too
    batch = model.coerce(x)
    native, onnx = model.predict_batch(batch), predictor.predict(batch)
    assert np.array_equal(native.labels, onnx.labels)
    np.testing.assert_allclose(native.probabilities, onnx.probabilities, atol=1e-4)


def test_runner_uses_the_stored_form(hgb_bundle: Path) -> None:
    runner = Runner(modelport.load(str(hgb_bundle)), RunnerOptions(accelerate="auto")).load()
    assert runner.accelerated
    assert runner.accelerate_reason.startswith("stored ONNX form")


def test_a_stored_form_that_no_longer_matches_is_refused(hgb_bundle: Path,
                                                         tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "edited"
    shutil.copytree(hgb_bundle, bundle)
    with np.load(bundle / CHECK_FILE, allow_pickle=False) as check:
        arrays = {k: check[k] for k in check.files}
    arrays["example_probabilities"] = arrays["example_probabilities"][:, ::-1].copy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (bundle / CHECK_FILE).write_bytes(buffer.getvalue())
    _rehash(bundle)
    model = modelport.load(str(bundle))
    predictor, reason = load_stored(model.manifest, bundle)
    assert predictor is None
    assert "no longer matches" in reason and "example rows" in reason
    # a runner then converts again from the native model, and still runs accelerated
    runner = Runner(model, RunnerOptions(accelerate="auto")).load()
    assert runner.accelerated and not runner.accelerate_reason.startswith("stored")


def test_string_classes_round_trip(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = _frame(300, seed=3)
    y = np.where(x["a"] > 0.3, "high", np.where(x["a"] < -0.3, "low", "mid"))
    path = modelport.save(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "m",
                          example=x.head(40))
    model = modelport.load(str(path))
    predictor, reason = load_stored(model.manifest, path)
    assert predictor is not None, reason
    labels = predictor.predict(model.coerce(x)).labels
    assert labels is not None
    assert labels.tolist() == model.predict(x).tolist()
    assert {type(v) for v in labels.tolist()} == {str}


def test_regressor_round_trip(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestRegressor

    x = _frame(300, seed=4)
    y = x["a"] * 2 + x["c"]
    path = modelport.save(RandomForestRegressor(n_estimators=10, random_state=0).fit(x, y),
                          tmp_path / "r", example=x.head(30))
    model = modelport.load(str(path))
    predictor, reason = load_stored(model.manifest, path)
    assert predictor is not None, reason
    got = predictor.predict(model.coerce(x)).labels
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosters_store_their_onnx_form(library: str, tmp_path: Path) -> None:
    x = _frame(400, seed=5)
    y = (x["a"] + x["d"] > 0).astype(int)
    if library == "xgboost":
        from xgboost import XGBClassifier

        estimator: Any = XGBClassifier(n_estimators=15, max_depth=3)
    else:
        from lightgbm import LGBMClassifier

        estimator = LGBMClassifier(n_estimators=15, verbose=-1)
    path = modelport.save(estimator.fit(x, y), tmp_path / library, example=x.head(30))
    model = modelport.load(str(path))
    assert model.flavor == library
    predictor, reason = load_stored(model.manifest, path)
    assert predictor is not None, reason
    batch = model.coerce(x)
    assert np.array_equal(predictor.predict(batch).labels, model.predict_batch(batch).labels)


def test_why_there_is_no_stored_form(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = _frame(100)
    y = (x["a"] > 0).astype(int)
    fitted = LogisticRegression().fit(x, y)
    without_example = modelport.save(fitted, tmp_path / "a", signature={
        "inputs": [{"name": n, "dtype": "float64"} for n in x.columns]})
    manifest = yaml.safe_load((without_example / MANIFEST_NAME).read_text())
    assert "no example rows" in manifest["accelerated"]["error"]
    assert not (without_example / ONNX_FILE).exists()

    opted_out = modelport.save(fitted, tmp_path / "b", example=x.head(5), accelerate=False)
    manifest = yaml.safe_load((opted_out / MANIFEST_NAME).read_text())
    assert manifest["accelerated"] is None
    assert set(manifest["files"]) == {"model.skops", "example.parquet"}


def test_batch_scoring_with_a_stored_form_never_imports_the_framework(
        hgb_bundle: Path, tmp_path: Path) -> None:
    """A first batch run loads the stored ONNX form: no skops, no converter, no scikit-learn."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = _frame(1000, seed=9)
    pq.write_table(pa.Table.from_pandas(x.assign(id=range(1000)), preserve_index=False),
                   tmp_path / "in.parquet")
    script = """
import json, sys
from modelport.batch import JobSpec, run_job
from modelport.batch.progress import Progress
spec = JobSpec(ref=sys.argv[1], input=sys.argv[2], output=sys.argv[3], keep=("id",))
summary = run_job(spec, progress=Progress(enabled=False))
heavy = sorted(m for m in ("sklearn", "skops", "skl2onnx", "onnxmltools") if m in sys.modules)
print(json.dumps({"rows": summary.rows_out, "accelerated": summary.accelerated,
                  "acceleration": summary.acceleration, "imported": heavy}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(hgb_bundle), str(tmp_path / "in.parquet"),
         str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
        env={"MODELPORT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
             "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == 1000 and report["accelerated"]
    assert report["acceleration"].startswith("stored ONNX form")
    assert report["imported"] == []
    model = modelport.load(str(hgb_bundle))
    scored = pq.read_table(tmp_path / "out").to_pandas().sort_values("id")
    assert scored["prediction"].tolist() == model.predict(x).tolist()
