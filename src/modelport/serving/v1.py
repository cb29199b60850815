"""KServe V1 (TensorFlow Serving style): ``POST /v1/models/{m}:predict``.

Requests carry ``{"instances": [...]}`` (one entry per row: a list of values in signature order,
or an object of named fields) or ``{"inputs": ...}`` (the same rows, or an object of columns).
The answer is ``{"predictions": [...]}``: one label (or value) per row, like KServe's own
scikit-learn server; tensor models with several outputs answer one object per row.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.bundle.model import Model
from modelport.core.batch import Batch, Result
from modelport.errors import InvalidInputError


def decode(body: bytes, model: Model) -> Batch:
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
    return model.coerce(data)


def encode(result: Result) -> bytes:
    if result.labels is not None:
        predictions: Any = result.labels
        if predictions.dtype.kind in "OUS":
            predictions = predictions.tolist()
    else:
        predictions = result.to_records()
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
