"""Signatures: the typed inputs and outputs of a model, and strict coercion into a ``Batch``.

Two kinds of input exist:

* **columns** — named scalar columns (a table). Models trained on a DataFrame receive a
  DataFrame; models trained on a 2-D array receive the columns stacked in signature order.
* **tensor** — one or more named tensors with a fixed per-row shape (``(28, 28)`` images, a
  ``(30,)`` feature vector given as an array).

Coercion never reorders positionally by guess, never drops a column and never casts lossily:
a missing column, an unexpected column, a value of the wrong type or a tensor of the wrong shape
raises :class:`~modelport.errors.InvalidInputError` naming the field, what was expected and what
came.

>>> sig = Signature.from_dict({"inputs": [{"name": "age", "dtype": "int64"},
...                                       {"name": "income", "dtype": "float64"}]})
>>> batch = sig.coerce([{"age": 31, "income": 5200.0}])
>>> batch.n_rows, batch.column("income").dtype.name
(1, 'float64')
>>> sig.coerce([{"age": 31.5, "income": 1.0}])
Traceback (most recent call last):
...
modelport.errors.InvalidInputError: column 'age': expected int64, got a fractional number (31.5)
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from modelport.core.batch import Array, Batch
from modelport.errors import InvalidInputError

InputKind = Literal["columns", "tensor"]
#: what coercion does with columns the signature does not name (see :meth:`Signature.coerce`)
ExtraColumns = Literal["refuse", "ignore", "passthrough"]
EXTRA_COLUMNS: tuple[ExtraColumns, ...] = ("refuse", "ignore", "passthrough")
#: the default on every surface (REST, gRPC, batch, stream, ``predict``, Python): MLflow's
#: pyfunc ignores columns its signature does not name, and clients that send an id with each
#: row must keep working; a misspelt input still fails, as a missing column
DEFAULT_EXTRA: ExtraColumns = "ignore"
Task = Literal["classification", "regression", "other"]

_NUMERIC = {"float64", "float32", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32",
            "uint64"}
_SUPPORTED = _NUMERIC | {"bool", "string"}
_PLAIN_NUMBERS = {int, float}


@dataclass(frozen=True)
class ColumnSpec:
    """One input or output: a name, a dtype and the per-row shape (``()`` for a scalar)."""

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.shape:
            out["shape"] = list(self.shape)
        if self.nullable:
            out["nullable"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        dtype = str(data["dtype"])
        if dtype not in _SUPPORTED:
            raise InvalidInputError(
                f"signature column {data['name']!r}: unsupported dtype {dtype!r}; "
                f"use one of {sorted(_SUPPORTED)}"
            )
        return cls(
            name=str(data["name"]),
            dtype=dtype,
            shape=tuple(int(s) for s in data.get("shape", ())),
            nullable=bool(data.get("nullable", False)),
        )

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        return np.dtype(object) if self.dtype == "string" else np.dtype(self.dtype)


@dataclass(frozen=True)
class Signature:
    """Typed inputs and outputs of a model. ``classes`` lists class labels for classifiers."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = ()
    kind: InputKind = "columns"
    task: Task = "other"
    classes: tuple[Any, ...] | None = None
    _uniform: str | None = field(default=None, compare=False, repr=False)
    _names: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.inputs]
        if len(set(names)) != len(names):
            raise InvalidInputError("signature has duplicate input names")
        object.__setattr__(self, "_names", tuple(names))  # read on every request
        dtypes = {c.dtype for c in self.inputs}
        uniform = (
            self.kind == "columns"
            and len(dtypes) == 1
            and next(iter(dtypes)) in _NUMERIC
        )
        object.__setattr__(self, "_uniform", next(iter(dtypes)) if uniform else None)

    @property
    def input_names(self) -> list[str]:
        return list(self._names)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "task": self.task,
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [c.to_dict() for c in self.outputs],
        }
        if self.classes is not None:
            out["classes"] = [_plain(c) for c in self.classes]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        if not isinstance(data, Mapping) or "inputs" not in data:
            raise InvalidInputError("a signature needs an 'inputs' list of {name, dtype} entries")
        classes = data.get("classes")
        return cls(
            inputs=tuple(ColumnSpec.from_dict(c) for c in data["inputs"]),
            outputs=tuple(ColumnSpec.from_dict(c) for c in data.get("outputs", ())),
            kind=data.get("kind", "columns"),
            task=data.get("task", "other"),
            classes=tuple(classes) if classes is not None else None,
        )

    # ---------------------------------------------------------------- inference
    @classmethod
    def infer(cls, example: Any) -> Signature:
        """Infer input specs from example data (DataFrame, Arrow table, ndarray, records)."""
        if isinstance(example, np.ndarray):
            if example.ndim == 1:
                example = example.reshape(-1, 1)
            dtype = _dtype_name(example.dtype)
            spec = ColumnSpec(
                "input", dtype, tuple(int(s) for s in example.shape[1:]),
                nullable=bool(dtype.startswith("float") and np.isnan(example).any()),
            )
            return cls(inputs=(spec,), kind="tensor")
        frame = _as_frame(example)
        specs = []
        for name in frame.columns:
            col = frame[name]
            dtype = _dtype_name(col.dtype, values=col.to_numpy())
            specs.append(ColumnSpec(str(name), dtype, (), nullable=bool(col.isna().any())))
        return cls(inputs=tuple(specs), kind="columns")

    def with_nullable(self, columns: Sequence[str] | bool) -> Signature:
        """This signature with ``columns`` (``True``: every numeric or string input) declared
        nullable: a missing value (``null``, ``None``, NaN) is accepted there and reaches the
        model as NaN (``None`` for strings). Other columns keep what they declared.

        >>> sig = Signature.from_dict({"inputs": [{"name": "a", "dtype": "int64"},
        ...                                       {"name": "b", "dtype": "float64"}]})
        >>> sig.with_nullable(["a"]).coerce([{"a": None, "b": 1.0}]).column("a").tolist()
        [nan]
        """
        if columns is True:
            names = {s.name for s in self.inputs if s.dtype != "bool"}
        elif columns is False:
            return self
        else:
            names = set(columns)
            unknown = sorted(names - set(self.input_names))
            if unknown:
                raise InvalidInputError(
                    f"cannot declare {unknown[0]!r} nullable: the model's inputs are "
                    f"{self.input_names}", field=unknown[0])
            refused = [s.name for s in self.inputs if s.name in names and s.dtype == "bool"]
            if refused:
                raise InvalidInputError(
                    f"column {refused[0]!r} is boolean and cannot hold a missing value",
                    field=refused[0])
        inputs = tuple(replace(s, nullable=True) if s.name in names else s for s in self.inputs)
        return replace(self, inputs=inputs)

    @property
    def nullable_names(self) -> list[str]:
        """The inputs that accept a missing value."""
        return [s.name for s in self.inputs if s.nullable]

    def with_outputs(
        self, outputs: Sequence[ColumnSpec], task: Task, classes: Sequence[Any] | None
    ) -> Signature:
        return Signature(
            inputs=self.inputs,
            outputs=tuple(outputs),
            kind=self.kind,
            task=task,
            classes=tuple(classes) if classes is not None else None,
        )

    # ---------------------------------------------------------------- coercion
    def coerce(self, data: Any, *, keys: Array | None = None, allow_extra: bool | None = None,
               extra: ExtraColumns | None = None) -> Batch:
        """Turn user data into a ``Batch`` exactly as the signature declares, or say why not.

        Accepts: a list of records (dicts), one record, a columnar dict, a pandas DataFrame, a
        pyarrow Table / RecordBatch, or a NumPy array (tensor signatures; for column signatures a
        2-D array whose width equals the number of columns, read in signature order).

        ``extra`` says what happens to columns the signature does not name: ``"refuse"`` (an
        :class:`~modelport.errors.InvalidInputError` naming the first), ``"ignore"`` (the
        default, :data:`DEFAULT_EXTRA`) or ``"passthrough"`` (ignored here; the surface copies
        them into the output, see :meth:`extra_names`). ``allow_extra`` is the older boolean
        form (``True``: ignore, ``False``: refuse).
        """
        allow = extra_allowed(extra, allow_extra)
        return self._coerce(data, keys, allow)

    def extra_names(self, names: Sequence[str]) -> list[str]:
        """The names in ``names`` that are not inputs, in their order (passed-through columns)."""
        expected = set(self.input_names)
        return [n for n in names if n not in expected]

    def extra_inputs(self, names: Sequence[str], extra: ExtraColumns | None = None) -> list[str]:
        """The names in ``names`` that are not inputs, checked against the ``extra`` policy.

        Under ``"refuse"`` the first one raises the :class:`~modelport.errors.InvalidInputError`
        every surface gives (:meth:`coerce`'s message); otherwise they are returned in order.
        """
        self._check_extra(names, extra_allowed(extra))
        return self.extra_names(names)

    def _coerce(self, data: Any, keys: Array | None, allow_extra: bool) -> Batch:
        if isinstance(data, Batch):
            return self._check_batch(data)
        if isinstance(data, np.ndarray):
            return self._from_array(data, keys)
        if isinstance(data, Mapping):
            if data and all(_is_sequence(v) for v in data.values()) and not self._is_record(data):
                return self._from_columns(data, keys, allow_extra)
            return self._from_records([data], keys, allow_extra)
        if isinstance(data, list):
            if data and not isinstance(data[0], Mapping):
                matrix = self.rows_matrix(data)
                if matrix is not None:
                    return self._matrix_batch(matrix, keys)
                return self._from_array(_list_to_array(data), keys, from_lists=True)
            return self._from_records(data, keys, allow_extra)
        module = type(data).__module__
        if module.startswith("pyarrow"):
            from modelport.core.arrow import arrow_column_to_numpy

            shapes = {s.name: s.shape for s in self.inputs}
            cols = {name: arrow_column_to_numpy(data.column(name), shapes.get(name, ()))
                    for name in data.schema.names}
            return self._from_columns(cols, keys, allow_extra)
        if module.startswith("pandas"):
            cols = {str(name): data[name].to_numpy() for name in data.columns}
            return self._from_columns(cols, keys, allow_extra)
        raise InvalidInputError(
            f"cannot read input of type {type(data).__name__}; send records (a list of objects), "
            "columns (an object of lists), a DataFrame, an Arrow table or an array"
        )

    def _is_record(self, data: Mapping[str, Any]) -> bool:
        """A single record whose inputs are tensors looks columnar; tell them apart by rank."""
        if self.kind != "tensor":
            return False
        spec = next((s for s in self.inputs if s.name in data), None)
        if spec is None:
            return False
        try:
            return int(np.ndim(data[spec.name])) == len(spec.shape)
        except ValueError:  # ragged nesting: let the tensor check report the shapes
            return False

    def _check_extra(self, names: Sequence[str], allow_extra: bool) -> None:
        if allow_extra:
            return
        expected = set(self.input_names)
        extra = [n for n in names if n not in expected]
        if extra:
            raise InvalidInputError(
                f"unexpected column {extra[0]!r}; the model takes {self.input_names} (send only "
                "those, or run with --extra-columns ignore or passthrough)",
                field=extra[0],
            )

    def _from_records(
        self, records: Sequence[Any], keys: Array | None, allow_extra: bool
    ) -> Batch:
        if not records:
            raise InvalidInputError("no rows given; send at least one record")
        names = self.input_names
        fast = self._float_rows(records, allow_extra)
        if fast is not None:
            return self._matrix_batch(fast, keys)
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise InvalidInputError(
                    f"row {i}: expected an object with fields {names}, got {type(rec).__name__}"
                )
            if len(rec) != len(names) or not all(n in rec for n in names):
                for n in names:
                    if n not in rec:
                        raise InvalidInputError(f"row {i}: missing column {n!r}", field=n)
                self._check_extra(list(rec), allow_extra)
        if self._uniform is not None and self._uniform.startswith("float"):
            rows = [[rec[n] for n in names] for rec in records]
            if {type(v) for row in rows for v in row} <= _PLAIN_NUMBERS:
                return self._matrix_batch(np.array(rows, dtype=np.float64), keys)
            # anything else (None, strings, booleans) takes the per-column path for a precise
            # message or a nullable conversion
        cols = {n: [rec[n] for rec in records] for n in names}
        return self._from_columns(cols, keys, allow_extra=True)

    @property
    def float_columns(self) -> bool:
        """Whether the inputs are columns of one float dtype: records can then be read straight
        into one float64 matrix (see :meth:`from_matrix`)."""
        return self._uniform is not None and self._uniform.startswith("float")

    def from_matrix(self, matrix: Array) -> Batch:
        """The batch for a float64 ``matrix`` holding the inputs in signature order, one row
        per record, checked as :meth:`coerce` checks records (missing values)."""
        if not self.float_columns:
            raise InvalidInputError("this model's inputs are not all float columns; send records")
        return self._matrix_batch(matrix, None)

    def _float_rows(self, records: Sequence[Any], allow_extra: bool) -> Array | None:
        """The float matrix of plain dicts holding every input as an int or float, else None.

        What the checks below would accept, found with C-level passes (the common case of
        JSON records); anything else returns None and takes the checks for a precise message.
        """
        names = self.input_names
        if (not self.float_columns or len(names) < 2  # (one name: itemgetter gives no tuple)
                or set(map(type, records)) != {dict}):
            return None
        if not allow_extra and set(map(len, records)) != {len(names)}:
            return None
        try:
            values = list(itertools.chain.from_iterable(map(operator.itemgetter(*names),
                                                            records)))
        except KeyError:
            return None
        if not set(map(type, values)) <= _PLAIN_NUMBERS:
            return None
        return np.array(values, dtype=np.float64).reshape(len(records), len(names))

    def _matrix_batch(self, matrix: Array, keys: Array | None) -> Batch:
        """Fast path for tables of float columns: one matrix, missing values checked per column."""
        assert self._uniform is not None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.inputs):
            raise InvalidInputError(
                f"expected rows of {len(self.inputs)} values ({self.input_names}), "
                f"got shape {list(matrix.shape)}"
            )
        nan = np.isnan(matrix)
        if nan.any():
            for j, spec in enumerate(self.inputs):
                if nan[:, j].any() and not spec.nullable:
                    raise _missing(spec)
        # nullable integer columns with a missing value stay float64 (NaN): models that handle
        # missing values (tree ensembles) read it as "missing"
        keep_float = nan.any() and not self._uniform.startswith("float")
        out = matrix if keep_float else matrix.astype(self._uniform, copy=False)
        return Batch.from_matrix(self.input_names, out, keys=keys)

    def _from_columns(
        self, data: Mapping[str, Any], keys: Array | None, allow_extra: bool
    ) -> Batch:
        for spec in self.inputs:
            if spec.name not in data:
                raise InvalidInputError(f"missing column {spec.name!r}", field=spec.name)
        self._check_extra(list(data), allow_extra)
        cols: dict[str, Array] = {}
        n_rows: int | None = None
        for spec in self.inputs:
            col = _coerce_column(spec, data[spec.name])
            if n_rows is None:
                n_rows = len(col)
            elif len(col) != n_rows:
                raise InvalidInputError(
                    f"column {spec.name!r} has {len(col)} values, others have {n_rows}",
                    field=spec.name,
                )
            cols[spec.name] = col
        if not n_rows:
            raise InvalidInputError("no rows given; send at least one row")
        if self._uniform is not None:
            matrix = np.column_stack([cols[n] for n in self.input_names])
            return Batch.from_matrix(self.input_names, matrix, keys=keys)
        return Batch(self.input_names, n_rows, columns=cols, keys=keys)

    def rows_matrix(self, rows: Sequence[Any]) -> Array | None:
        """The float64 matrix of ``rows`` — lists holding every input as an int or float, in
        signature order — when the inputs are float columns; else None (coerce then checks
        each column and says what is wrong)."""
        width = len(self.inputs)
        if (not self.float_columns or not rows or set(map(type, rows)) != {list}
                or set(map(len, rows)) != {width}):
            return None
        if not set(map(type, itertools.chain.from_iterable(rows))) <= _PLAIN_NUMBERS:
            return None
        return np.array(rows, dtype=np.float64)

    def _from_array(self, array: Array, keys: Array | None, *, from_lists: bool = False
                    ) -> Batch:
        if self.kind == "tensor":
            if len(self.inputs) != 1:
                raise InvalidInputError(
                    f"the model takes {len(self.inputs)} named tensors {self.input_names}; "
                    "send them by name"
                )
            spec = self.inputs[0]
            if array.ndim == len(spec.shape):
                array = array.reshape((1, *array.shape))
            return self._from_columns({spec.name: array}, keys, allow_extra=False)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != len(self.inputs):
            raise InvalidInputError(
                f"expected rows of {len(self.inputs)} values ({self.input_names}), "
                f"got an array of shape {list(array.shape)}"
            )
        if array.dtype.kind == "f" and self.float_columns and not from_lists:
            # a float matrix for float columns is already what the model takes: check missing
            # values once for the whole matrix (no split into columns and back)
            return self._matrix_batch(array, keys)
        cols = {spec.name: array[:, j] for j, spec in enumerate(self.inputs)}
        return self._from_columns(cols, keys, allow_extra=False)

    def _check_batch(self, batch: Batch) -> Batch:
        if list(batch.names) != self.input_names:
            return self._from_columns(batch.columns, batch.keys, allow_extra=False)
        return batch


