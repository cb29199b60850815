"""``ChunkScorer``: one chunk of input rows in, the output table and the rejected rows out.

The scorer is the batch adapter's translation step: Arrow → the signature's ``Batch`` → the
inference core → the tabular form of :mod:`modelport.core.schema`. One bad cell rejects only its
row: text cells (CSV) are parsed column by column and a cell that is not a value of the column's
type rejects its row, naming the row, the column and the value; rows the signature's own coercion
refuses are found by bisection (so batch and real-time reject exactly the same rows). Every
other row is scored in one vectorized call. Row ``i`` of the input (0-based, over the whole run)
gets the prediction id ``<run_id>-<i>``, the same on every resume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelport.bundle.signature import ColumnSpec, Signature
from modelport.core.arrow import numpy_view
from modelport.core.batch import Batch, Result
from modelport.core.schema import PredictionSchema
from modelport.errors import ConfigurationError, InvalidInputError


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


@dataclass(frozen=True)
class Reject:
    """One rejected row: its position in the chunk, why, and the offending column and value."""

    position: int
    reason: str
    column: str | None = None
    value: str | None = None


class ChunkScorer:
    """Scores chunks for one run; ``predict`` is the core's call (a runner's or a model's).

    ``keep`` names the input columns copied into the output first; ``parse_text`` makes text
    cells in columns the model takes as numbers or booleans (a CSV input) values of their type.
    """

    def __init__(self, signature: Signature, predict: Callable[[Batch], Result], meta: RunMeta,
                 *, keep: Sequence[str] = (), chunk_rows: int = 65536,
                 parse_text: bool = False) -> None:
        self.signature = signature
        self.predict = predict
        self.meta = meta
        self.keep = list(keep)
        self.chunk_rows = chunk_rows
        self.parse_text = parse_text
        self.schema = PredictionSchema.of(signature, keys=self.keep)

    def check_schema(self, schema: pa.Schema) -> None:
        check_schema(self.signature, self.keep, schema)

    def score(self, index: int, rows: pa.RecordBatch) -> ScoredChunk:
        inputs = rows.select(self.signature.input_names)
        bad: list[Reject] = []
        if self.parse_text:
            inputs, bad = parse_text_cells(inputs, self.signature)
        candidates = None
        if bad:
            rejected = {r.position for r in bad}
            candidates = np.array([i for i in range(rows.num_rows) if i not in rejected],
                                  dtype=np.int64)
            inputs = inputs.take(pa.array(candidates))
        good: np.ndarray[Any, Any] | None
        batch: Batch | None
        try:
            batch = self._coerce(inputs) if inputs.num_rows else None
            good = candidates
        except InvalidInputError:
            good_ranges: list[tuple[int, int]] = []
            refused: list[Reject] = []
            self._bisect(inputs, 0, inputs.num_rows, good_ranges, refused)
            local = np.concatenate([np.arange(a, b) for a, b in good_ranges]) if good_ranges \
                else np.zeros(0, dtype=np.int64)
            to_chunk = candidates if candidates is not None else np.arange(rows.num_rows)
            bad += [Reject(int(to_chunk[r.position]), r.reason, r.column, r.value)
                    for r in refused]
            good = to_chunk[local]
            batch = self._coerce(inputs.take(pa.array(local))) if len(local) else None
        positions = np.arange(rows.num_rows) if good is None else good
        #: the chunk and rows ``predict`` is called for (their ids: ``row_ids(*positions)``)
        self.positions = (index, positions)
        result = self.predict(batch) if batch is not None else None
        kept = rows if good is None else rows.take(pa.array(good, pa.int64()))
        output = self._output(index, kept, positions, result)
        bad.sort(key=lambda r: r.position)
        return ScoredChunk(index, output, self._rejects(index, rows, bad), rows.num_rows)

    def _coerce(self, inputs: pa.RecordBatch) -> Batch:
        """The signature's own coercion of ``inputs`` (the model's columns, in order).

        Null-free numeric columns are handed over as zero-copy NumPy views — exactly the arrays
        the signature's Arrow path would make of them, but without pyarrow's general conversion,
        which imports pandas (about half a second, more than scoring a million rows of a linear
        model). Any other column takes the Arrow path unchanged.
        """
        columns = _numpy_views(inputs, self.signature)
        return self.signature.coerce(inputs if columns is None else columns, extra="refuse")

    def _bisect(self, inputs: pa.RecordBatch, start: int, stop: int,
                good: list[tuple[int, int]], bad: list[Reject]) -> None:
        try:
            self._coerce(inputs.slice(start, stop - start))
        except InvalidInputError as exc:
            if stop - start == 1:
                value = None
                if exc.field is not None and exc.field in inputs.schema.names:
                    value = _text(inputs.column(exc.field)[start].as_py())
                bad.append(Reject(start, str(exc), exc.field, value))
                return
            mid = (start + stop) // 2
            self._bisect(inputs, start, mid, good, bad)
            self._bisect(inputs, mid, stop, good, bad)
            return
        good.append((start, stop))

    def output_names(self) -> list[str]:
        return self.schema.names

    def row_ids(self, index: int, positions: np.ndarray[Any, Any]) -> pa.Array:
        """``<run_id>-<row>`` for the chunk's rows at ``positions``."""
        base = index * self.chunk_rows
        prefix = f"{self.meta.run_id}-"
        return pa.array([prefix + str(base + int(p)) for p in positions.tolist()], pa.string())

    def _output(self, index: int, kept: pa.RecordBatch, positions: np.ndarray[Any, Any],
                result: Result | None) -> pa.Table:
        if result is None:  # every row rejected: an empty table of the right shape
            types = {name: kept.schema.field(name).type for name in self.keep}
            return self.schema.arrow_schema(types).empty_table()
        meta = self.meta
        return self.schema.table(
            result, ids=self.row_ids(index, positions), model=meta.model_name,
            version=meta.model_version, predicted_at=meta.scored_at,
            keys={name: kept.column(name) for name in self.keep})

    def _rejects(self, index: int, rows: pa.RecordBatch, bad: list[Reject]
                 ) -> pa.Table | None:
        if not bad:
            return None
        positions = pa.array([r.position for r in bad], pa.int64())
        taken = rows.take(positions)
        records = [json.dumps(r, default=str, sort_keys=True) for r in
                   taken.select(self.signature.input_names).to_pylist()]
        base = index * self.chunk_rows
        columns: dict[str, Any] = {
            "row": pa.array([base + r.position for r in bad], pa.int64())}
        for name in self.keep:
            columns[name] = taken.column(name)
        columns["column"] = pa.array([r.column for r in bad], pa.string())
        columns["value"] = pa.array([r.value for r in bad], pa.string())
        columns["reason"] = pa.array([f"row {base + r.position}: {r.reason}" for r in bad],
                                     pa.string())
        columns["record"] = pa.array(records, pa.string())
        columns["run_id"] = pa.repeat(pa.scalar(self.meta.run_id, pa.string()), len(bad))
        return pa.table(columns)


