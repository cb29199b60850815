"""``PredictionSchema``: the one shape of a prediction on every surface.

Every output modelport writes — ``modelport predict`` files, batch Parquet / CSV / SQL / Redis,
stream messages and tables, the REST simple route, the Spark UDF, the Python API and the
prediction log — is built here, from the model's :class:`~modelport.bundle.signature.Signature`
and a :class:`~modelport.core.batch.Result`, so names and types cannot drift apart.

Tabular form (Arrow / Parquet / CSV / SQL / DataFrames), in this order:

1. the caller's key / passthrough columns, in the order given;
2. ``prediction_id`` (string);
3. ``prediction``: the class label (in the model's class dtype) or the value (in the native
   model's dtype);
4. ``probability_<class>`` (float64), one per class, for classifiers with probabilities;
5. every further named output, one column each (multi-element outputs as list columns, JSON text
   where lists cannot be stored: CSV and SQL);
6. ``model`` (string), ``version`` (int64), ``predicted_at`` (timestamp, UTC, microseconds).

Record form (JSON: REST, stream messages, Redis values)::

    {"prediction_id": "...", "prediction": "yes", "probabilities": {"no": 0.2, "yes": 0.8},
     <extra outputs>, "model": "churn", "version": 3, "predicted_at": "2026-12-04T17:03:11.123456Z"}

>>> from modelport.bundle.signature import Signature
>>> sig = Signature.from_dict({"inputs": [{"name": "x", "dtype": "float64"}],
...     "task": "classification", "classes": [0, 1],
...     "outputs": [{"name": "label", "dtype": "int64"},
...                 {"name": "probabilities", "dtype": "float64", "shape": [2]}]})
>>> PredictionSchema.of(sig, keys=["customer"]).names  # doctest: +NORMALIZE_WHITESPACE
['customer', 'prediction_id', 'prediction', 'probability_0', 'probability_1',
 'model', 'version', 'predicted_at']
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from modelport.core.batch import Array, Result

if TYPE_CHECKING:
    from modelport.bundle.signature import ColumnSpec, Signature

#: the columns after the predictions, in this order
META_COLUMNS = ("model", "version", "predicted_at")
#: columns that name the prediction itself; key / passthrough columns may not reuse them
ID_COLUMN = "prediction_id"
PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
#: Arrow types of the fixed columns
PREDICTED_AT_TYPE = pa.timestamp("us", "UTC")

_ARROW = {"string": pa.string(), "bool": pa.bool_(), "float64": pa.float64(),
          "float32": pa.float32(), "int64": pa.int64(), "int32": pa.int32(),
          "int16": pa.int16(), "int8": pa.int8(), "uint8": pa.uint8(), "uint16": pa.uint16(),
          "uint32": pa.uint32(), "uint64": pa.uint64()}


def arrow_type(dtype: str, shape: tuple[int, ...] = ()) -> pa.DataType:
    """The Arrow type of one output value of ``dtype`` (a list type for multi-element values)."""
    scalar = _ARROW.get(dtype, pa.float64())
    return pa.list_(scalar) if shape else scalar


def timestamp_text(moment: datetime) -> str:
    """``2026-12-04T17:03:11.123456Z``: UTC, always with microseconds."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is C code, strftime parses its format every call: "…+00:00" → "…Z"
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def row_ids(base: str, n: int, *, start: int = 0, single: bool = False) -> list[str]:
    """``base`` for a single prediction, else ``base-<row>`` for rows ``start`` … ``start+n-1``."""
    if single:
        return [base]
    return [f"{base}-{i}" for i in range(start, start + n)]


