"""Live model quality from the log: predictions joined with their feedback, per group and window.

``quality(store, "churn", by=("version",), window_s=3600)`` answers one row per version and hour:
``predictions``, ``labeled``, ``coverage`` (share of predictions with feedback) and

* for classifiers: ``accuracy``, ``precision``, ``recall`` (of the positive class, the last class,
  for two classes; macro averages for more), ``roc_auc`` and ``log_loss`` (from the logged
  probabilities);
* for regressors: ``mae``, ``rmse``, ``r2``.

The metrics are scikit-learn's (``sklearn.metrics``); a metric a group cannot have (ROC AUC with
one class among the labels, R² of one row) is null.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from modelport.errors import ConfigurationError
from modelport.log.store import LogStore

Task = Literal["auto", "classification", "regression"]
CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "roc_auc", "log_loss")
REGRESSOR_METRICS = ("mae", "rmse", "r2")
_GROUPABLE = {"version", "endpoint", "variant", "source", "model", "date"}


def quality(store: LogStore, model: str, *, by: Sequence[str] = ("version",),
            window_s: float | None = None, since: datetime | None = None,
            until: datetime | None = None, task: Task = "auto") -> pa.Table:
    """Quality per group (``by`` columns, plus a ``window`` start when ``window_s``)."""
    from modelport.log.views import connect

    unknown = [b for b in by if b not in _GROUPABLE]
    if unknown:
        raise ConfigurationError(
            f"cannot group by {', '.join(unknown)}; choose from {', '.join(sorted(_GROUPABLE))} "
            "(modelport log metrics --by)")
    con = connect(store, model=model, since=since, until=until)
    try:
        columns = [r[0] for r in con.execute("DESCRIBE labeled").fetchall()]
        probas = [c for c in columns if c.startswith("probability_")]
        keys = list(by)
        select = [f'"{k}"' for k in keys]
        if window_s:
            select.append(f"time_bucket(to_seconds({float(window_s)}), predicted_at) AS window")
            keys.append("window")
        cols = ", ".join([*select, "prediction", "label", "label_value",
                          *[f'"{p}"' for p in probas]])
        frame = con.sql(f"SELECT {cols} FROM labeled").to_arrow_table().to_pandas()
    finally:
        con.close()
    if task == "auto":
        task = _task_of(frame, probas)
    rows: list[dict[str, Any]] = []
    groups = frame.groupby(keys, dropna=False, sort=True) if keys else [((), frame)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row.update(_metrics(part, task, probas))
        rows.append(row)
    return pa.Table.from_pylist(rows)


def _task_of(frame: Any, probas: list[str]) -> Task:
    if probas:
        return "classification"
    kind = frame["prediction"].dtype.kind if len(frame) else "f"
    return "regression" if kind == "f" else "classification"


def _metrics(part: Any, task: Task, probas: list[str]) -> dict[str, Any]:
    from sklearn import metrics

    n = len(part)
    if task == "regression":
        truth = part["label_value"].astype("float64")
        if truth.isna().all():
            truth = part["label"].astype("float64")
        mask = truth.notna().to_numpy()
        y_true = truth.to_numpy()[mask]
        y_pred = part["prediction"].astype("float64").to_numpy()[mask]
        out: dict[str, Any] = _counts(n, int(mask.sum()))
        out["mae"] = _safe(metrics.mean_absolute_error, y_true, y_pred)
        out["rmse"] = _safe(metrics.root_mean_squared_error, y_true, y_pred)
        out["r2"] = _safe(metrics.r2_score, y_true, y_pred) if len(y_true) > 1 else None
        return out
    mask = part["label"].notna().to_numpy()
    y_true = part["label"].to_numpy()[mask]
    y_pred = part["prediction"].to_numpy()[mask]
    if y_pred.dtype.kind in "iubf":  # labels read back as float / nullable: the class dtype
        y_true = y_true.astype(y_pred.dtype)
    out = _counts(n, int(mask.sum()))
    out["accuracy"] = _safe(metrics.accuracy_score, y_true, y_pred)
    classes = [c[len("probability_"):] for c in probas]
    proba = part[probas].to_numpy(dtype="float64")[mask] if probas else None
    labels_text = np.array([str(v) for v in y_true], dtype=object)
    if len(classes) == 2 or (not classes and len(set(y_true.tolist()) | set(y_pred.tolist())) <= 2):
        positive = _positive(classes, y_true, y_pred)
        out["precision"] = _safe(metrics.precision_score, y_true, y_pred, pos_label=positive,
                                 zero_division=0)
        out["recall"] = _safe(metrics.recall_score, y_true, y_pred, pos_label=positive,
                              zero_division=0)
        if proba is not None:
            out["roc_auc"] = _safe(metrics.roc_auc_score, labels_text == classes[1],
                                   proba[:, 1])
            out["log_loss"] = _safe(metrics.log_loss, labels_text, proba, labels=classes)
    else:
        out["precision"] = _safe(metrics.precision_score, y_true, y_pred, average="macro",
                                 zero_division=0)
        out["recall"] = _safe(metrics.recall_score, y_true, y_pred, average="macro",
                              zero_division=0)
        if proba is not None:
            out["roc_auc"] = _safe(metrics.roc_auc_score, labels_text, proba,
                                   multi_class="ovr", labels=classes)
            out["log_loss"] = _safe(metrics.log_loss, labels_text, proba, labels=classes)
    for name in CLASSIFIER_METRICS:
        out.setdefault(name, None)
    return out


def _positive(classes: list[str], y_true: Any, y_pred: Any) -> Any:
    values = sorted(set(y_true.tolist()) | set(y_pred.tolist()), key=str)
    if classes:
        for value in values:
            if str(value) == classes[-1]:
                return value
        kind = type(values[0]) if values else str
        try:
            return kind(classes[-1])
        except (TypeError, ValueError):
            return classes[-1]
    return values[-1] if values else 1


def _counts(n: int, labeled: int) -> dict[str, Any]:
    return {"predictions": n, "labeled": labeled, "coverage": labeled / n if n else None}


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float | None:
    if len(args[0]) == 0:
        return None
    try:
        with warnings.catch_warnings():  # a one-class group: the metric is null, not a warning
            warnings.simplefilter("ignore")
            value = float(fn(*args, **kwargs))
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


__all__ = ["CLASSIFIER_METRICS", "REGRESSOR_METRICS", "quality"]