# -------------------------------------------------------------------- helpers
def extra_allowed(extra: str | None, allow_extra: bool | None = None) -> bool:
    """Whether columns beyond the inputs are accepted under ``extra`` (or the older boolean)."""
    if extra is None:
        return allow_extra if allow_extra is not None else DEFAULT_EXTRA != "refuse"
    if extra not in EXTRA_COLUMNS:
        from modelport.errors import ConfigurationError

        raise ConfigurationError(
            f"--extra-columns {extra!r}: use one of {', '.join(EXTRA_COLUMNS)}")
    return extra != "refuse"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray) or type(value).__module__.startswith(
        ("pandas", "pyarrow")
    )


def _list_to_array(data: list[Any]) -> Array:
    try:
        return np.asarray(data)
    except ValueError as exc:
        raise InvalidInputError(f"rows have different lengths: {exc}") from None


def _as_frame(example: Any) -> Any:
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        return example
    module = type(example).__module__
    if module.startswith("pyarrow"):
        return example.to_pandas()
    if isinstance(example, Mapping):
        example = [example] if not all(_is_sequence(v) for v in example.values()) else example
        return pd.DataFrame(example)
    if isinstance(example, list) and example and isinstance(example[0], Mapping):
        return pd.DataFrame(example)
    raise InvalidInputError(
        f"cannot infer a signature from {type(example).__name__}; give a DataFrame, an Arrow "
        "table, an array or a list of records, or pass signature= explicitly"
    )


