"""Feedback items (labels, values, rewards): parsed, checked against the model, stored.

One item names its prediction by ``prediction_id``, or by ``entity_key`` (+ ``at``, the outcome's
time, default now, and ``window``, how far back the prediction may be, default one day), and
carries a ``label`` (classifiers), a ``value`` (regressors) and / or a ``reward`` (bandits)::

    {"prediction_id": "9f3c…", "label": "yes"}
    {"entity_key": "customer-42", "model": "churn", "at": "2026-12-04T17:00:00Z",
     "window": "2h", "label": "no"}

Every surface (``POST /feedback``, the gRPC call, ``modelport feedback consume|load``, Python
``modelport.feedback``) goes through :func:`parse_items`, so a wrong item is refused with the
same message everywhere, naming the field (``items[3].label``). Items are stored as they come;
the join with predictions happens when reading (:mod:`modelport.log.views`), so feedback that
arrives before its prediction is flushed, or for an id not logged yet, is kept and matched later.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from modelport.bundle.signature import Signature
from modelport.errors import InvalidInputError
from modelport.log.schema import DEFAULT_WINDOW_S, FEEDBACK_SCHEMA

_KEYS = {"prediction_id", "entity_key", "at", "window", "label", "value", "reward", "model"}
#: how a surface finds a model's signature to check labels (``None``: model unknown here)
SignatureOf = Callable[[str], Signature | None]


@dataclass(frozen=True)
class FeedbackItem:
    prediction_id: str | None = None
    label: str | None = None
    value: float | None = None
    reward: float | None = None
    entity_key: str | None = None
    at: datetime | None = None
    window_s: float | None = None
    model: str | None = None


def parse_items(payload: Any, *, signature_of: SignatureOf | None = None,
                default_model: str | None = None) -> list[FeedbackItem]:
    """Items from a JSON value: one object, a list of objects, or ``{"items": [...]}``."""
    prefix = "items"
    if isinstance(payload, Mapping) and "items" in payload and len(payload) == 1:
        payload = payload["items"]
    if isinstance(payload, Mapping):
        return [parse_item(payload, "", signature_of, default_model)]
    if not isinstance(payload, list) or not payload:
        raise InvalidInputError(
            "send one feedback object or a non-empty list of them, e.g. "
            '{"prediction_id": "…", "label": "yes"}', field=prefix)
    return [parse_item(item, f"{prefix}[{i}].", signature_of, default_model)
            for i, item in enumerate(payload)]


def parse_item(item: Any, where: str = "", signature_of: SignatureOf | None = None,
               default_model: str | None = None) -> FeedbackItem:
    if not isinstance(item, Mapping):
        raise InvalidInputError(f"feedback item {where.rstrip('.') or 'body'} must be an object",
                                field=where.rstrip(".") or None)
    unknown = set(item) - _KEYS
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInputError(
            f"unknown field {where}{name} in feedback; known fields: {', '.join(sorted(_KEYS))}",
            field=f"{where}{name}")
    pid = _text(item.get("prediction_id"), f"{where}prediction_id")
    entity = _text(item.get("entity_key"), f"{where}entity_key", allow_number=True)
    if pid is None and entity is None:
        raise InvalidInputError(
            f"feedback item {where.rstrip('.') or ''} needs prediction_id or entity_key".replace(
                "item  ", "item "), field=f"{where}prediction_id")
    model = _text(item.get("model"), f"{where}model") or default_model
    value = _number(item.get("value"), f"{where}value")
    reward = _number(item.get("reward"), f"{where}reward")
    raw_label = item.get("label")
    if raw_label is None and value is None and reward is None:
        raise InvalidInputError(
            f"feedback item needs a label, a value or a reward ({where}label)",
            field=f"{where}label")
    signature = signature_of(model) if (signature_of is not None and model) else None
    label = None
    if raw_label is not None:
        label, as_value = check_label(raw_label, signature, model, f"{where}label")
        if as_value is not None and value is None:
            value = as_value
    at = _time(item.get("at"), f"{where}at")
    window = _duration(item.get("window"), f"{where}window")
    return FeedbackItem(prediction_id=pid, label=label, value=value, reward=reward,
                        entity_key=entity, at=at, window_s=window, model=model)


def check_label(raw: Any, signature: Signature | None, model: str | None,
                field: str) -> tuple[str, float | None]:
    """The label as stored text (and as a value, for regressors); refuses a label whose type
    does not fit the model (``InvalidInputError`` naming ``field``)."""
    if isinstance(raw, (dict, list)):
        raise InvalidInputError(f"{field} must be a single value, not {type(raw).__name__}",
                                field=field)
    if signature is not None and signature.task == "regression":
        number = _number(raw, field)
        assert number is not None
        return label_text(number), number
    if signature is not None and signature.classes:
        classes = signature.classes
        kinds = {_kind(c) for c in classes}
        if _kind(raw) not in kinds:
            raise InvalidInputError(
                f"{field} {raw!r} is a {_kind(raw)}, but model {model} predicts "
                f"{'/'.join(sorted(kinds))} classes {list(classes)[:10]}", field=field)
        if raw not in classes:
            raise InvalidInputError(
                f"{field} {raw!r} is not a class of model {model}; classes: "
                f"{list(classes)[:20]}", field=field)
    number = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    return label_text(raw), number


def _kind(value: Any) -> str:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)) or hasattr(value, "dtype"):
        return "number"
    return type(value).__name__


def label_text(value: Any) -> str:
    """How a label is stored: text as it is, booleans as ``true``/``false``, numbers plainly
    (``1``, not ``1.0``, for whole numbers)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _text(value: Any, field: str, *, allow_number: bool = False) -> str | None:
    if value is None:
        return None
    if allow_number and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidInputError(f"{field} must be a non-empty string (at most 256 characters)",
                                field=field)
    return value


