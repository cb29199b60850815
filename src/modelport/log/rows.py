"""Prediction events → rows of the predictions table (Arrow), after each model's log policy.

Events are buffered as they come (a deque append) and turned into columns only here, at flush
time, a whole group of events at once. Events of one model version with the same input names and
outputs form a group. A server flush holds ~100k one-row events, so everything here is columnar:
each per-event field is gathered by one C-level ``map(attrgetter)`` pass, the events' input
matrices, labels and probabilities are joined with one ``np.concatenate`` each per flush, the
feature matrix is transposed in cache-sized blocks, and string columns (prediction ids, request
ids) are built as one UTF-8 buffer plus offsets rather than one Arrow value per Python string.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import chain, pairwise, repeat
from operator import attrgetter, is_
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelport.core.batch import Array, Batch, Result
from modelport.core.events import PredictionEvent
from modelport.log.config import ModelLogPolicy
from modelport.log.schema import PREDICTION_COLUMNS, output_column, probability_column

_DAY_US = 86_400_000_000
_INPUTS, _N_ROWS, _ROW_IDS, _ID = (attrgetter("inputs"), attrgetter("n_rows"),
                                   attrgetter("row_ids"), attrgetter("id"))
_TIMESTAMP, _LATENCY, _ENDPOINT, _VARIANT = (attrgetter("timestamp"), attrgetter("latency_ms"),
                                             attrgetter("endpoint"), attrgetter("variant"))
_REQUEST, _SOURCE, _OUTPUTS = attrgetter("request_id"), attrgetter("source"), attrgetter("outputs")
_MATRIX, _LABELS, _PROBABILITIES = (attrgetter("_matrix"), attrgetter("labels"),
                                    attrgetter("probabilities"))
_INT32_MAX = 2**31 - 1
_TRANSPOSE_BLOCK = 256  # rows per block of the cache-friendly transpose
#: rows converted at once: a flush of 1M one-row events costs 2.3x per event what slices of
#: 10k cost (the joined arrays and their transposes no longer fit in cache)
_CHUNK_ROWS = 16_384


def row_ids(event: PredictionEvent) -> list[str]:
    """The prediction ids of an event's rows: given ones, ``P`` for one row, else ``P-i``."""
    given = getattr(event, "row_ids", None)
    if given is not None:
        return list(given)
    if event.n_rows == 1:
        return [event.id]
    return [f"{event.id}-{i}" for i in range(event.n_rows)]


def _group_key(event: PredictionEvent) -> tuple[Any, ...]:
    out = event.outputs
    return (event.model, event.version, event.inputs.names,
            tuple(out.classes) if out.classes is not None else None,
            out.labels is not None, out.probabilities is not None, tuple(out.outputs))


def group_events(events: Iterable[PredictionEvent]) -> list[list[PredictionEvent]]:
    """The events split into groups that convert together (same model, version, input names and
    kinds of output), in order of first appearance."""
    groups: dict[tuple[Any, ...], list[PredictionEvent]] = {}
    for event in events:
        groups.setdefault(_group_key(event), []).append(event)
    return list(groups.values())


def to_table(events: Sequence[PredictionEvent], policy: ModelLogPolicy, *, salt: str = "",
             rng: random.Random | None = None) -> pa.Table:
    """One group's rows (see :func:`group_events`) as a predictions table."""
    if len(events) > 1:  # converted in slices of about _CHUNK_ROWS rows, which stay in cache
        ends = np.cumsum(np.fromiter(map(_N_ROWS, map(_INPUTS, events)), np.int64, len(events)))
        if ends[-1] > _CHUNK_ROWS:
            cuts = np.unique(np.searchsorted(ends, np.arange(_CHUNK_ROWS, ends[-1], _CHUNK_ROWS),
                                             side="right"))
            bounds = [0, *(int(c) for c in cuts if 0 < c < len(events)), len(events)]
            return pa.concat_tables(
                [_to_table(events[a:b], policy, salt=salt, rng=rng)
                 for a, b in pairwise(bounds)],
                promote_options="permissive")
    return _to_table(events, policy, salt=salt, rng=rng)