def _dtype_name(dtype: Any, values: Array | None = None) -> str:
    if not isinstance(dtype, np.dtype):  # pandas extension dtypes (string, Int64, boolean, …)
        text = str(dtype).lower()
        if text in ("boolean", "bool"):
            return "bool"
        if text.startswith(("int", "uint", "float")):
            return text
        if text.startswith(("string", "str", "category", "object")):
            return "string"
        raise InvalidInputError(
            f"unsupported column dtype {dtype}; convert it to numbers or strings"
        )
    kind = dtype.kind
    if kind == "b":
        return "bool"
    if kind in "iu":
        return dtype.name
    if kind == "f":
        return "float32" if dtype == np.float32 else "float64"
    if kind in "OUS":
        if values is not None:
            sample = [v for v in values[:1000] if v is not None and v == v]
            if sample and all(isinstance(v, bool) for v in sample):
                return "bool"
            if sample and all(isinstance(v, int | float) and not isinstance(v, bool)
                              for v in sample):
                return "float64"
        return "string"
    raise InvalidInputError(f"unsupported column dtype {dtype}; convert it to numbers or strings")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, float):
        return f"a fractional number ({value})"
    return f"{type(value).__name__} ({str(value)[:40]})"


def _coerce_column(spec: ColumnSpec, values: Any) -> Array:
    """One column to ``spec``'s dtype; refuses lossy or type-changing conversions."""
    if type(values).__module__.startswith("pyarrow"):
        values = values.to_numpy(zero_copy_only=False)
    elif type(values).__module__.startswith("pandas"):
        values = values.to_numpy()
    if spec.shape:
        return _coerce_tensor(spec, values)
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.ndim != 1:
        raise InvalidInputError(
            f"column {spec.name!r}: expected one value per row, got shape {list(arr.shape)}",
            field=spec.name,
        )
    if spec.dtype == "string":
        return _coerce_strings(spec, values)
    if spec.dtype == "bool":
        if arr is not None and arr.dtype.kind == "b":
            return arr
        out = []
        for v in values:
            if not isinstance(v, bool | np.bool_):
                _type_error(spec, v)
            out.append(bool(v))
        return np.array(out, dtype=bool)
    target = np.dtype(spec.dtype)
    if arr is not None and arr.dtype.kind in "iuf":
        return _cast_numeric(spec, arr, target)
    if arr is not None and arr.dtype.kind == "b":
        _type_error(spec, bool(arr[0]) if arr.size else False)  # also for zero rows (14.4)
    items = list(values)
    for v in items:
        if v is None:
            continue
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number):
            _type_error(spec, v)
    if any(v is None for v in items):
        if not spec.nullable:
            raise _missing(spec)
        items = [math.nan if v is None else v for v in items]
    try:
        raw = np.array(items)
    except (OverflowError, ValueError):
        raise InvalidInputError(
            f"column {spec.name!r}: value out of range for {spec.dtype}", field=spec.name
        ) from None
    return _cast_numeric(spec, raw, target)


