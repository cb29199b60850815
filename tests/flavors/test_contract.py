"""One contract, every flavor: save → load → the same predictions; the signature is enforced;
the bundle's hashes verify and a flipped byte is caught before the framework reads the file.

Each case builds a tiny fitted model, the data to predict on, and what the original object
predicts for that data (labels, and probabilities for classifiers).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.bundle.hashing import MANIFEST_NAME, hash_tree
from modelport.bundle.model import load_bundle
from modelport.errors import IntegrityError, InvalidInputError

Expected = tuple[np.ndarray, np.ndarray | None]


# ----------------------------------------------------------------------------- data
@cache
def iris() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True, as_frame=True)
    return x, y


@cache
def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    return x, y


@cache
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return x.iloc[:, :6], y


# ----------------------------------------------------------------------------- pyfunc fixtures
class ThresholdModel:
    """A pyfunc classifier: class 1 when the first column exceeds a threshold kept in a file."""

    task = "classification"
    classes = (0, 1)

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold

    def save(self, path: Path) -> None:
        (path / "threshold.json").write_text(json.dumps(self.threshold))

    def load(self, path: Path) -> None:
        self.threshold = json.loads((path / "threshold.json").read_text())

    def predict(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        first = frame.iloc[:, 0].to_numpy()
        p = 1.0 / (1.0 + np.exp(-(first - self.threshold)))
        return {"label": (first > self.threshold).astype(np.int64),
                "probabilities": np.column_stack([1.0 - p, p])}


class SumModel:
    """A pyfunc regressor: the sum of every column (returns a plain array)."""

    task = "regression"

    def load(self, path: Path) -> None:
        pass

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame.sum(axis=1).to_numpy()


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    id: str
    flavor: str
    build: Callable[[], tuple[Any, Any]]  # (fitted model, data to predict on)
    expect: Callable[[Any, Any], Expected]  # what the original object predicts
    example: bool = True  # save with example= (else the flavor reads the signature itself)
    trusted: bool = False


def _sk_clf() -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    return LogisticRegression(max_iter=500).fit(x, y), x


def _sk_reg() -> tuple[Any, Any]:
    from sklearn.tree import DecisionTreeRegressor

    x, y = diabetes()
    return DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, y), x


def _sk_expect(model: Any, x: Any) -> Expected:
    return model.predict(x), model.predict_proba(x) if hasattr(model, "predict_proba") else None


def _xgb_clf() -> tuple[Any, Any]:
    import xgboost as xgb

    x, y = iris()
    return xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(x, y), x


def _xgb_binary() -> tuple[Any, Any]:
    import xgboost as xgb

    x, y = cancer()
    return xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(x, y), x


def _xgb_reg() -> tuple[Any, Any]:
    import xgboost as xgb

    x, y = diabetes()
    return xgb.XGBRegressor(n_estimators=4, max_depth=2, n_jobs=1).fit(x, y), x


def _xgb_booster() -> tuple[Any, Any]:
    import xgboost as xgb

    x, y = cancer()
    dtrain = xgb.DMatrix(x, y)
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                     dtrain, num_boost_round=4), x


def _xgb_booster_expect(booster: Any, x: Any) -> Expected:
    p = booster.inplace_predict(x.to_numpy())
    return (p > 0.5).astype(np.int64), np.column_stack([1.0 - p, p])


def _lgb_clf() -> tuple[Any, Any]:
    import lightgbm as lgb

    x, y = iris()
    labels = y.map({0: "setosa", 1: "versicolor", 2: "virginica"})
    return lgb.LGBMClassifier(n_estimators=4, num_leaves=4, verbose=-1, n_jobs=1).fit(
        x, labels), x


def _lgb_reg() -> tuple[Any, Any]:
    import lightgbm as lgb

    x, y = diabetes()
    return lgb.LGBMRegressor(n_estimators=4, num_leaves=4, verbose=-1, n_jobs=1).fit(x, y), x


def _onnx_clf() -> tuple[Any, Any]:
    from skl2onnx import to_onnx

    model, x = _sk_clf()
    arr = x.to_numpy(np.float32)
    return to_onnx(model, arr[:1], options={"zipmap": False}), arr


def _onnx_reg() -> tuple[Any, Any]:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x, y = diabetes()
    arr = x.to_numpy(np.float32)
    return to_onnx(LinearRegression().fit(arr, y), arr[:1]), arr


def _onnx_expect(proto: Any, x: Any) -> Expected:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    if len(outputs) == 2:
        return outputs[0], outputs[1]
    return outputs[0], None


class SoftmaxNet:
    """Built lazily so that importing this test module does not import torch."""

    @staticmethod
    def make() -> Any:
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.linear = torch.nn.Linear(4, 3)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.softmax(self.linear(x), dim=-1)

        torch.manual_seed(0)
        return Net()


def _torch_clf() -> tuple[Any, Any]:
    x, _ = iris()
    return SoftmaxNet.make(), x.to_numpy(np.float32)


def _torch_reg() -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    x, _ = diabetes()
    net = torch.nn.Sequential(torch.nn.Linear(10, 1), torch.nn.Flatten(0))
    return net, x.to_numpy(np.float32)


def _torch_expect(module: Any, x: Any) -> Expected:
    import torch

    with torch.inference_mode():
        out = module(torch.tensor(x)).numpy()
    return out, None


def _river_clf() -> tuple[Any, Any]:
    from river import linear_model, preprocessing

    x, y = cancer()
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for row, target in zip(x.to_dict("records"), y.tolist(), strict=True):
        model.learn_one(row, target)
    return model, x


def _river_tree() -> tuple[Any, Any]:
    from river import tree

    x, y = iris()
    model = tree.HoeffdingTreeClassifier(grace_period=20)
    for row, target in zip(x.to_dict("records"), y.tolist(), strict=True):
        model.learn_one(row, target)
    return model, x


def _river_reg() -> tuple[Any, Any]:
    from river import linear_model, preprocessing

    x, y = diabetes()
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    for row, target in zip(x.to_dict("records"), y.tolist(), strict=True):
        model.learn_one(row, target)
    return model, x


def _river_expect(model: Any, x: Any) -> Expected:
    rows = x.to_dict("records")
    labels = np.asarray([model.predict_one(r) for r in rows])
    final = list(model.steps.values())[-1] if hasattr(model, "steps") else model
    if not hasattr(final, "predict_proba_one"):
        return labels, None
    probas = [model.predict_proba_one(r) for r in rows]
    classes = sorted({c for p in probas for c in p})
    return labels, np.array([[p.get(c, 0.0) for c in classes] for p in probas])


def _pyfunc_clf() -> tuple[Any, Any]:
    x, _ = iris()
    return ThresholdModel(threshold=5.8), x


def _pyfunc_reg() -> tuple[Any, Any]:
    x, _ = diabetes()
    return SumModel(), x


def _pyfunc_expect(model: Any, x: Any) -> Expected:
    out = model.predict(x)
    if isinstance(out, dict):
        return out["label"], out["probabilities"]
    return out, None


CASES = [
    Case("sklearn-classifier", "sklearn", _sk_clf, _sk_expect),
    Case("sklearn-regressor", "sklearn", _sk_reg, _sk_expect),
    Case("xgboost-classifier", "xgboost", _xgb_clf, _sk_expect),
    Case("xgboost-binary", "xgboost", _xgb_binary, _sk_expect),
    Case("xgboost-regressor", "xgboost", _xgb_reg, _sk_expect),
    Case("xgboost-booster", "xgboost", _xgb_booster, _xgb_booster_expect),
    Case("lightgbm-classifier", "lightgbm", _lgb_clf, _sk_expect),
    Case("lightgbm-regressor", "lightgbm", _lgb_reg, _sk_expect),
    Case("onnx-classifier", "onnx", _onnx_clf, _onnx_expect, example=False),
    Case("onnx-regressor", "onnx", _onnx_reg, _onnx_expect, example=False),
    Case("torch-classifier", "torch", _torch_clf, _torch_expect),
    Case("torch-regressor", "torch", _torch_reg, _torch_expect),
    Case("river-classifier", "river", _river_clf, _river_expect),
    Case("river-tree", "river", _river_tree, _river_expect),
    Case("river-regressor", "river", _river_reg, _river_expect),
    Case("pyfunc-classifier", "pyfunc", _pyfunc_clf, _pyfunc_expect),
    Case("pyfunc-regressor", "pyfunc", _pyfunc_reg, _pyfunc_expect),
]


@cache
def built(case_id: str) -> tuple[Any, Any]:
    case = next(c for c in CASES if c.id == case_id)
    return case.build()


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def bundle(case: Case, tmp_path: Path) -> Path:
    model, x = built(case.id)
    return modelport.save(model, tmp_path / case.id, example=x if case.example else None,
                          trusted=case.trusted)


def _columns(model: modelport.Model, x: Any) -> dict[str, Any]:
    """The data as named columns (one named tensor for tensor signatures)."""
    sig = model.signature
    if sig.kind == "tensor":
        return {sig.inputs[0].name: x}
    return {name: x[name].to_numpy() for name in sig.input_names}


# ----------------------------------------------------------------------------- the contract
def test_saved_flavor_is_the_expected_one(case: Case, bundle: Path) -> None:
    assert load_bundle(bundle, trusted=case.trusted).flavor == case.flavor


def test_loaded_model_predicts_exactly_like_the_original(case: Case, bundle: Path) -> None:
    original, x = built(case.id)
    labels, proba = case.expect(original, x)
    model = load_bundle(bundle, trusted=case.trusted)
    got = model.predict(x)
    assert got.shape == np.asarray(labels).shape
    assert np.array_equal(got, labels)
    if proba is not None:
        assert model.has_proba
        assert np.array_equal(model.predict_proba(x), proba)
        result = model.predict_batch(model.coerce(x))
        assert result.classes is not None
        assert len(result.classes) == proba.shape[1]


def test_one_row_predicts_like_the_whole_batch(case: Case, bundle: Path) -> None:
    _, x = built(case.id)
    model = load_bundle(bundle, trusted=case.trusted)
    one = x.iloc[[3]] if isinstance(x, pd.DataFrame) else x[3:4]
    assert np.array_equal(model.predict(one), model.predict(x)[3:4])


def test_missing_input_is_refused_by_name(case: Case, bundle: Path) -> None:
    _, x = built(case.id)
    model = load_bundle(bundle, trusted=case.trusted)
    columns = _columns(model, x)
    missing = next(iter(columns))
    del columns[missing]
    columns["unexpected"] = np.zeros(len(x))
    with pytest.raises(InvalidInputError) as info:
        model.predict(columns)
    assert info.value.field == missing
    assert missing in str(info.value)


def test_wrong_dtype_is_refused(case: Case, bundle: Path) -> None:
    _, x = built(case.id)
    model = load_bundle(bundle, trusted=case.trusted)
    columns = _columns(model, x)
    name = next(iter(columns))
    shape = np.asarray(columns[name]).shape
    columns[name] = np.full(shape, "high", dtype=object)
    with pytest.raises(InvalidInputError) as info:
        model.predict(columns)
    assert info.value.field == name


def test_manifest_hashes_cover_every_file(case: Case, bundle: Path) -> None:
    model = load_bundle(bundle, trusted=case.trusted)
    assert model.manifest.files == hash_tree(bundle)
    assert model.manifest.files  # the artifact itself is listed
    assert MANIFEST_NAME not in model.manifest.files


def test_flipped_byte_is_caught_before_loading(case: Case, bundle: Path) -> None:
    model = load_bundle(bundle, trusted=case.trusted)
    info = model.manifest.flavor_info
    artifacts = [rel for rel in model.manifest.files if rel.startswith("artifacts/")]
    # the model file itself; a pyfunc model without artifacts has only its example rows
    rel = str(info["file"]) if "file" in info else (artifacts or sorted(model.manifest.files))[0]
    artifact = bundle / rel
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SHA-256"):
        load_bundle(bundle, trusted=case.trusted)