def _to_table(events: Sequence[PredictionEvent], policy: ModelLogPolicy, *, salt: str,
              rng: random.Random | None) -> pa.Table:
    first = events[0]
    count = len(events)
    inputs_list: list[Batch] = list(map(_INPUTS, events))
    sizes: list[int] = list(map(_N_ROWS, inputs_list))
    given = list(map(_ROW_IDS, events))
    single = sizes.count(1) == count  # one row per event (the server's case): no repeats
    n = count if single else sum(sizes)
    ids = _row_ids(events, sizes, given, single)
    at_us = (np.fromiter(map(_TIMESTAMP, events), np.float64, count) * 1_000_000
             ).astype(np.int64)
    latencies = np.fromiter(map(_LATENCY, events), np.float64, count)
    if not single:
        at_us = np.repeat(at_us, sizes)
        latencies = np.repeat(latencies, sizes)
    results: list[Result] = list(map(_OUTPUTS, events))
    inputs = _concat_inputs(inputs_list, n)
    columns: dict[str, pa.Array] = {
        "prediction_id": _strings(ids),
        "predicted_at": pa.array(at_us, pa.timestamp("us", tz="UTC")),
        "date": _dates(at_us),
        "model": _constant_str(first.model, n),
        "version": (pa.nulls(n, pa.int64()) if first.version is None
                    else pa.array(np.full(n, first.version, np.int64))),
        "endpoint": _repeat_str(list(map(_ENDPOINT, events)), sizes, single),
        "variant": _repeat_str(list(map(_VARIANT, events)), sizes, single),
        "request_id": _repeat_str(list(map(_REQUEST, events)), sizes, single),
        "source": _repeat_str(list(map(_SOURCE, events)), sizes, single),
        "entity_key": _entity_keys(inputs, policy),
        "latency_ms": pa.array(latencies, pa.float64()),
        "inputs": _inputs(inputs, policy, salt),
    }
    columns.update(_outputs(results, n))
    table = pa.table(columns)
    if policy.sample_rate < 1.0:
        draw = (rng or random.Random()).random
        keep = np.fromiter((draw() < policy.sample_rate for _ in range(n)), bool, n)
        table = table.filter(pa.array(keep))
    return table


def _row_ids(events: Sequence[PredictionEvent], sizes: list[int],
             given: list[Sequence[str] | None], single: bool) -> list[str]:
    """Every row's prediction id, in row order (see :func:`row_ids`)."""
    if given.count(None) == len(given):
        if single:  # one request, one row: its id P
            return list(map(_ID, events))
        # P for one-row events, P-0 … P-<n-1> otherwise: one comprehension over ready suffixes
        suffixes = [f"-{i}" for i in range(max(sizes))]
        return [pid + suffix if rows != 1 else pid
                for pid, rows in zip(map(_ID, events), sizes, strict=True)
                for suffix in suffixes[:rows]]
    if not any(map(is_, given, repeat(None))):  # batch / stream: every event brings its ids
        return list(chain.from_iterable(given))  # type: ignore[arg-type]
    ids: list[str] = []
    for event, rows, own in zip(events, sizes, given, strict=True):
        if own is not None:
            ids.extend(own)
        elif rows == 1:
            ids.append(event.id)
        else:
            ids.extend([f"{event.id}-{i}" for i in range(rows)])
    return ids