def _cast_numeric(spec: ColumnSpec, arr: Array, target: np.dtype[Any]) -> Array:
    if arr.dtype == target:
        if target.kind == "f" and not spec.nullable and np.isnan(arr).any():
            raise _missing(spec)
        return arr
    if target.kind == "f":
        if arr.dtype.kind == "f" and not spec.nullable and np.isnan(arr).any():
            raise _missing(spec)
        if arr.dtype.kind in "iu" and arr.size and np.abs(arr).max() > 2**53:
            raise InvalidInputError(
                f"column {spec.name!r}: integer too large to convert to {spec.dtype} exactly",
                field=spec.name,
            )
        return arr.astype(target)
    # integer target
    missing = None
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
        if missing.any() and not spec.nullable:
            raise _missing(spec)
        frac = ~missing & (arr != np.round(arr))
        if frac.any():
            raise InvalidInputError(
                f"column {spec.name!r}: expected {spec.dtype}, got a fractional number "
                f"({arr[np.argmax(frac)]})", field=spec.name,
            )
    info = np.iinfo(target)
    if missing is not None and missing.any():  # nullable: whole numbers and NaN, as float64
        present = arr[~missing]
        if present.size and (present.min() < info.min or present.max() > info.max):
            raise InvalidInputError(
                f"column {spec.name!r}: value out of range for {spec.dtype}", field=spec.name
            )
        return arr.astype(np.float64, copy=False)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise InvalidInputError(
            f"column {spec.name!r}: value out of range for {spec.dtype}", field=spec.name
        )
    return arr.astype(target)


