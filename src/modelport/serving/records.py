"""The plain JSON route for humans: ``POST /predict/{model}`` with one record or a list.

Answers in the record form of :mod:`modelport.core.schema`:

>>> # POST /predict/churn  {"tenure": 3, "plan": "basic"}
>>> # → {"prediction_id": "4f…", "prediction": "yes", "probabilities": {"no": 0.2, "yes": 0.8},
>>> #    "model": "churn", "version": 7, "predicted_at": "2026-12-04T17:03:11.123456Z"}

A list of records answers ``{"model", "version", "predictions": [...]}`` in the same order, row
``i`` with the id ``<request id>-<i>``. Fields the signature does not name follow the server's
extra-column policy (``--extra-columns``): ignored, refused, or copied into each answer first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from modelport.bundle.model import Model
from modelport.bundle.signature import DEFAULT_EXTRA, ExtraColumns
from modelport.core.batch import Batch, Result
from modelport.core.schema import row_ids
from modelport.errors import InvalidInputError


@dataclass
class Decoded:
    """A request's batch, whether one record (not a list) came, and the passed-through fields."""

    batch: Batch
    single: bool
    passthrough: list[dict[str, Any]] | None = field(default=None)
    names: tuple[str, ...] = ()


def decode(body: bytes, model: Model, extra: ExtraColumns = DEFAULT_EXTRA) -> Decoded:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
    if isinstance(payload, dict):
        rows, single = [payload], True
    elif isinstance(payload, list):
        if payload and not all(isinstance(r, dict) for r in payload):
            raise InvalidInputError("send one record (an object) or a list of records")
        rows, single = payload, False
    else:
        raise InvalidInputError("send one record (an object) or a list of records")
    batch = model.coerce(rows, extra=extra)
    if extra != "passthrough":
        return Decoded(batch, single)
    names = list(dict.fromkeys(n for r in rows for n in model.signature.extra_names(list(r))))
    return Decoded(batch, single, [{n: r.get(n) for n in names} for r in rows], tuple(names))


def encode(result: Result, model: Model, name: str, request: Decoded | bool,
           prediction_id: str, *, now: datetime | None = None) -> bytes:
    """The answer for ``result``; ``prediction_id`` is the request's id (``P``)."""
    decoded = request if isinstance(request, Decoded) else None
    single = decoded.single if decoded is not None else bool(request)
    keys = decoded.names if decoded is not None else ()
    schema = model.prediction_schema(keys)
    moment = now or datetime.now(UTC)
    ids = row_ids(prediction_id, result.n_rows, single=single)
    passthrough = decoded.passthrough if decoded is not None else None
    if single:
        record = schema.records(result, ids=ids, model=name, version=model.version,
                                predicted_at=moment, keys=passthrough)[0]
        return orjson.dumps(record)
    rows = schema.records(result, ids=ids, predicted_at=moment, keys=passthrough)
    return orjson.dumps({"model": name, "version": model.version, "predictions": rows})
