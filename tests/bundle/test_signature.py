"""Signature inference and strict coercion: clear errors naming the field, nothing lossy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelport.bundle.signature import ColumnSpec, Signature
from modelport.errors import InvalidInputError

TABLE = Signature(
    inputs=(ColumnSpec("age", "int64"), ColumnSpec("income", "float64"),
            ColumnSpec("city", "string")),
)
FLOATS = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float64", nullable=True)))
TENSOR = Signature(inputs=(ColumnSpec("image", "float32", (2, 3)),), kind="tensor")


def test_infer_from_dataframe_keeps_names_dtypes_and_nullability() -> None:
    frame = pd.DataFrame({"age": [1, 2], "income": [1.5, np.nan], "city": ["a", "b"],
                          "flag": [True, False]})
    sig = Signature.infer(frame)
    assert [(c.name, c.dtype, c.nullable) for c in sig.inputs] == [
        ("age", "int64", False), ("income", "float64", True), ("city", "string", False),
        ("flag", "bool", False)]
    assert sig.kind == "columns"


def test_infer_from_array_gives_a_tensor_signature() -> None:
    sig = Signature.infer(np.zeros((5, 4), dtype=np.float32))
    assert sig.kind == "tensor"
    assert sig.inputs == (ColumnSpec("input", "float32", (4,)),)


def test_infer_from_records_and_arrow_agree() -> None:
    records = [{"x": 1.0, "y": "u"}, {"x": 2.0, "y": "v"}]
    assert Signature.infer(records).inputs == Signature.infer(pa.Table.from_pylist(records)).inputs


def test_round_trip_through_dict() -> None:
    sig = TABLE.with_outputs([ColumnSpec("label", "int64")], "classification", (0, 1))
    assert Signature.from_dict(sig.to_dict()) == sig


@pytest.mark.parametrize("data", [
    [{"age": 30, "income": 10.0, "city": "x"}, {"age": 40, "income": 20, "city": "y"}],
    {"age": [30, 40], "income": [10.0, 20.0], "city": ["x", "y"]},
    pd.DataFrame({"age": [30, 40], "income": [10.0, 20.0], "city": ["x", "y"]}),
    pa.table({"age": [30, 40], "income": [10.0, 20.0], "city": ["x", "y"]}),
])
def test_every_input_form_coerces_to_the_same_batch(data: object) -> None:
    batch = TABLE.coerce(data)
    assert batch.n_rows == 2
    assert batch.column("age").dtype == np.int64
    assert batch.column("income").tolist() == [10.0, 20.0]
    assert batch.column("city").tolist() == ["x", "y"]


def test_column_order_of_the_input_does_not_matter() -> None:
    batch = TABLE.coerce([{"city": "x", "income": 1.0, "age": 3}])
    assert list(batch.names) == ["age", "income", "city"]
    assert batch.column("age").tolist() == [3]


@pytest.mark.parametrize(("data", "field", "fragment"), [
    ([{"age": 1, "income": 1.0}], "city", "missing column 'city'"),
    ([{"age": 1.5, "income": 1.0, "city": "x"}], "age", "expected int64, got a fractional"),
    ([{"age": "1", "income": 1.0, "city": "x"}], "age", "expected int64, got a string"),
    ([{"age": True, "income": 1.0, "city": "x"}], "age", "got a boolean"),
    ([{"age": 1, "income": "high", "city": "x"}], "income", "expected float64, got a string"),
    ([{"age": 1, "income": None, "city": "x"}], "income", "missing value"),
    ([{"age": 1, "income": 2.0, "city": 7}], "city", "expected string, got int"),
    ({"age": [1, 2], "income": [1.0], "city": ["a", "b"]}, "income", "has 1 values"),
    ([{"age": 2**40, "income": 1.0, "city": "x"}], None, None),
])
def test_bad_input_names_the_field(data: object, field: str | None, fragment: str | None
                                   ) -> None:
    if field is None:  # a large but valid int64 passes
        assert TABLE.coerce(data).column("age").tolist() == [2**40]
        return
    with pytest.raises(InvalidInputError) as info:
        TABLE.coerce(data)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_int_overflow_for_narrow_dtypes_is_refused() -> None:
    sig = Signature(inputs=(ColumnSpec("n", "int8"),))
    with pytest.raises(InvalidInputError, match="out of range for int8"):
        sig.coerce({"n": [1, 300]})


def test_nullable_float_accepts_none_as_nan_only_where_declared() -> None:
    batch = FLOATS.coerce([{"a": 1.0, "b": None}])
    assert np.isnan(batch.column("b")[0])
    with pytest.raises(InvalidInputError, match="'a': missing value"):
        FLOATS.coerce([{"a": None, "b": 1.0}])
    with pytest.raises(InvalidInputError, match="'a': missing value"):
        FLOATS.coerce({"a": np.array([np.nan]), "b": np.array([1.0])})


def test_float_tables_take_the_matrix_fast_path() -> None:
    batch = FLOATS.coerce([{"a": 1, "b": 2.5}, {"b": 0.5, "a": 3.0}])
    assert batch.is_matrix
    assert batch.to_matrix().tolist() == [[1.0, 2.5], [3.0, 0.5]]


def test_array_for_a_column_signature_is_read_in_signature_order_and_width_checked() -> None:
    batch = FLOATS.coerce(np.array([[1.0, 2.0]]))
    assert batch.column("b").tolist() == [2.0]
    with pytest.raises(InvalidInputError, match="rows of 2 values"):
        FLOATS.coerce(np.array([[1.0, 2.0, 3.0]]))


def test_tensor_shapes_are_enforced() -> None:
    good = np.ones((4, 2, 3), dtype=np.float64)
    batch = TENSOR.coerce(good)
    assert batch.column("image").shape == (4, 2, 3)
    assert batch.column("image").dtype == np.float32
    assert TENSOR.coerce({"image": good[0].tolist()}).n_rows == 1  # one record
    with pytest.raises(InvalidInputError, match=r"expected shape \[n, 2, 3\], got \[4, 3, 2\]"):
        TENSOR.coerce(np.ones((4, 3, 2)))
    with pytest.raises(InvalidInputError, match="different shapes"):
        TENSOR.coerce({"image": [[[1, 2, 3], [1, 2]]]})


def test_empty_input_is_an_error_not_an_empty_prediction() -> None:
    with pytest.raises(InvalidInputError, match="no rows"):
        TABLE.coerce([])


def test_unknown_dtype_in_a_signature_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unsupported dtype 'complex64'"):
        Signature.from_dict({"inputs": [{"name": "z", "dtype": "complex64"}]})


def test_unreadable_object_gives_guidance() -> None:
    with pytest.raises(InvalidInputError, match="send records"):
        TABLE.coerce(object())
