"""The plain JSON route for humans: ``POST /predict/{model}`` with one record or a list.

>>> # POST /predict/churn  {"tenure": 3, "plan": "basic"}
>>> # → {"model": "churn", "version": 7, "prediction_id": "…",
>>> #    "prediction": {"label": "yes", "probabilities": {"no": 0.2, "yes": 0.8}}}

A list of records answers ``"predictions": [...]`` in the same order.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.bundle.model import Model
from modelport.core.batch import Batch, Result
from modelport.errors import InvalidInputError


def decode(body: bytes, model: Model) -> tuple[Batch, bool]:
    """The batch and whether a single record (not a list) was sent."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
    if isinstance(payload, dict):
        return model.coerce([payload]), True
    if isinstance(payload, list):
        if payload and not all(isinstance(r, dict) for r in payload):
            raise InvalidInputError("send one record (an object) or a list of records")
        return model.coerce(payload), False
    raise InvalidInputError("send one record (an object) or a list of records")


def encode(result: Result, model: Model, name: str, single: bool, prediction_id: str) -> bytes:
    rows = result.to_records()
    body: dict[str, Any] = {"model": name, "version": model.version,
                            "prediction_id": prediction_id}
    if single:
        body["prediction"] = rows[0]
    else:
        body["predictions"] = rows
    return orjson.dumps(body)