@dataclass(frozen=True)
class PredictionSchema:
    """The output columns of one model: build it with :meth:`of`, then make tables or records.

    ``prediction`` is the dtype of the primary output, ``classes`` the class names of the
    probability columns (``None`` when the model gives none), ``extras`` the further named
    outputs and ``keys`` the caller's key / passthrough columns.
    """

    prediction: str
    primary: str | None
    classes: tuple[str, ...] | None
    extras: tuple[ColumnSpec, ...]
    keys: tuple[str, ...] = ()
    #: per-row shape of the primary output (``()``: one value per row)
    prediction_shape: tuple[int, ...] = ()

    @classmethod
    def of(cls, signature: Signature, keys: Sequence[str] = ()) -> PredictionSchema:
        """The schema of ``signature``'s outputs; ``primary`` names the output that becomes
        ``prediction`` (``label`` for classifiers, ``prediction`` for regressors, else the
        first declared output)."""
        outputs = list(signature.outputs)
        primary = next((o for o in outputs if o.name in ("label", "prediction")
                        and not o.shape), None)
        if primary is None and signature.task != "classification" and outputs:
            primary = outputs[0]
        has_proba = any(o.name == "probabilities" for o in outputs)
        classes = (tuple(_name(c) for c in signature.classes)
                   if signature.task == "classification" and signature.classes is not None
                   and has_proba else None)
        skip = {primary.name if primary is not None else "", "probabilities", "label"}
        extras = tuple(o for o in outputs if o.name not in skip)
        label_dtype = primary.dtype if primary is not None else "float64"
        schema = cls(label_dtype, primary.name if primary is not None else None, classes,
                     extras, tuple(keys), primary.shape if primary is not None else ())
        clash = [k for k in keys if k in schema.prediction_names]
        if clash:
            from modelport.errors import ConfigurationError

            raise ConfigurationError(
                f"key column {clash[0]!r} has the name of an output column; output rows already "
                f"carry {', '.join(schema.prediction_names)}")
        return schema

    # ------------------------------------------------------------------ names and types
    @property
    def probability_names(self) -> list[str]:
        return [PROBABILITY_PREFIX + c for c in self.classes or ()]

    @property
    def prediction_names(self) -> list[str]:
        """Every column the schema itself adds (all but the keys)."""
        return [ID_COLUMN, PREDICTION, *self.probability_names,
                *(e.name for e in self.extras), *META_COLUMNS]

    @property
    def names(self) -> list[str]:
        return [*self.keys, *self.prediction_names]

    def arrow_schema(self, key_types: Mapping[str, pa.DataType] | None = None) -> pa.Schema:
        """The tabular form's Arrow schema (key columns typed by ``key_types``, else string)."""
        fields = [pa.field(k, (key_types or {}).get(k, pa.string())) for k in self.keys]
        fields += [pa.field(ID_COLUMN, pa.string()),
                   pa.field(PREDICTION, arrow_type(self.prediction, self.prediction_shape))]
        fields += [pa.field(n, pa.float64()) for n in self.probability_names]
        fields += [pa.field(e.name, arrow_type(e.dtype, e.shape)) for e in self.extras]
        fields += [pa.field("model", pa.string()), pa.field("version", pa.int64()),
                   pa.field("predicted_at", PREDICTED_AT_TYPE)]
        return pa.schema(fields)

    # ------------------------------------------------------------------ tabular form
    def table(self, result: Result, *, ids: Sequence[str] | pa.Array, model: str,
              version: int | None, predicted_at: datetime,
              keys: Mapping[str, Any] | None = None) -> pa.Table:
        """The tabular form of ``result`` (``keys``: the key columns' values, Arrow or lists)."""
        n = result.n_rows
        columns: dict[str, pa.Array] = {}
        for name in self.keys:
            values = (keys or {})[name]
            columns[name] = values if isinstance(values, pa.Array | pa.ChunkedArray) \
                else pa.array(values)
        columns[ID_COLUMN] = ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
        columns[PREDICTION] = self._primary_column(result)
        if self.classes is not None:
            proba = result.probabilities
            for j, name in enumerate(self.probability_names):
                if proba is None:
                    columns[name] = pa.nulls(n, pa.float64())
                else:
                    columns[name] = _array(np.ascontiguousarray(proba[:, j], dtype=np.float64))
        for spec in self.extras:
            values = result.outputs.get(spec.name)
            kind = arrow_type(spec.dtype, spec.shape)
            columns[spec.name] = pa.nulls(n, kind) if values is None else \
                _output_column(values, kind)
        columns["model"] = _constant(model, pa.string(), n)
        columns["version"] = _constant(version, pa.int64(), n)
        columns["predicted_at"] = _constant(predicted_at.astimezone(UTC), PREDICTED_AT_TYPE, n)
        return pa.table(columns)

    def _primary_column(self, result: Result) -> pa.Array:
        kind = arrow_type(self.prediction, self.prediction_shape)
        values = self.primary_values(result)
        if values is None:
            return pa.nulls(result.n_rows, kind)
        return _output_column(values, kind)

    def primary_values(self, result: Result) -> Array | None:
        """The values of ``prediction`` in ``result``."""
        if result.labels is not None:
            return result.labels
        if self.primary is not None and self.primary in result.outputs:
            return result.outputs[self.primary]
        return None

    # ------------------------------------------------------------------ record form
    def records(self, result: Result, *, ids: Sequence[str], model: str | None = None,
                version: int | None = None, predicted_at: datetime | None = None,
                keys: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per row; ``model`` / ``version`` are left out when ``model`` is
        ``None`` (a list answer carries them once), ``predicted_at`` likewise."""
        n = result.n_rows
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        if keys is not None:
            for row, given in zip(rows, keys, strict=True):
                for name in self.keys:
                    row[name] = _plain(given.get(name))
        primary = self.primary_values(result)
        primary_list = primary.tolist() if primary is not None else [None] * n
        for row, pid, value in zip(rows, ids, primary_list, strict=True):
            row[ID_COLUMN] = pid
            row[PREDICTION] = value
        if self.classes is not None and result.probabilities is not None:
            names = self.classes
            probs = np.asarray(result.probabilities, dtype=np.float64).tolist()
            for row, p in zip(rows, probs, strict=True):
                row["probabilities"] = dict(zip(names, p, strict=True))
        for spec in self.extras:
            values = result.outputs.get(spec.name)
            listed = values.tolist() if values is not None else [None] * n
            for row, value in zip(rows, listed, strict=True):
                row[spec.name] = value
        if model is not None:
            for row in rows:
                row["model"] = model
                row["version"] = version
        if predicted_at is not None:
            stamp = timestamp_text(predicted_at)
            for row in rows:
                row["predicted_at"] = stamp
        return rows


def lists_as_json(table: pa.Table) -> pa.Table:
    """``table`` with every list column written as JSON text (for CSV files and SQL tables)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type) or \
                pa.types.is_fixed_size_list(field.type):
            texts = [None if v is None else json.dumps(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()),
                                     pa.array(texts, pa.string()))
    return table


