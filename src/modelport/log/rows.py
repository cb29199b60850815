"""Prediction events → rows of the predictions table (Arrow), after each model's log policy.

Events are buffered as they come (a deque append) and turned into columns only here, at flush
time, a whole group of events at once: one ``np.concatenate`` per column instead of Python work
per prediction. Events of one model version with the same input names and outputs form a group.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa

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
_IS_MATRIX = attrgetter("is_matrix")


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
    groups: dict[tuple[Any, ...], list[PredictionEvent]] = {}
    for event in events:
        groups.setdefault(_group_key(event), []).append(event)
    return list(groups.values())


def to_table(events: Sequence[PredictionEvent], policy: ModelLogPolicy, *, salt: str = "",
             rng: random.Random | None = None) -> pa.Table:
    """One group's rows (see :func:`group_events`) as a predictions table."""
    first = events[0]
    # a server flush holds ~100k one-row events, so per-event Python work is what this costs:
    # every per-event field is gathered by a C-level map(attrgetter) pass
    inputs_list: list[Batch] = list(map(_INPUTS, events))
    sizes: list[int] = list(map(_N_ROWS, inputs_list))
    given = list(map(_ROW_IDS, events))
    ids: list[str]
    if given.count(None) == len(given) and sizes.count(1) == len(sizes):
        ids = list(map(_ID, events))
    else:
        ids = []
        for e, rows, own in zip(events, sizes, given, strict=True):
            if own is not None:
                ids.extend(own)
            elif rows == 1:
                ids.append(e.id)
            else:
                ids.extend([f"{e.id}-{i}" for i in range(rows)])
    stamps = list(map(_TIMESTAMP, events))
    latencies = list(map(_LATENCY, events))
    endpoints = list(map(_ENDPOINT, events))
    variants = list(map(_VARIANT, events))
    requests = list(map(_REQUEST, events))
    sources = list(map(_SOURCE, events))
    results: list[Result] = list(map(_OUTPUTS, events))
    n = len(ids)
    single = n == len(events)  # one row per event: no repeats needed
    at_us = (np.array(stamps) * 1_000_000).astype(np.int64)
    if not single:
        at_us = np.repeat(at_us, sizes)
    inputs = _concat_inputs(inputs_list)
    columns: dict[str, pa.Array] = {
        "prediction_id": pa.array(ids, pa.string()),
        "predicted_at": pa.array(at_us, pa.timestamp("us", tz="UTC")),
        "date": _dates(at_us),
        "model": pa.array([first.model] * n, pa.string()),
        "version": pa.array([first.version] * n, pa.int64()),
        "endpoint": _repeat_str(endpoints, sizes, single),
        "variant": _repeat_str(variants, sizes, single),
        "request_id": _repeat_str(requests, sizes, single),
        "source": _repeat_str(sources, sizes, single),
        "entity_key": _entity_keys(inputs, policy),
        "latency_ms": pa.array(np.array(latencies) if single
                               else np.repeat(np.array(latencies), sizes), pa.float64()),
        "inputs": _inputs(inputs, policy, salt),
    }
    columns.update(_outputs(results, n))
    table = pa.table(columns)
    if policy.sample_rate < 1.0:
        draw = (rng or random.Random()).random
        keep = np.fromiter((draw() < policy.sample_rate for _ in range(n)), bool, n)
        table = table.filter(pa.array(keep))
    return table


def _concat_inputs(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    if all(map(_IS_MATRIX, batches)):  # the common case: one vstack
        keys = None
        if first.keys is not None and all(b.keys is not None for b in batches):
            keys = np.concatenate([b.keys for b in batches if b.keys is not None])
        # the matrices themselves (a method call per one-row batch costs as much as the copy)
        matrices = list(map(_MATRIX, batches))
        return Batch.from_matrix(first.names, np.concatenate(matrices), keys=keys)
    return Batch.concat(batches)


def _dates(at_us: Array) -> pa.Array:
    days = at_us // _DAY_US
    if len(days) and days.min() == days.max():  # the usual flush: one day
        text = datetime.fromtimestamp(int(days[0]) * 86_400, UTC).strftime("%Y-%m-%d")
        return pa.array([text] * len(days), pa.string())
    return pa.array([datetime.fromtimestamp(int(d) * 86_400, UTC).strftime("%Y-%m-%d")
                     for d in days], pa.string())


def _repeat_str(values: list[str | None], sizes: list[int], single: bool) -> pa.Array:
    first = values[0]
    if values.count(first) == len(values):  # one value for the whole flush (C-level count)
        return pa.array([first] * sum(sizes), pa.string())
    if single:
        return pa.array(values, pa.string())
    out: list[str | None] = []
    for value, size in zip(values, sizes, strict=True):
        out.extend([value] * size)
    return pa.array(out, pa.string())


def _entity_keys(inputs: Batch, policy: ModelLogPolicy) -> pa.Array:
    name = policy.entity_key
    values: Array | None = None
    if name is not None and name in inputs.names:
        values = inputs.column(name)
    elif name is not None and inputs.keys is not None:
        values = inputs.keys
    if values is None:
        return pa.nulls(inputs.n_rows, pa.string())
    return pa.array([None if v is None else str(v) for v in values.tolist()], pa.string())


def _inputs(inputs: Batch, policy: ModelLogPolicy, salt: str) -> pa.Array:
    names = [n for n in inputs.names
             if (policy.include is None or n in policy.include) and n not in policy.drop]
    if not names:
        return pa.nulls(inputs.n_rows, pa.struct([]))
    hashed = set(policy.hash)
    arrays = []
    rows_of = None
    if inputs.is_matrix and inputs.to_matrix().ndim == 2:  # one transposed copy: each feature
        rows_of = np.ascontiguousarray(inputs.to_matrix().T)  # then converts without a copy
    for name in names:
        column = rows_of[inputs.names.index(name)] if rows_of is not None \
            else inputs.column(name)
        arrays.append(_hash(column, salt) if name in hashed else to_arrow(column))
    return pa.StructArray.from_arrays(arrays, names=names)


def _hash(column: Array, salt: str) -> pa.Array:
    prefix = salt.encode()
    return pa.array([None if v is None else
                     hashlib.sha256(prefix + str(v).encode()).hexdigest()
                     for v in column.tolist()], pa.string())


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

    def joined(parts: list[Array]) -> Array:
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    if first.labels is not None:
        out["prediction"] = to_arrow(joined(list(map(_LABELS, results))))
    elif len(first.outputs) == 1:
        out["prediction"] = to_arrow(joined([next(iter(r.outputs.values())) for r in results]))
    else:
        out["prediction"] = pa.nulls(n, pa.string())
    if first.probabilities is not None and first.classes is not None:
        proba = joined(list(map(_PROBABILITIES, results)))
        proba = proba.astype(np.float64, copy=False)
        for i, cls in enumerate(first.classes):
            out[probability_column(cls)] = pa.array(np.ascontiguousarray(proba[:, i]))
    if first.labels is not None or len(first.outputs) > 1:
        for name in first.outputs:
            out[output_column(name)] = to_arrow(joined([r.outputs[name] for r in results]))
    return out


FIXED = [name for name, _ in PREDICTION_COLUMNS]

__all__ = ["group_events", "row_ids", "to_arrow", "to_table"]