def _number(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{field} must be a number, not {value!r}", field=field)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{field} must be a finite number", field=field)
    return number


def _time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InvalidInputError(
        f"{field} must be an ISO 8601 time (2026-12-04T17:00:00Z) or epoch seconds", field=field)


def _duration(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        from modelport.log.delta import parse_duration

        try:
            return parse_duration(value)
        except Exception:
            pass
    raise InvalidInputError(f"{field} must be a duration such as 3600, '2h' or '7d'",
                            field=field)


def to_table(items: Sequence[FeedbackItem], *, source: str,
             received_at: datetime | None = None) -> pa.Table:
    """Items as rows of the feedback table (``FEEDBACK_SCHEMA``)."""
    now = received_at or datetime.now(UTC)
    n = len(items)
    return pa.table({
        "prediction_id": [i.prediction_id for i in items],
        "model": [i.model for i in items],
        "entity_key": [i.entity_key for i in items],
        "at": pa.array([i.at if i.at is not None or i.entity_key is None else now
                        for i in items], pa.timestamp("us", tz="UTC")),
        "window_s": [i.window_s if i.window_s is not None or i.entity_key is None
                     else DEFAULT_WINDOW_S for i in items],
        "label": [i.label for i in items],
        "value": pa.array([i.value for i in items], pa.float64()),
        "reward": pa.array([i.reward for i in items], pa.float64()),
        "received_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "source": [source] * n,
        "date": [now.strftime("%Y-%m-%d")] * n,
    }, schema=FEEDBACK_SCHEMA)


def items_from_rows(rows: Iterable[Mapping[str, Any]], *, signature_of: SignatureOf | None = None,
                    default_model: str | None = None) -> list[FeedbackItem]:
    """Items from table rows (files, SQL tables): columns named like the item fields; empty
    cells are absent fields."""
    out = []
    for i, row in enumerate(rows):
        clean = {k: v for k, v in row.items() if k in _KEYS and not _missing(v)}
        out.append(parse_item(clean, f"row {i}: ", signature_of, default_model))
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


__all__ = ["FeedbackItem", "check_label", "items_from_rows", "label_text", "parse_item",
           "parse_items", "to_table"]
