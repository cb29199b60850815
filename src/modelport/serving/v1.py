"""KServe V1 (TensorFlow Serving style): ``POST /v1/models/{m}:predict``.

Requests carry ``{"instances": [...]}`` (one entry per row: a list of values in signature order,
or an object of named fields) or ``{"inputs": ...}`` (the same rows, or an object of columns).
The answer is ``{"predictions": [...]}``: one label (or value) per row, like KServe's own
scikit-learn server; tensor models with several outputs answer one object per row.

Fields the signature does not name follow ``--extra-columns`` (as on every surface): ``refuse``
answers 400 naming the field, ``ignore`` (the default) drops it, and ``passthrough`` copies it
into each prediction when the predictions are objects (fields first, then the outputs). When the
predictions are plain labels or values, V1's shape has no room for them and passthrough behaves
as ``ignore``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from modelport.bundle.model import Model
from modelport.bundle.signature import DEFAULT_EXTRA, ExtraColumns
from modelport.core.batch import Batch, Result
from modelport.errors import InvalidInputError


@dataclass
class V1Request:
    """A request's batch and, under ``--extra-columns passthrough``, each row's extra fields."""

    batch: Batch
    passthrough: list[dict[str, Any]] | None = None


def decode(body: bytes, model: Model, extra: ExtraColumns = DEFAULT_EXTRA) -> Batch:
    return decode_request(body, model, extra).batch


def decode_request(body: bytes, model: Model, extra: ExtraColumns = DEFAULT_EXTRA
                   ) -> V1Request:
    payload = _json(body)
    if not isinstance(payload, dict):
        raise InvalidInputError("a V1 request is a JSON object with 'instances' or 'inputs'")
    if "instances" in payload:
        data = payload["instances"]
        if not isinstance(data, list):
            raise InvalidInputError("'instances' must be a list with one entry per row",
                                    field="instances")
    elif "inputs" in payload:
        data = payload["inputs"]
    else:
        raise InvalidInputError("a V1 request needs 'instances' (a list of rows) or 'inputs'")
    batch = model.coerce(data, extra=extra)
    if extra != "passthrough":
        return V1Request(batch)
    return V1Request(batch, _extra_fields(data, model.signature.extra_names, batch.n_rows))


def _extra_fields(data: Any, extra_names: Any, n_rows: int) -> list[dict[str, Any]] | None:
    """Each row's fields the signature does not name (rows as objects, or an object of columns)."""
    if isinstance(data, Mapping):
        names = extra_names(list(data))
        columns = {n: data[n] if isinstance(data[n], list) else [data[n]] for n in names}
        if not names or any(len(c) != n_rows for c in columns.values()):
            return None
        return [{n: columns[n][i] for n in names} for i in range(n_rows)]
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        names = list(dict.fromkeys(n for r in data for n in extra_names(list(r))))
        return [{n: r.get(n) for n in names} for r in data] if names else None
    return None


def encode(result: Result, request: V1Request | None = None) -> bytes:
    if result.labels is not None:
        predictions: Any = result.labels
        if predictions.dtype.kind in "OUS":
            predictions = predictions.tolist()
    else:
        predictions = result.to_records()
        passthrough = request.passthrough if request is not None else None
        if passthrough:
            names = set(passthrough[0])
            clash = next((k for k in predictions[0] if k in names), None) if predictions else None
            if clash is not None:
                raise InvalidInputError(
                    f"field {clash!r} is passed through (--extra-columns passthrough) but the "
                    "model has an output of that name; rename the field", field=clash)
            predictions = [{**fields, **row} for fields, row in zip(passthrough, predictions,
                                                                     strict=True)]
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
