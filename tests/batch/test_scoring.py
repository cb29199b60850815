"""ChunkScorer: bad rows are found by the signature's own rules; good rows are scored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import modelport
from modelport.batch.scoring import ChunkScorer, RunMeta
from modelport.core.arrow import numpy_view
from modelport.core.schema import _array as _to_arrow
from modelport.core.schema import _constant
from modelport.errors import ConfigurationError, InvalidInputError

from .conftest import FEATURES, frame

META = RunMeta("run-1", "lr", 3, datetime(2026, 1, 1, tzinfo=UTC))


def scorer(bundle: Path, chunk_rows: int = 100) -> tuple[ChunkScorer, modelport.Model]:
    model = modelport.load(str(bundle))
    return ChunkScorer(model.signature, model.predict_batch, META, keep=["id"],
                       chunk_rows=chunk_rows), model


def test_scores_every_row_with_model_and_run_columns(classifier_bundle: Path) -> None:
    s, model = scorer(classifier_bundle)
    data = frame(50)
    out = s.score(0, pa.RecordBatch.from_pandas(data, preserve_index=False))
    assert out.rejects is None and out.rows_in == 50
    table = out.output
    assert table.column_names == ["id", "prediction_id", "prediction", "probability_0",
                                  "probability_1", "model", "version", "predicted_at"]
    np.testing.assert_array_equal(table["prediction"].to_numpy(), model.predict(data[FEATURES]))
    np.testing.assert_allclose(table["probability_1"].to_numpy(),
                               model.predict_proba(data[FEATURES])[:, 1])
    assert table["prediction_id"].to_pylist() == [f"run-1-{i}" for i in range(50)]
    assert set(table["version"].to_pylist()) == {3}
    assert table.schema.field("predicted_at").type == pa.timestamp("us", "UTC")


def test_rows_that_fail_the_signature_are_rejected_with_reason(classifier_bundle: Path) -> None:
    s, model = scorer(classifier_bundle, chunk_rows=64)
    data = frame(64)
    data["f2"] = data["f2"].astype(object)
    data.loc[[3, 40], "f2"] = None
    rows = pa.RecordBatch.from_pandas(data, preserve_index=False)
    out = s.score(2, rows)
    assert out.rejected == 2 and out.rows_out == 62
    assert out.rejects is not None
    assert out.rejects["row"].to_pylist() == [2 * 64 + 3, 2 * 64 + 40]
    assert out.rejects["id"].to_pylist() == [3, 40]
    assert "column 'f2'" in out.rejects["reason"][0].as_py()
    assert out.rejects["reason"][0].as_py().startswith(f"row {2 * 64 + 3}: ")
    assert out.rejects["column"].to_pylist() == ["f2", "f2"]
    good = data.drop(index=[3, 40])
    np.testing.assert_array_equal(out.output["id"].to_numpy(), good["id"].to_numpy())
    # ids follow the input row, not the output row
    assert out.output["prediction_id"].to_pylist()[3] == f"run-1-{2 * 64 + 4}"
    np.testing.assert_array_equal(out.output["prediction"].to_numpy(),
                                  model.predict(good[FEATURES].astype(float)))


def test_a_chunk_of_only_bad_rows_gives_an_empty_table_of_the_same_shape(
        classifier_bundle: Path) -> None:
    s, _ = scorer(classifier_bundle)
    good = s.score(0, pa.RecordBatch.from_pandas(frame(5), preserve_index=False)).output
    data = frame(3)
    data["f0"] = ["a", "b", "c"]
    out = s.score(1, pa.RecordBatch.from_pandas(data, preserve_index=False))
    assert out.rows_out == 0 and out.rejected == 3
    assert out.output.schema == good.schema


def test_missing_column_and_clashing_keep_fail_before_any_row(classifier_bundle: Path) -> None:
    s, _ = scorer(classifier_bundle)
    schema = pa.RecordBatch.from_pandas(frame(2).drop(columns=["f3"]),
                                        preserve_index=False).schema
    with pytest.raises(InvalidInputError, match="no column 'f3'"):
        s.check_schema(schema)
    model = modelport.load(str(classifier_bundle))
    with pytest.raises(ConfigurationError, match="name of an output column"):
        ChunkScorer(model.signature, model.predict_batch, META, keep=["model"])


@pytest.mark.parametrize(("value", "kind"), [
    ("lr", pa.string()), ("", pa.string()), ("modèle✓", pa.string()), (None, pa.string()),
    (3, pa.int64()), (-(2**63), pa.int64()), (None, pa.int64()),
    (datetime(2026, 1, 1, 12, 30, 1, 999999, tzinfo=UTC), pa.timestamp("us", "UTC")),
    (datetime(1960, 5, 5, 1, 2, 3, tzinfo=timezone(timedelta(hours=-3))),
     pa.timestamp("us", "UTC")),
])
@pytest.mark.parametrize("n", [0, 1, 7])
def test_run_columns_built_from_buffers_equal_repeated_scalars(value: object, kind: pa.DataType,
                                                               n: int) -> None:
    built = _constant(value, kind, n)
    built.validate(full=True)
    expected = pa.repeat(pa.scalar(value, kind), n)
    assert built.type == expected.type and built.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("values", [
    np.arange(5), np.arange(5, dtype=np.uint8), np.array([1.5, np.nan, -np.inf]),
    np.array([0.25, 2.0], dtype=np.float32), np.arange(10)[::3], np.zeros(0),
    np.array([True, False]), np.array(["a", None], dtype=object),
])
def test_output_columns_built_from_buffers_equal_pyarrow_conversion(values: np.ndarray) -> None:
    built = _to_arrow(values)
    built.validate(full=True)
    expected = pa.array(values.tolist() if values.dtype == object else values)
    assert built.type == expected.type
    assert str(built.to_pylist()) == str(expected.to_pylist())  # str: nan == nan


@pytest.mark.parametrize("column", [
    pa.array(np.arange(10.0)).slice(3, 4), pa.array(np.arange(10, dtype=np.int32)).slice(2),
    pa.array(np.arange(4, dtype=np.float32)),
])
def test_input_views_equal_to_numpy(column: pa.Array) -> None:
    view = numpy_view(column)
    expected = column.to_numpy(zero_copy_only=False)
    assert view is not None and view.dtype == expected.dtype
    np.testing.assert_array_equal(view, expected)


@pytest.mark.parametrize("column", [pa.array([1.0, None]), pa.array([True, False]),
                                    pa.array(["a", "b"])])
def test_columns_with_nulls_or_other_types_take_the_arrow_path(column: pa.Array) -> None:
    assert numpy_view(column) is None


def test_fast_and_arrow_coercion_give_the_same_batch(classifier_bundle: Path) -> None:
    s, model = scorer(classifier_bundle)
    data = frame(40)
    data["f1"] = np.arange(40, dtype=np.int64)  # integers into a float column
    rows = pa.RecordBatch.from_pandas(data, preserve_index=False).slice(5, 30)
    inputs = rows.select(model.signature.input_names)
    fast = s._coerce(inputs)
    arrow = model.signature.coerce(inputs, allow_extra=False)
    np.testing.assert_array_equal(fast.to_matrix(), arrow.to_matrix())
    assert fast.to_matrix().dtype == arrow.to_matrix().dtype


def test_one_bad_text_cell_rejects_only_its_row_naming_row_column_and_value(
        classifier_bundle: Path) -> None:
    """A CSV column with one 'abc': the other rows are scored, the reject quotes 'abc'."""
    model = modelport.load(str(classifier_bundle))
    s = ChunkScorer(model.signature, model.predict_batch, META, keep=["id"], chunk_rows=20,
                    parse_text=True)
    data = frame(20)
    text = {name: pa.array([repr(v) for v in data[name]], pa.string()) for name in FEATURES}
    cells = text["f1"].to_pylist()
    cells[17] = "abc"
    cells[5] = ""  # an empty cell is a missing value: the signature refuses it
    text["f1"] = pa.array(cells, pa.string())
    rows = pa.RecordBatch.from_pydict({"id": data["id"].tolist(), **text})
    out = s.score(1, rows)
    assert out.rejected == 2 and out.rows_out == 18
    assert out.rejects is not None
    assert out.rejects["row"].to_pylist() == [25, 37]
    assert out.rejects["column"].to_pylist() == ["f1", "f1"]
    assert out.rejects["value"].to_pylist() == [None, "abc"]
    reason = out.rejects["reason"][1].as_py()
    assert reason.startswith("row 37: column 'f1': 'abc' is not a number")
    assert repr(data["f1"][0]) not in reason  # the bad value is quoted, not row 0's
    good = data.drop(index=[5, 17])
    np.testing.assert_array_equal(out.output["prediction"].to_numpy(),
                                  model.predict(good[FEATURES]))
