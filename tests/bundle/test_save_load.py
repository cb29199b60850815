"""modelport.save / modelport.load on bundle directories (scikit-learn flavor)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import modelport
from modelport.bundle.hashing import sha256_file
from modelport.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    InvalidReferenceError,
    UnsupportedModelError,
    UntrustedArtifactError,
)


def test_pipeline_round_trip_predicts_exactly_like_the_original(
    tmp_path: Path, cancer_pipeline: Any, cancer_frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, _ = cancer_frame
    path = modelport.save(cancer_pipeline, tmp_path / "churn", example=x.head(20), reference=x,
                          metrics={"acc": 0.97}, params={"C": 1.0}, tags={"team": "growth"})
    model = modelport.load(str(path))
    assert np.array_equal(model.predict(x), cancer_pipeline.predict(x))
    assert np.array_equal(model.predict_proba(x), cancer_pipeline.predict_proba(x))
    manifest = yaml.safe_load((path / "modelport.yaml").read_text())
    assert manifest["flavor"] == "sklearn"
    assert manifest["flavor_info"]["serialization"] == "skops"
    assert manifest["signature"]["task"] == "classification"
    assert manifest["signature"]["classes"] == [0, 1]
    assert [o["name"] for o in manifest["signature"]["outputs"]] == ["label", "probabilities"]
    assert manifest["metrics"] == {"acc": 0.97}
    assert manifest["tags"] == {"team": "growth"}
    assert manifest["libraries"]["scikit-learn"]
    for rel, digest in manifest["files"].items():
        assert sha256_file(path / rel) == digest
    assert set(manifest["files"]) == {"model.skops", "example.parquet", "reference.json",
                                      "reference.parquet", "accelerated.onnx",
                                      "accelerated-check.npz"}


def test_reference_profile_describes_training_data(
    tmp_path: Path, cancer_pipeline: Any, cancer_frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, _ = cancer_frame
    path = modelport.save(cancer_pipeline, tmp_path / "m", example=x.head(5), reference=x)
    profile = json.loads((path / "reference.json").read_text())
    assert profile["rows"] == len(x)
    radius = profile["features"]["mean radius"]
    assert radius["type"] == "numeric"
    assert radius["min"] == pytest.approx(x["mean radius"].min())
    assert sum(radius["histogram"]["counts"]) == len(x)
    sample = pq.read_table(path / "reference.parquet")  # the rows drift statistics compare with
    assert sample.num_rows == len(x) and sample.column_names == list(x.columns)
    assert sample.column("mean radius").to_pylist() == x["mean radius"].tolist()
    assert radius["quantiles"][5] == pytest.approx(x["mean radius"].median())


def test_categorical_reference_profile(tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"city": ["a", "b", "a", "c"] * 5, "n": np.arange(20.0)})
    y = np.arange(20) % 2
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, y)
    path = modelport.save(pipe, tmp_path / "cat", example=frame, reference=frame)
    profile = json.loads((path / "reference.json").read_text())
    assert profile["features"]["city"]["frequencies"] == {"a": 0.5, "b": 0.25, "c": 0.25}
    model = modelport.load(str(path))
    assert model.predict([{"city": "b", "n": 3.0}]).tolist() == pipe.predict(
        pd.DataFrame({"city": ["b"], "n": [3.0]})).tolist()
    with pytest.raises(InvalidInputError, match="'city': expected string"):
        model.predict([{"city": 5, "n": 3.0}])


def test_numpy_trained_classifier_gets_a_tensor_signature(
    tmp_path: Path, iris_classifier: Any, iris_arrays: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_arrays
    model = modelport.load(str(modelport.save(iris_classifier, tmp_path / "iris", example=x[:5])))
    assert model.signature.kind == "tensor"
    assert np.array_equal(model.predict(x), iris_classifier.predict(x))
    assert model.predict({"input": x[0].tolist()}).tolist() == iris_classifier.predict(
        x[:1]).tolist()
    with pytest.raises(InvalidInputError, match=r"expected shape \[n, 4\]"):
        model.predict(x[:, :3])


def test_regressor_round_trip(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    reg = RandomForestRegressor(n_estimators=5, random_state=0).fit(x, y)
    model = modelport.load(str(modelport.save(reg, tmp_path / "reg", example=x.head())))
    assert model.signature.task == "regression"
    assert np.array_equal(model.predict(x), reg.predict(x))
    assert not model.has_proba
    with pytest.raises(UnsupportedModelError, match="probabilities"):
        model.predict_proba(x)


def test_signature_is_required_when_it_cannot_be_inferred(tmp_path: Path,
                                                          iris_classifier: Any) -> None:
    with pytest.raises(InvalidInputError, match="pass example="):
        modelport.save(iris_classifier, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_explicit_signature_is_used(tmp_path: Path, iris_classifier: Any,
                                    iris_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    sig = {"kind": "tensor", "inputs": [{"name": "features", "dtype": "float64", "shape": [4]}]}
    model = modelport.load(str(modelport.save(iris_classifier, tmp_path / "s", signature=sig)))
    x, _ = iris_arrays
    assert model.predict({"features": x[:2].tolist()}).tolist() == iris_classifier.predict(
        x[:2]).tolist()


def test_joblib_needs_trust_to_save_and_to_load(tmp_path: Path, iris_classifier: Any,
                                                 iris_arrays: tuple[np.ndarray, np.ndarray]
                                                 ) -> None:
    x, _ = iris_arrays
    path = modelport.save(iris_classifier, tmp_path / "j", example=x[:3], trusted=True)
    assert (path / "model.joblib").exists()
    with pytest.raises(UntrustedArtifactError, match="trusted=True"):
        modelport.load(str(path))
    assert modelport.load(str(path), trusted=True).predict(x[:3]).tolist() == \
        iris_classifier.predict(x[:3]).tolist()


def test_flipped_byte_is_refused_before_deserialization(
    tmp_path: Path, iris_classifier: Any, iris_arrays: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import skops.io

    x, _ = iris_arrays
    path = modelport.save(iris_classifier, tmp_path / "t", example=x[:3])
    artifact = path / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    opened: list[object] = []
    monkeypatch.setattr(skops.io, "load", lambda *a, **k: opened.append(a))
    monkeypatch.setattr(skops.io, "get_untrusted_types", lambda *a, **k: opened.append(a))
    with pytest.raises(IntegrityError, match="model.skops.*SHA-256"):
        modelport.load(str(path))
    assert opened == []


def test_missing_file_is_an_integrity_error(tmp_path: Path, iris_classifier: Any,
                                            iris_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    path = modelport.save(iris_classifier, tmp_path / "t", example=iris_arrays[0][:3])
    (path / "example.parquet").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        modelport.load(str(path))


def test_existing_target_needs_overwrite(tmp_path: Path, iris_classifier: Any,
                                         iris_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = iris_arrays
    modelport.save(iris_classifier, tmp_path / "m", example=x[:3])
    with pytest.raises(ConflictError, match="overwrite=True"):
        modelport.save(iris_classifier, tmp_path / "m", example=x[:3])
    modelport.save(iris_classifier, tmp_path / "m", example=x[:3], overwrite=True)


def test_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Unsavable(ClassifierMixin, BaseEstimator):  # a local class skops cannot import
        def fit(self, x: Any, y: Any) -> Unsavable:
            self.classes_ = np.array([0, 1])
            self.handle = open(__file__)  # noqa: SIM115 - an object no format can store
            return self

        def predict(self, x: Any) -> Any:
            return np.zeros(len(x), dtype=int)

    est = Unsavable().fit(None, None)
    try:
        with pytest.raises(UnsupportedModelError, match="trusted=True"):
            modelport.save(est, tmp_path / "u", example=np.zeros((2, 2)))
    finally:
        est.handle.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil", "a/b", "x\x00y", "/abs", "", ".hidden", "a" * 200,
                                  "a..b"])
def test_model_names_are_validated(tmp_path: Path, name: str, iris_classifier: Any,
                                   iris_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid model name"):
        modelport.save(iris_classifier, tmp_path / "ok", name=name, example=iris_arrays[0][:2])


def test_unknown_objects_get_guidance(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="load\\(path\\) and predict"):
        modelport.save(object(), tmp_path / "o", example=np.zeros((1, 1)))
