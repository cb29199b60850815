"""``ChunkScorer``: one chunk of input rows in, the output table and the rejected rows out.

The scorer is the batch adapter's translation step: Arrow → the signature's ``Batch`` → the
inference core → Arrow. Rows that do not fit the signature are found by bisection (the
signature's own coercion decides, so batch and real-time reject exactly the same rows) and
returned with the reason; every other row is scored in one vectorized call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from modelport.bundle.signature import Signature
from modelport.core.arrow import column_to_arrow, numpy_view
from modelport.core.batch import Batch, Result
from modelport.errors import ConfigurationError, InvalidInputError

#: columns every output row carries after the kept columns and the predictions
META_COLUMNS = ("model_name", "model_version", "run_id", "scored_at")


@dataclass(frozen=True)
class RunMeta:
    """What identifies one run in its output rows."""

    run_id: str
    model_name: str
    model_version: int | None
    scored_at: datetime


@dataclass
class ScoredChunk:
    index: int
    output: pa.Table
    rejects: pa.Table | None
    rows_in: int

    @property
    def rows_out(self) -> int:
        return int(self.output.num_rows)

    @property
    def rejected(self) -> int:
        return 0 if self.rejects is None else self.rejects.num_rows

    def first_reason(self) -> str | None:
        if self.rejects is None or not self.rejects.num_rows:
            return None
        return str(self.rejects.column("reason")[0].as_py())


class ChunkScorer:
    """Scores chunks for one run; ``predict`` is the core's call (a runner's or a model's)."""

    def __init__(self, signature: Signature, predict: Callable[[Batch], Result], meta: RunMeta,
                 *, keep: Sequence[str] = (), chunk_rows: int = 65536) -> None:
        self.signature = signature
        self.predict = predict
        self.meta = meta
        self.keep = list(keep)
        self.chunk_rows = chunk_rows

    def check_schema(self, schema: pa.Schema) -> None:
        check_schema(self.signature, self.keep, schema)

    def score(self, index: int, rows: pa.RecordBatch) -> ScoredChunk:
        inputs = rows.select(self.signature.input_names)
        bad: list[tuple[int, str]] = []
        batch: Batch | None
        try:
            batch = self._coerce(inputs)
            good = None
        except InvalidInputError:
            good_ranges: list[tuple[int, int]] = []
            self._bisect(inputs, 0, rows.num_rows, good_ranges, bad)
            good = np.concatenate([np.arange(a, b) for a, b in good_ranges]) if good_ranges \
                else np.zeros(0, dtype=np.int64)
            batch = self._coerce(inputs.take(pa.array(good))) if len(good) else None
        result = self.predict(batch) if batch is not None else None
        kept = rows if good is None else rows.take(pa.array(good))
        output = self._output(kept, result)
        return ScoredChunk(index, output, self._rejects(index, rows, bad), rows.num_rows)

    def _coerce(self, inputs: pa.RecordBatch) -> Batch:
        """The signature's own coercion of ``inputs`` (the model's columns, in order).

        Null-free numeric columns are handed over as zero-copy NumPy views — exactly the arrays
        the signature's Arrow path would make of them, but without pyarrow's general conversion,
        which imports pandas (about half a second, more than scoring a million rows of a linear
        model). Any other column takes the Arrow path unchanged.
        """
        columns = _numpy_views(inputs, self.signature)
        return self.signature.coerce(inputs if columns is None else columns, allow_extra=False)

    def _bisect(self, inputs: pa.RecordBatch, start: int, stop: int,
                good: list[tuple[int, int]], bad: list[tuple[int, str]]) -> None:
        try:
            self._coerce(inputs.slice(start, stop - start))
        except InvalidInputError as exc:
            if stop - start == 1:
                bad.append((start, str(exc)))
                return
            mid = (start + stop) // 2
            self._bisect(inputs, start, mid, good, bad)
            self._bisect(inputs, mid, stop, good, bad)
            return
        good.append((start, stop))

    def output_names(self) -> list[str]:
        return [*self.keep, "prediction"]

    def _output(self, kept: pa.RecordBatch, result: Result | None) -> pa.Table:
        n = kept.num_rows
        columns: dict[str, pa.Array] = {name: kept.column(name) for name in self.keep}
        classes = self.signature.classes
        if result is None:  # every row rejected: an empty table of the right shape
            result = Result(n_rows=0, labels=np.zeros(0, self._label_dtype()),
                            classes=list(classes or []),
                            probabilities=np.zeros((0, len(classes))) if classes else None)
        if result.labels is not None:
            labels = result.labels
            columns["prediction"] = _to_arrow(labels) if len(labels) or \
                labels.dtype != object else pa.array([], pa.string())
        if result.probabilities is not None:
            names = result.classes if result.classes is not None else list(classes or [])
            proba = result.probabilities
            for j, cls in enumerate(names):
                column = proba[:, j]
                columns[f"probability_{_plain(cls)}"] = \
                    _to_arrow(np.ascontiguousarray(column, dtype=np.float64)) \
                    if column.dtype.kind == "f" and column.dtype.itemsize >= 4 else \
                    pa.array(np.ascontiguousarray(column), pa.float64())
        for name, values in result.outputs.items():
            if name not in columns:
                columns[name] = _to_arrow(values)
        meta = self.meta
        columns["model_name"] = _constant(meta.model_name, pa.string(), n)
        columns["model_version"] = _constant(meta.model_version, pa.int64(), n)
        columns["run_id"] = _constant(meta.run_id, pa.string(), n)
        columns["scored_at"] = _constant(meta.scored_at, pa.timestamp("us", "UTC"), n)
        return pa.table(columns)

    def _label_dtype(self) -> np.dtype[Any]:
        for spec in self.signature.outputs:
            if spec.name in ("label", "prediction") and not spec.shape:
                return spec.numpy_dtype
        return np.dtype(np.float64)

    def _rejects(self, index: int, rows: pa.RecordBatch, bad: list[tuple[int, str]]
                 ) -> pa.Table | None:
        if not bad:
            return None
        positions = pa.array([i for i, _ in bad], pa.int64())
        taken = rows.take(positions)
        records = [json.dumps(r, default=str, sort_keys=True) for r in
                   taken.select(self.signature.input_names).to_pylist()]
        columns: dict[str, Any] = {
            "row": pa.array([index * self.chunk_rows + i for i, _ in bad], pa.int64())}
        for name in self.keep:
            columns[name] = taken.column(name)
        columns["reason"] = pa.array([reason for _, reason in bad], pa.string())
        columns["record"] = pa.array(records, pa.string())
        columns["run_id"] = pa.repeat(pa.scalar(self.meta.run_id, pa.string()), len(bad))
        return pa.table(columns)


