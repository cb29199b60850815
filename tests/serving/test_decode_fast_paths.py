"""The fast decode paths for float columns give exactly the batch the general path gives.

Each wire form (a float matrix, V2 named tensors, V2 one tensor, KServe V1 rows, MLflow
dataframe_split) is decoded twice: by the fast path, and by a variation of the same request
that the fast path does not take (columns by name), and the batches must be identical.
Requests the fast path does not recognise still get the general path's precise errors.
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from modelport.bundle.model import Model, load_bundle
from modelport.core.batch import Batch
from modelport.errors import InvalidInputError
from modelport.serving import mlflow, v1, v2

COLUMNS = ["a", "b", "c"]
ROWS = [[0.5, -1.25, 3.0], [1e-3, 2.0, 7]]  # an int among the floats, as JSON clients send


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    from sklearn.linear_model import LogisticRegression

    import modelport

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=COLUMNS)
    y = (x["a"] > 0).astype(int)
    path = modelport.save(LogisticRegression().fit(x, y),
                          tmp_path_factory.mktemp("fast") / "m", example=x.head(20))
    return load_bundle(path, lazy=True)


def _by_name(model: Model) -> Batch:
    return model.signature.coerce({c: [r[j] for r in ROWS] for j, c in enumerate(COLUMNS)})


def _same(a: Batch, b: Batch) -> None:
    assert a.names == b.names and a.n_rows == b.n_rows
    for name in a.names:
        x, y = a.column(name), b.column(name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_a_float_matrix_is_taken_whole(model: Model) -> None:
    matrix = np.array(ROWS, dtype=np.float64)
    _same(model.signature.coerce(matrix), _by_name(model))
    _same(model.signature.coerce(matrix.astype(np.float32)), model.signature.coerce(
        {c: matrix.astype(np.float32)[:, j] for j, c in enumerate(COLUMNS)}))


def test_missing_values_in_a_matrix_are_refused_like_records(model: Model) -> None:
    matrix = np.array(ROWS, dtype=np.float64)
    matrix[1, 2] = np.nan
    with pytest.raises(InvalidInputError, match="'c'"):
        model.signature.coerce(matrix)


def test_rows_of_plain_numbers_only(model: Model) -> None:
    assert model.signature.rows_matrix(ROWS) is not None
    assert model.signature.rows_matrix([[1.0, True, 2.0]]) is None  # a boolean is no number
    assert model.signature.rows_matrix([[1.0, "2", 3.0]]) is None
    assert model.signature.rows_matrix([[1.0, 2.0]]) is None


def test_v2_named_tensors(model: Model) -> None:
    body = orjson.dumps({"inputs": [  # in another order than the signature's
        {"name": c, "shape": [2], "datatype": "FP64", "data": [r[COLUMNS.index(c)] for r in ROWS]}
        for c in reversed(COLUMNS)]})
    _same(v2.decode(body, None, model).batch, _by_name(model))
    column = {"name": "a", "shape": [2, 1], "datatype": "FP64", "data": [[0.5], [1e-3]]}
    nested = orjson.dumps({"inputs": [column, *orjson.loads(body)["inputs"][:2]]})
    _same(v2.decode(nested, None, model).batch, _by_name(model))  # general path, same batch


def test_v2_named_fp32_tensors_round_like_the_general_path(model: Model) -> None:
    inputs = [{"name": c, "shape": [2], "datatype": "FP32", "data": [r[j] for r in ROWS]}
              for j, c in enumerate(COLUMNS)]
    fast = v2.decode(orjson.dumps({"inputs": inputs}), None, model).batch
    expected = model.signature.coerce(
        {c: np.asarray([r[j] for r in ROWS], dtype=np.float32) for j, c in enumerate(COLUMNS)})
    _same(fast, expected)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update(data=[1.0]), "shape \\[2\\] needs 2 values"),
    # an unknown tensor is an extra column: ignored by default, so the renamed one is missing
    (lambda t: t.update(name="zz"), "missing column 'b'"),
    (lambda t: t.update(datatype="FP99"), "unknown datatype"),
])
def test_v2_named_tensors_the_fast_path_refuses_get_precise_errors(
        model: Model, change: object, message: str) -> None:
    inputs = [{"name": c, "shape": [2], "datatype": "FP64", "data": [r[j] for r in ROWS]}
              for j, c in enumerate(COLUMNS)]
    change(inputs[1])  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match=message):
        v2.decode(orjson.dumps({"inputs": inputs}), None, model)


def test_v2_one_tensor_json_and_binary(model: Model) -> None:
    flat = [v for r in ROWS for v in r]
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                                     "data": flat}]})
    _same(v2.decode(body, None, model).batch, _by_name(model))
    head = orjson.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 48}}]})
    raw = head + np.array(flat, dtype="<f8").tobytes()
    _same(v2.decode(raw, len(head), model).batch, _by_name(model))


def test_v1_instances_and_mlflow_split(model: Model) -> None:
    _same(v1.decode(orjson.dumps({"instances": ROWS}), model), _by_name(model))
    split = {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}
    _same(mlflow.decode(orjson.dumps(split), "application/json", model), _by_name(model))
    shuffled = {"dataframe_split": {"columns": ["c", "a", "b"],
                                    "data": [[r[2], r[0], r[1]] for r in ROWS]}}
    _same(mlflow.decode(orjson.dumps(shuffled), "application/json", model), _by_name(model))
