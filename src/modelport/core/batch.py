"""The columnar types every adapter speaks to the inference core: ``Batch`` in, ``Result`` out.

A ``Batch`` is a set of equally long NumPy columns (optionally kept as one 2-D matrix when all
columns share a numeric dtype, which is the fast path for tabular models), plus optional row keys.
A ``Result`` holds what a model produced for those rows: labels or values, class probabilities and
any further named outputs. Both slice cheaply, which is what the micro-batcher relies on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


class Batch:
    """Rows of model input, stored by column.

    Build it with ``Batch.from_columns`` or ``Batch.from_matrix``; coercion from user data lives in
    :class:`modelport.bundle.signature.Signature`, which is the only place that guesses types.
    """

    __slots__ = ("_columns", "_matrix", "keys", "n_rows", "names")

    def __init__(
        self,
        names: Sequence[str],
        n_rows: int,
        *,
        columns: Mapping[str, Array] | None = None,
        matrix: Array | None = None,
        keys: Array | None = None,
    ) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.n_rows = n_rows
        self._columns: dict[str, Array] | None = dict(columns) if columns is not None else None
        self._matrix = matrix
        self.keys = keys

    @classmethod
    def from_columns(cls, columns: Mapping[str, Array], *, keys: Array | None = None) -> Batch:
        names = list(columns)
        n_rows = len(next(iter(columns.values()))) if columns else 0
        return cls(names, n_rows, columns=columns, keys=keys)

    @classmethod
    def from_matrix(
        cls, names: Sequence[str], matrix: Array, *, keys: Array | None = None
    ) -> Batch:
        """All columns of one numeric dtype, as an ``(n_rows, len(names))`` matrix."""
        return cls(names, int(matrix.shape[0]), matrix=matrix, keys=keys)

    @property
    def is_matrix(self) -> bool:
        return self._matrix is not None

    def column(self, name: str) -> Array:
        if self._columns is not None:
            return self._columns[name]
        assert self._matrix is not None
        return self._matrix[:, self.names.index(name)]

    @property
    def columns(self) -> dict[str, Array]:
        if self._columns is None:
            self._columns = {n: self.column(n) for n in self.names}
        return self._columns

    def to_matrix(self, dtype: npt.DTypeLike | None = None) -> Array:
        """All columns side by side as a 2-D array (scalar columns only)."""
        if self._matrix is not None:
            return self._matrix if dtype is None else self._matrix.astype(dtype, copy=False)
        cols = [self.columns[n] for n in self.names]
        if not cols:
            return np.empty((0, 0), dtype=dtype or np.float64)
        out = np.column_stack(cols)
        return out if dtype is None else out.astype(dtype, copy=False)

    def to_frame(self) -> Any:
        """A pandas DataFrame, for models that were trained on one (imports pandas lazily)."""
        import pandas as pd

        if self._matrix is not None:
            return pd.DataFrame(self._matrix, columns=list(self.names), copy=False)
        data = {}
        for n in self.names:
            col = self.columns[n]
            data[n] = list(col) if col.ndim > 1 else col
        return pd.DataFrame(data, columns=list(self.names))

    def slice(self, start: int, stop: int) -> Batch:
        keys = self.keys[start:stop] if self.keys is not None else None
        if self._matrix is not None:
            return Batch(self.names, stop - start, matrix=self._matrix[start:stop], keys=keys)
        cols = {n: c[start:stop] for n, c in self.columns.items()}
        return Batch(self.names, stop - start, columns=cols, keys=keys)

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """Join batches of the same names (the micro-batcher's one vectorized call)."""
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        n_rows = sum(b.n_rows for b in batches)
        keys = None
        if all(b.keys is not None for b in batches):
            keys = np.concatenate([b.keys for b in batches if b.keys is not None])
        if all(b.is_matrix for b in batches):
            mats = [b._matrix for b in batches]
            return Batch(first.names, n_rows, matrix=np.concatenate(mats), keys=keys)  # type: ignore[arg-type]
        cols = {n: np.concatenate([b.column(n) for b in batches]) for n in first.names}
        return Batch(first.names, n_rows, columns=cols, keys=keys)

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        return f"Batch(rows={self.n_rows}, columns={list(self.names)})"


@dataclass
class Result:
    """What a model produced for a batch.

    ``labels`` is the primary prediction per row: the class label for classifiers, the value for
    regressors. ``probabilities`` is ``(n_rows, len(classes))`` for classifiers that expose it.
    ``outputs`` holds any further named outputs (tensors from ONNX / PyTorch models).
    """

    n_rows: int
    labels: Array | None = None
    probabilities: Array | None = None
    classes: list[Any] | None = None
    outputs: dict[str, Array] = field(default_factory=dict)

    def slice(self, start: int, stop: int) -> Result:
        return Result(
            n_rows=stop - start,
            labels=self.labels[start:stop] if self.labels is not None else None,
            probabilities=(
                self.probabilities[start:stop] if self.probabilities is not None else None
            ),
            classes=self.classes,
            outputs={k: v[start:stop] for k, v in self.outputs.items()},
        )

    def split(self, sizes: Sequence[int]) -> Iterator[Result]:
        start = 0
        for size in sizes:
            yield self.slice(start, start + size)
            start += size

    def to_records(self) -> list[dict[str, Any]]:
        """One plain-Python dict per row: ``label`` / ``probabilities`` / extra outputs."""
        rows: list[dict[str, Any]] = [{} for _ in range(self.n_rows)]
        if self.labels is not None:
            for row, value in zip(rows, self.labels.tolist(), strict=True):
                row["label"] = value
        if self.probabilities is not None and self.classes is not None:
            names = [str(c) for c in self.classes]
            for row, probs in zip(rows, self.probabilities.tolist(), strict=True):
                row["probabilities"] = dict(zip(names, probs, strict=True))
        for key, arr in self.outputs.items():
            for row, value in zip(rows, arr.tolist(), strict=True):
                row[key] = value
        return rows
