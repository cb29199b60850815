"""Batch ⇄ Arrow conversion (tensor columns become fixed-size lists of their flattened values)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from modelport.core.batch import Array, Batch


def column_to_arrow(values: Array) -> pa.Array:
    if values.ndim > 1:
        width = int(np.prod(values.shape[1:]))
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, width)
    if values.dtype == object:
        return pa.array(values.tolist())
    return pa.array(values)


def batch_to_table(batch: Batch) -> pa.Table:
    return pa.table({name: column_to_arrow(batch.column(name)) for name in batch.names})


def arrow_column_to_numpy(column: Any, shape: tuple[int, ...] = ()) -> Array:
    """An Arrow column as NumPy; list columns are stacked into ``(n, *shape)`` tensors."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type) or \
            pa.types.is_large_list(column.type):
        if column.null_count:
            return np.asarray(column.to_pylist(), dtype=object)
        flat: Array = column.flatten().to_numpy(zero_copy_only=False)
        n = len(column)
        if shape and all(s > 0 for s in shape):
            return flat.reshape((n, *shape))
        return flat.reshape((n, -1)) if n else flat.reshape((0, 0))
    return column.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