def conform(result: Result, signature: Signature) -> Result:
    """``result`` with its outputs in the dtypes ``signature`` records for the native model
    (what an accelerated predictor calls so that its answers have the native types)."""
    specs: dict[str, ColumnSpec] = {o.name: o for o in signature.outputs}
    label = specs.get("label") or specs.get("prediction")
    labels = result.labels
    if labels is not None and label is not None:
        labels = _cast(labels, label.dtype)
    proba = result.probabilities
    if proba is not None and "probabilities" in specs:
        proba = _cast(proba, specs["probabilities"].dtype)
    outputs = {k: (_cast(v, specs[k].dtype) if k in specs else v)
               for k, v in result.outputs.items()}
    return Result(result.n_rows, labels=labels, probabilities=proba, classes=result.classes,
                  outputs=outputs)


# -------------------------------------------------------------------- helpers
def _cast(values: Array, dtype: str) -> Array:
    if dtype == "string":
        if values.dtype == object:
            return values
        return np.asarray([str(v) for v in values.tolist()], dtype=object).reshape(values.shape)
    target = np.dtype(dtype)
    if values.dtype == target:
        return values
    if values.dtype == object or values.dtype.kind not in "biuf":
        return values
    return values.astype(target)


def _name(value: Any) -> str:
    return str(value.item() if isinstance(value, np.generic) else value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _array(values: Array) -> pa.Array:
    if values.ndim == 1 and values.dtype.kind in "iuf" and values.dtype.isnative:
        values = np.ascontiguousarray(values)
        return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                     [None, pa.py_buffer(values)])
    return pa.array(values)


def _output_column(values: Array, kind: pa.DataType) -> pa.Array:
    """``values`` (one per row; rows of several elements flattened into lists) as ``kind``."""
    if pa.types.is_list(kind):
        if values.dtype == object:
            return pa.array([None if v is None else np.asarray(v).reshape(-1).tolist()
                             for v in values], kind)
        width = int(np.prod(values.shape[1:])) if values.ndim > 1 else 1
        flat = np.ascontiguousarray(values).reshape(-1)
        inner = pa.array(flat).cast(kind.value_type) if flat.dtype.kind != "O" \
            else pa.array(flat.tolist(), kind.value_type)
        offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32) * width, pa.int32())
        return pa.ListArray.from_arrays(offsets, inner).cast(kind)
    if values.ndim > 1:  # a declared scalar that came with more elements: keep them, as lists
        return pa.array(values.reshape(len(values), -1).tolist())
    if values.dtype == object:
        if pa.types.is_string(kind):
            return pa.array([None if v is None else str(v) for v in values.tolist()], kind)
        return pa.array(values.tolist())
    arr = _array(values)
    if arr.type != kind and pa.types.is_string(kind):
        return pa.array([str(v) for v in values.tolist()], kind)
    return arr


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _constant(value: Any, kind: pa.DataType, n: int) -> pa.Array:
    """``n`` copies of ``value`` built from buffers (pyarrow's scalar path imports pandas)."""
    if value is None:
        return pa.nulls(n, kind)
    if pa.types.is_string(kind) and isinstance(value, str):
        data = value.encode()
        if (n + 1) * len(data) < 2**31:
            offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
            return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))
    elif kind == pa.int64() and isinstance(value, int) and -2**63 <= value < 2**63:
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(np.full(n, value, np.int64))])
    elif kind == PREDICTED_AT_TYPE and isinstance(value, datetime) and value.tzinfo:
        micros = (value - _EPOCH) // _MICRO
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(np.full(n, micros, np.int64))])
    return pa.repeat(pa.scalar(value, kind), n)


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


__all__ = ["META_COLUMNS", "PredictionSchema", "arrow_type", "conform", "lists_as_json",
           "row_ids", "timestamp_text"]
