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


_NUMPY_TYPES = {"int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8", "uint8": "u1",
                "uint16": "u2", "uint32": "u4", "uint64": "u8", "halffloat": "f2",
                "float": "f4", "double": "f8"}


def numpy_view(column: pa.Array) -> Array | None:
    """A null-free numeric column as a read-only view of its values (``to_numpy()``'s), or
    ``None`` for any other column.

    Built on the column's buffer: ``to_numpy`` gives the same array, but its first call imports
    pandas (half a second).
    """
    code = _NUMPY_TYPES.get(str(column.type))
    if code is None or column.null_count or not isinstance(column, pa.Array):
        return None
    dtype = np.dtype(code)
    data = column.buffers()[1]
    if data is None or not len(column):
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype=dtype, count=len(column),
                         offset=column.offset * dtype.itemsize)


def arrow_column_to_numpy(column: Any, shape: tuple[int, ...] = ()) -> Array:
    """An Arrow column as NumPy; list columns are stacked into ``(n, *shape)`` tensors."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    view = numpy_view(column)
    if view is not None:
        return view
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