# -------------------------------------------------------------------- text cells
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def parse_text_cells(inputs: pa.RecordBatch, signature: Signature
                     ) -> tuple[pa.RecordBatch, list[Reject]]:
    """Text columns the model takes as numbers or booleans, as values of their type.

    A whole column is converted in one cast when every cell is valid; otherwise cell by cell,
    and each cell that is not a value of the type rejects its row (empty cells are missing
    values, which the signature then accepts or refuses).
    """
    specs = {s.name: s for s in signature.inputs}
    bad: dict[int, Reject] = {}
    arrays = []
    for name, column in zip(inputs.schema.names, inputs.columns, strict=True):
        spec = specs.get(name)
        if spec is None or spec.shape or spec.dtype == "string" or \
                not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            arrays.append(column)
            continue
        parsed, cells = _parse_column(spec, column)
        for position, value in cells:
            bad.setdefault(position, Reject(
                position, f"column {name!r}: {value!r} is not {_kind(spec)}", name, value))
        arrays.append(parsed)
    table = pa.RecordBatch.from_arrays(arrays, names=inputs.schema.names)
    return table, sorted(bad.values(), key=lambda r: r.position)


def _parse_column(spec: ColumnSpec, column: pa.Array) -> tuple[pa.Array, list[tuple[int, str]]]:
    target = pa.bool_() if spec.dtype == "bool" else pa.from_numpy_dtype(np.dtype(spec.dtype))
    stripped = pc.utf8_trim_whitespace(column)
    blank = pc.equal(stripped, "")
    stripped = pc.if_else(blank, pa.scalar(None, pa.string()), stripped)
    try:
        return pc.cast(stripped, target), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[Any] = []
    bad: list[tuple[int, str]] = []
    for position, text in enumerate(stripped.to_pylist()):
        if text is None:
            values.append(None)
            continue
        value = _parse_cell(spec.dtype, text)
        if value is None:
            bad.append((position, text))
        values.append(value)
    return pa.array(values, target), bad


def _parse_cell(dtype: str, text: str) -> Any:
    if dtype == "bool":
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else None
    try:
        number = float(text)
    except ValueError:
        return None
    if dtype.startswith("float"):
        return number
    if not math.isfinite(number) or number != int(number):
        return None
    info = np.iinfo(np.dtype(dtype))
    whole = int(text) if text.lstrip("+-").isdigit() else int(number)
    return whole if info.min <= whole <= info.max else None


def _kind(spec: ColumnSpec) -> str:
    if spec.dtype == "bool":
        return "a boolean (true/false)"
    if spec.dtype.startswith("float"):
        return f"a number ({spec.dtype})"
    return f"a whole number ({spec.dtype})"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


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
    if keep:
        try:
            PredictionSchema.of(signature, keys=keep)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"--keep: {exc}; rename the column in the input") from None


# pyarrow (26) imports pandas the first time it converts to or from NumPy — half a second of a
# run that scores a million rows in one; numbers move through their buffers instead.
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