def _coerce_strings(spec: ColumnSpec, values: Any) -> Array:
    out: list[str | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            if not spec.nullable:
                raise _missing(spec)
            out.append(None)
        elif isinstance(v, str | np.str_):
            out.append(str(v))
        else:
            _type_error(spec, v)
    return np.array(out, dtype=object)


def _coerce_tensor(spec: ColumnSpec, values: Any) -> Array:
    try:
        arr = np.asarray(values)
    except ValueError:
        raise InvalidInputError(
            f"tensor {spec.name!r}: rows have different shapes; expected {list(spec.shape)} each",
            field=spec.name,
        ) from None
    if arr.ndim == len(spec.shape):
        arr = arr.reshape((1, *arr.shape))
    expected = tuple(spec.shape)
    got = tuple(arr.shape[1:])
    if len(got) != len(expected) or any(e not in (-1, g) for e, g in zip(expected, got,
                                                                          strict=True)):
        raise InvalidInputError(
            f"tensor {spec.name!r}: expected shape [n, {', '.join(map(str, expected))}], "
            f"got {list(arr.shape)}", field=spec.name,
        )
    if arr.dtype.kind not in "iufb":
        raise InvalidInputError(
            f"tensor {spec.name!r}: expected numbers ({spec.dtype}), got {arr.dtype}",
            field=spec.name,
        )
    flat = _cast_numeric(ColumnSpec(spec.name, spec.dtype, (), spec.nullable), arr.reshape(-1),
                         np.dtype(spec.dtype)) if arr.dtype.kind != "b" else arr.reshape(-1)
    return flat.reshape(arr.shape)


def _missing(spec: ColumnSpec) -> InvalidInputError:
    """A missing value in a column that does not take one, saying how to declare that it may."""
    what = "a string" if spec.dtype == "string" else spec.dtype
    return InvalidInputError(
        f"column {spec.name!r}: missing value where {what} is required; if the model handles "
        f"missing values, declare the column nullable: 'modelport models register BUNDLE_DIR "
        f"--nullable {spec.name}'",
        field=spec.name,
    )


def _type_error(spec: ColumnSpec, value: Any) -> None:
    raise InvalidInputError(
        f"column {spec.name!r}: expected {spec.dtype}, got {_describe(value)}", field=spec.name
    )
