"""``to_onnx``: native models become ONNX Runtime predictors only when they match on the
bundle's example rows; otherwise ``None`` and a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.bundle.model import load_bundle
from modelport.flavors import convert
from modelport.flavors.convert import to_onnx
from modelport.flavors.onnx import OnnxPredictor


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return x, y


def scaled_logistic() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression())


def _bundle(model: Any, path: Path, example: Any, **kwargs: Any) -> modelport.Model:
    return load_bundle(modelport.save(model, path, example=example, **kwargs),
                       trusted=bool(kwargs.get("trusted")))


def _same(model: modelport.Model, predictor: OnnxPredictor, data: Any) -> None:
    batch = model.coerce(data)
    native, onnx = model.predict_batch(batch), predictor.predict(batch)
    assert onnx.labels is not None and native.labels is not None
    if native.probabilities is not None:
        assert np.array_equal(onnx.labels, native.labels)
        assert onnx.probabilities is not None
        assert np.abs(onnx.probabilities - native.probabilities).max() <= convert.PROBA_ATOL
        assert onnx.classes == native.classes
    else:
        assert np.allclose(onnx.labels, native.labels, rtol=convert.VALUE_RTOL)


def test_hist_gradient_boosting_converts_despite_boolean_attributes(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    from skl2onnx.common._container import ModelComponentContainer
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = cancer
    add_node = ModelComponentContainer.add_node
    model = _bundle(HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y),
                    tmp_path / "hgb", x.head(50))
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    assert "skl2onnx" in reason
    _same(model, predictor, x)
    assert ModelComponentContainer.add_node is add_node  # the local patch is undone


def test_column_models_take_the_float32_matrix_fast_path(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, y = cancer
    model = _bundle(scaled_logistic().fit(x, y),
                    tmp_path / "lr", x.head(30))
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    feeds = predictor.feeds(model.coerce(x.head(4)))
    assert len(feeds) == 1
    (matrix,) = feeds.values()
    assert matrix.dtype == np.float32 and matrix.shape == (4, x.shape[1])
    _same(model, predictor, x)
    assert predictor.onnx_bytes[:2]  # the serialized graph is kept for export


def test_dataframe_pipeline_with_string_columns_converts(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"tenure": rng.integers(0, 60, 200).astype(np.int64),
                          "spend": rng.normal(50, 10, 200),
                          "plan": rng.choice(["basic", "pro", "team"], 200)})
    target = (frame["spend"] + (frame["plan"] == "pro") * 8 > 52).astype(int)
    pipe = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["tenure", "spend"]),
                           ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])]),
        LogisticRegression(),
    ).fit(frame, target)
    model = _bundle(pipe, tmp_path / "churn", frame.head(40))
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    assert {"tenure", "spend", "plan"} <= set(predictor.feeds(model.coerce(frame.head(2))))
    _same(model, predictor, frame)


def test_regressors_match_within_relative_tolerance(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = _bundle(HistGradientBoostingRegressor(max_iter=10).fit(x, y), tmp_path / "reg",
                    x.head(50))
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    _same(model, predictor, x)


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_boosters_convert_with_onnxmltools(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series], framework: str
) -> None:
    x, y = cancer
    if framework == "xgboost":
        import xgboost as xgb

        native: Any = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(x, y)
    else:
        import lightgbm as lgb

        native = lgb.LGBMClassifier(n_estimators=5, num_leaves=8, verbose=-1, n_jobs=1).fit(
            x, y.map({0: "malignant", 1: "benign"}))
    model = _bundle(native, tmp_path / framework, x.head(60))
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    assert "onnxmltools" in reason
    _same(model, predictor, x)


def test_without_example_rows_the_conversion_is_not_trusted(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, y = cancer
    sig = modelport.Signature.infer(x.head(2))
    path = modelport.save(scaled_logistic().fit(x, y), tmp_path / "m",
                          signature=sig)
    predictor, reason = to_onnx(load_bundle(path))
    assert predictor is None
    assert "example" in reason


def test_a_numerical_mismatch_refuses_the_conversion(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = cancer
    model = _bundle(scaled_logistic().fit(x, y), tmp_path / "m", x.head(20))
    monkeypatch.setattr(convert, "PROBA_ATOL", -1.0)  # no difference is small enough
    predictor, reason = to_onnx(model)
    assert predictor is None
    assert "does not match" in reason and "probabilities differ" in reason


def test_models_without_a_converter_get_a_reason(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    from river import linear_model
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    x, y = cancer
    unsupported = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                                LogisticRegression()).fit(x, y)
    model = _bundle(unsupported, tmp_path / "log", x.head(10))
    predictor, reason = to_onnx(model)
    assert predictor is None
    assert "skl2onnx cannot convert" in reason

    online = linear_model.LogisticRegression()
    online.learn_one({"a": 1.0}, True)
    river_model = _bundle(online, tmp_path / "river", pd.DataFrame({"a": [1.0, 2.0]}))
    predictor, reason = to_onnx(river_model)
    assert predictor is None
    assert "river flavor has no ONNX converter" in reason


def test_onnx_bundles_are_already_onnx(tmp_path: Path,
                                       cancer: tuple[pd.DataFrame, pd.Series]) -> None:
    from skl2onnx import to_onnx as skl_to_onnx

    x, y = cancer
    arr = x.to_numpy(np.float32)
    proto = skl_to_onnx(scaled_logistic().fit(arr, y), arr[:1],
                        options={"zipmap": False})
    model = load_bundle(modelport.save(proto, tmp_path / "onnx"))
    predictor, reason = to_onnx(model)
    assert predictor is model.predictor
    assert "already" in reason



def test_image_tensors_are_flattened_for_the_converted_graph(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_digits(return_X_y=True)
    images = x.reshape(-1, 8, 8)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, y)
    sig = modelport.Signature.from_dict(
        {"kind": "tensor", "inputs": [{"name": "image", "dtype": "float64", "shape": [8, 8]}]})
    model = load_bundle(modelport.save(tree, tmp_path / "digits", signature=sig,
                                       example=images[:50]))
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    _same(model, predictor, images)


def test_a_missing_converter_is_a_reason_with_the_install_hint(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    x, y = cancer
    model = _bundle(scaled_logistic().fit(x, y), tmp_path / "m", x.head(20))
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # as if the [onnx] extra were absent
    predictor, reason = to_onnx(model)
    assert predictor is None
    assert "pip install 'modelport[onnx]'" in reason


def test_boolean_classes_come_back_as_booleans(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    from sklearn.tree import DecisionTreeClassifier

    x, y = cancer
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y == 1)
    model = _bundle(tree, tmp_path / "bool", x.head(30))
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    labels = predictor.predict(model.coerce(x)).labels
    assert labels is not None and labels.dtype == np.bool_
    assert np.array_equal(labels, tree.predict(x))


def test_labels_of_another_type_are_a_mismatch() -> None:
    from modelport.core.batch import Result

    native = Result(2, labels=np.array([True, False]))
    assert "labels differ" in convert.parity_problem(native, Result(2, labels=np.array([1, 0])))
    assert convert.parity_problem(native, Result(2, labels=np.array([True, False]))) == ""


def test_missing_values_are_part_of_the_parity_check(
    tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = cancer
    holes = x.copy()
    holes.iloc[::7, 0] = np.nan  # the training data has missing values in one column
    hgb = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(holes, y)
    model = _bundle(hgb, tmp_path / "holes", holes.head(50))
    assert model.signature.inputs[0].nullable
    batch = convert.with_missing_values(model.coerce(holes.head(50)), model.signature)
    assert batch is not None and np.isnan(batch.column(x.columns[0])[::2]).all()
    predictor, reason = to_onnx(model)
    assert predictor is not None, reason
    assert "missing values" in reason
    _same(model, predictor, holes)