def check_schema(signature: Signature, keep: Sequence[str], schema: pa.Schema) -> None:
    """Fail before any work when a needed column is absent: that is no row's fault."""
    names = set(schema.names)
    for name in signature.input_names:
        if name not in names:
            raise InvalidInputError(
                f"the input has no column {name!r}, which the model needs; it has "
                f"{schema.names[:20]}", field=name)
    for name in keep:
        if name not in names:
            raise ConfigurationError(
                f"--keep {name!r}: the input has no such column; it has {schema.names[:20]}")
        if name in META_COLUMNS or name == "prediction" or name.startswith("probability_"):
            raise ConfigurationError(
                f"--keep {name!r} clashes with an output column; rename it in the input")


# pyarrow (26) imports pandas the first time it converts to or from NumPy or makes a scalar —
# half a second of a run that scores a million rows in one. The helpers below move numbers
# through their buffers instead, value for value what pyarrow's conversions give, and fall back
# to those conversions for every other kind of column.

#: Arrow types laid out as NumPy arrays are (one fixed-width value per row)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _numpy_views(inputs: pa.RecordBatch, signature: Signature) -> dict[str, Any] | None:
    """Every column as a NumPy view when all are null-free integers or floats, else ``None``."""
    if signature.kind != "columns" or not signature.inputs or \
            any(spec.shape for spec in signature.inputs):
        return None
    columns: dict[str, Any] = {}
    for name, column in zip(inputs.schema.names, inputs.columns, strict=True):
        view = numpy_view(column)
        if view is None:
            return None
        columns[name] = view
    return columns


def _to_arrow(values: np.ndarray[Any, Any]) -> pa.Array:
    """``pa.array(values)`` — for a 1-D integer or float array, built on its buffer."""
    if values.ndim != 1 or values.dtype.kind not in "iuf" or not values.dtype.isnative:
        return column_to_arrow(values)
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])


def _constant(value: Any, kind: pa.DataType, n: int) -> pa.Array:
    """``n`` copies of ``value`` (``pa.repeat(pa.scalar(value, kind), n)``), from buffers."""
    if value is None:
        return pa.nulls(n, kind)
    if pa.types.is_string(kind) and isinstance(value, str):
        data = value.encode()
        if (n + 1) * len(data) < 2**31:
            offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
            return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))
    elif kind == pa.int64() and isinstance(value, int) and -2**63 <= value < 2**63:
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(np.full(n, value, np.int64))])
    elif kind == pa.timestamp("us", "UTC") and isinstance(value, datetime) and value.tzinfo:
        micros = (value - _EPOCH) // timedelta(microseconds=1)
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(np.full(n, micros, np.int64))])
    return pa.repeat(pa.scalar(value, kind), n)


def _plain(value: Any) -> str:
    return str(value.item() if isinstance(value, np.generic) else value)