def _strings(values: list[Any]) -> pa.Array:
    """A string column from Python strings: one joined UTF-8 buffer and offsets (``pa.array``
    makes an Arrow value per Python object, ~0.5 us each); nulls or non-strings go the usual way."""
    n = len(values)
    if n < 64 or values.count(None):
        return pa.array(values, pa.string())
    try:
        text = "".join(values)
    except TypeError:
        return pa.array(values, pa.string())
    data = text.encode()
    if len(data) != len(text) or len(data) > _INT32_MAX:  # not ASCII: byte lengths differ
        return pa.array(values, pa.string())
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.fromiter(map(len, values), np.int32, n), out=offsets[1:])
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _constant_str(value: str | None, n: int) -> pa.Array:
    """``n`` times the same string (or null)."""
    if value is None:
        return pa.nulls(n, pa.string())
    data = value.encode()
    if n == 0 or len(data) * n > _INT32_MAX:
        return pa.array([value] * n, pa.string())
    offsets = np.arange(0, len(data) * (n + 1), len(data), dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def _join(parts: list[Array]) -> Array:
    """The parts as one array: one ``np.concatenate`` per column and flush. (Joining their bytes
    is faster per part, but checking that dtypes and shapes agree costs more than it saves.)"""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _concat_inputs(batches: list[Batch], n_rows: int) -> Batch:
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    # the matrices themselves (a method call per one-row batch costs as much as the copy)
    matrices = list(map(_MATRIX, batches))
    if not any(map(is_, matrices, repeat(None))):  # the common case: the matrices joined once
        keys = None
        if first.keys is not None and all(b.keys is not None for b in batches):
            keys = np.concatenate([b.keys for b in batches if b.keys is not None])
        return Batch.from_matrix(first.names, _join(matrices), keys=keys)
    return Batch.concat(batches)


def _dates(at_us: Array) -> pa.Array:
    days = at_us // _DAY_US
    if len(days) and days.min() == days.max():  # the usual flush: one day
        text = datetime.fromtimestamp(int(days[0]) * 86_400, UTC).strftime("%Y-%m-%d")
        return _constant_str(text, len(days))
    unique, index = np.unique(days, return_inverse=True)  # a flush spans a few days at most
    texts = pa.array([datetime.fromtimestamp(int(d) * 86_400, UTC).strftime("%Y-%m-%d")
                      for d in unique], pa.string())
    return texts.take(pa.array(index.astype(np.int32)))


def _repeat_str(values: list[str | None], sizes: list[int], single: bool) -> pa.Array:
    first = values[0]
    if values.count(first) == len(values):  # one value for the whole flush (C-level count)
        return _constant_str(first, sum(sizes))
    if single:
        return _strings(values)
    return _strings(list(chain.from_iterable(map(repeat, values, sizes))))


def _entity_keys(inputs: Batch, policy: ModelLogPolicy) -> pa.Array:
    name = policy.entity_key
    values: Array | None = None
    if name is not None and name in inputs.names:
        values = inputs.column(name)
    elif name is not None and inputs.keys is not None:
        values = inputs.keys
    if values is None:
        return pa.nulls(inputs.n_rows, pa.string())
    if values.ndim == 1 and values.dtype.kind in "iu":  # str(int) without a Python int per row
        return pc.cast(pa.array(values), pa.string())
    return _strings([None if v is None else str(v) for v in values.tolist()])


def _transposed(matrix: Array) -> Array:
    """``matrix.T`` as a C-contiguous copy (each row then one feature, converted to Arrow
    without a copy), copied in blocks of rows that stay in cache: 3-4x ``np.ascontiguousarray``
    on a flush's (100k, 30) matrix."""
    rows = matrix.shape[0]
    if matrix.shape[1] <= 4 or rows <= _TRANSPOSE_BLOCK:  # a few columns: plain copy is faster
        return np.ascontiguousarray(matrix.T)
    out = np.empty((matrix.shape[1], rows), matrix.dtype)
    for start in range(0, rows, _TRANSPOSE_BLOCK):
        stop = start + _TRANSPOSE_BLOCK
        out[:, start:stop] = matrix[start:stop].T
    return out


def _inputs(inputs: Batch, policy: ModelLogPolicy, salt: str) -> pa.Array:
    names = [n for n in inputs.names
             if (policy.include is None or n in policy.include) and n not in policy.drop]
    if not names:
        return pa.nulls(inputs.n_rows, pa.struct([]))
    hashed = set(policy.hash)
    arrays = []
    rows_of = None
    if inputs.is_matrix and inputs.to_matrix().ndim == 2 \
            and inputs.to_matrix().shape[1] == len(inputs.names):
        rows_of = _transposed(inputs.to_matrix())
    for name in names:
        column = rows_of[inputs.names.index(name)] if rows_of is not None \
            else inputs.column(name)
        arrays.append(_hash(column, salt) if name in hashed else to_arrow(column))
    return pa.StructArray.from_arrays(arrays, names=names)


def _hash(column: Array, salt: str) -> pa.Array:
    prefix = salt.encode()
    sha256 = hashlib.sha256
    return _strings([None if v is None else sha256(prefix + str(v).encode()).hexdigest()
                     for v in column.tolist()])


def to_arrow(column: Array) -> pa.Array:
    """A NumPy column as Arrow: scalars as they are, 2-D and more as (nested) lists."""
    if column.ndim > 1:
        flat = to_arrow(column.reshape(column.shape[0] * column.shape[1], *column.shape[2:]))
        offsets = np.arange(0, column.shape[0] * column.shape[1] + 1, column.shape[1],
                            dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), flat)
    if column.dtype.kind == "O":
        return pa.array(column.tolist())
    if column.dtype.kind == "u":  # table formats have no unsigned integers
        return pa.array(column.astype(np.int64))
    if column.dtype == np.float16:
        return pa.array(column.astype(np.float32))
    return pa.array(column)


def _outputs(results: list[Result], n: int) -> dict[str, pa.Array]:
    first = results[0]
    out: dict[str, pa.Array] = {}
    if first.labels is not None:
        out["prediction"] = to_arrow(_join(list(map(_LABELS, results))))
    elif len(first.outputs) == 1:
        (only,) = first.outputs
        out["prediction"] = to_arrow(_join([r.outputs[only] for r in results]))
    else:
        out["prediction"] = pa.nulls(n, pa.string())
    if first.probabilities is not None and first.classes is not None:
        proba = _join(list(map(_PROBABILITIES, results)))
        proba = proba.astype(np.float64, copy=False)
        columns = _transposed(proba) if proba.ndim == 2 else np.ascontiguousarray(proba.T)
        for i, cls in enumerate(first.classes):
            out[probability_column(cls)] = pa.array(columns[i])
    if first.labels is not None or len(first.outputs) > 1:
        for name in first.outputs:
            out[output_column(name)] = to_arrow(_join([r.outputs[name] for r in results]))
    return out


FIXED = [name for name, _ in PREDICTION_COLUMNS]

__all__ = ["group_events", "row_ids", "to_arrow", "to_table"]
