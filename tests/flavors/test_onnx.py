"""ONNX: signatures read from the graph, session settings, and column-per-input graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import modelport
from modelport.bundle.model import load_bundle
from modelport.flavors.onnx import OnnxFlavor


def _column_graph() -> tuple[object, pd.DataFrame, object]:
    """A regressor converted with one ``[N, 1]`` input per DataFrame column."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"rooms": rng.integers(1, 6, 50).astype(np.int64),
                          "area": rng.normal(80, 20, 50).astype(np.float32)})
    target = frame["rooms"] * 10 + frame["area"]
    pipe = make_pipeline(ColumnTransformer([("s", StandardScaler(), ["rooms", "area"])]),
                         LinearRegression()).fit(frame, target)
    proto = convert_sklearn(pipe, initial_types=[("rooms", Int64TensorType([None, 1])),
                                                 ("area", FloatTensorType([None, 1]))])
    return proto, frame, pipe


def test_graph_with_one_input_per_column_gets_a_column_signature(tmp_path: Path) -> None:
    proto, frame, pipe = _column_graph()
    sig = OnnxFlavor().infer_signature(proto)
    assert sig is not None and sig.kind == "columns"
    assert [(c.name, c.dtype) for c in sig.inputs] == [("rooms", "int64"), ("area", "float32")]
    model = load_bundle(modelport.save(proto, tmp_path / "houses"))
    got = model.predict(frame)
    assert got.shape == (50, 1)
    assert np.allclose(got[:, 0], pipe.predict(frame), rtol=1e-4)


def test_path_and_bytes_are_accepted_and_threads_configured(tmp_path: Path) -> None:
    proto, frame, _ = _column_graph()
    file = tmp_path / "houses.onnx"
    file.write_bytes(proto.SerializeToString())  # type: ignore[attr-defined]
    from_path = load_bundle(modelport.save(str(file), tmp_path / "a"))
    from_bytes = load_bundle(modelport.save(file.read_bytes(), tmp_path / "b"))
    assert from_path.manifest.flavor_info["intra_op_num_threads"] == 1
    options = from_path.predictor.native.get_session_options()
    assert options.intra_op_num_threads == 1
    assert np.array_equal(from_path.predict(frame), from_bytes.predict(frame))


def test_classifier_graph_reports_labels_and_classes(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    arr = x.astype(np.float32)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(arr, y)
    model = load_bundle(modelport.save(to_onnx(tree, arr[:1], options={"zipmap": False}),
                                       tmp_path / "tree"))
    assert model.signature.task == "classification"
    assert model.signature.classes == (0, 1, 2)
    assert model.signature.kind == "tensor" and model.signature.inputs[0].shape == (4,)
    assert np.array_equal(model.predict(arr), tree.predict(arr))
    assert np.allclose(model.predict_proba(arr), tree.predict_proba(arr))


def test_zipmap_probabilities_become_a_matrix(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    arr = x.astype(np.float32)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(arr, y)
    model = load_bundle(modelport.save(to_onnx(tree, arr[:1]), tmp_path / "zipmap"))
    result = model.predict_batch(model.coerce(arr))
    assert result.classes == [0, 1, 2]
    assert result.probabilities is not None and result.probabilities.shape == (150, 3)
    assert np.allclose(result.probabilities, tree.predict_proba(arr))
    assert np.array_equal(result.labels, tree.predict(arr))  # type: ignore[arg-type]
