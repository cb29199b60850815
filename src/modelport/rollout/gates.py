"""CI/CD gates: is a candidate model at least as good as the one in production, and not slower?

``validate`` scores both models on the same hold-out data, compares a metric (higher is better
for scores, lower for errors) and their prediction latency, and answers a ``GateReport`` whose
``passed`` a pipeline acts on (``modelport validate`` exits non-zero when it is false;
``modelport promote --if-better`` moves the alias only when it is true).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from modelport.bundle.model import Model
    from modelport.registry import Registry

#: metric name → (needs probabilities, higher is better)
METRICS: dict[str, tuple[bool, bool]] = {
    "accuracy": (False, True), "balanced_accuracy": (False, True), "f1": (False, True),
    "precision": (False, True), "recall": (False, True), "roc_auc": (True, True),
    "log_loss": (True, False), "r2": (False, True), "rmse": (False, False),
    "mae": (False, False),
}


@dataclass(frozen=True)
class GateReport:
    """The comparison and the verdict; ``reasons`` say why a gate failed."""

    candidate: str
    baseline: str
    metric: str
    candidate_score: float
    baseline_score: float
    delta: float
    min_delta: float
    latency_ratio: float
    max_latency_ratio: float | None
    rows: int
    passed: bool
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "baseline": self.baseline, "metric": self.metric,
                "candidate_score": self.candidate_score, "baseline_score": self.baseline_score,
                "delta": self.delta, "min_delta": self.min_delta,
                "latency_ratio": self.latency_ratio,
                "max_latency_ratio": self.max_latency_ratio, "rows": self.rows,
                "passed": self.passed, "reasons": list(self.reasons)}

    def render(self) -> str:
        better = "higher" if METRICS[self.metric][1] else "lower"
        lines = [
            f"{'PASSED' if self.passed else 'FAILED'}: {self.candidate} vs {self.baseline} on "
            f"{self.rows} rows",
            f"  {self.metric} ({better} is better): candidate {self.candidate_score:.6g}, "
            f"baseline {self.baseline_score:.6g}, improvement {self.delta:+.6g} "
            f"(required >= {self.min_delta:g})",
            f"  latency ratio candidate/baseline {self.latency_ratio:.3f}"
            + (f" (allowed <= {self.max_latency_ratio:g})"
               if self.max_latency_ratio is not None else ""),
        ]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def read_data(path: str) -> pd.DataFrame:
    """A hold-out table from Parquet or CSV."""
    import pandas as pd

    file = Path(path)
    if not file.exists():
        raise ConfigurationError(f"hold-out data {path!r} does not exist; pass --data FILE")
    if file.suffix in (".csv", ".txt"):
        return pd.read_csv(file)
    return pd.read_parquet(file)


def score(model: Model, frame: pd.DataFrame, label: str, metric: str) -> float:
    from sklearn import metrics as skm

    proba_needed, _ = METRICS[metric]
    y = frame[label].to_numpy()
    x = frame.drop(columns=[label])
    if proba_needed:
        if not model.has_proba:
            raise ConfigurationError(f"{metric} needs probabilities; {model.ref} gives none — "
                                     "choose --metric accuracy or f1")
        proba = np.asarray(model.predict_proba(x))
        classes = list(model.signature.classes or range(proba.shape[1]))
        if metric == "log_loss":
            return float(skm.log_loss(y, proba, labels=classes))
        if proba.shape[1] == 2:
            return float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    pred = np.asarray(model.predict(x))
    if metric in ("r2", "rmse", "mae"):
        if metric == "r2":
            return float(skm.r2_score(y, pred))
        if metric == "mae":
            return float(skm.mean_absolute_error(y, pred))
        return float(np.sqrt(skm.mean_squared_error(y, pred)))
    scorers: dict[str, Callable[..., float]] = {
        "accuracy": skm.accuracy_score, "balanced_accuracy": skm.balanced_accuracy_score}
    if metric in scorers:
        return float(scorers[metric](y, pred))
    fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
    average = "binary" if len(np.unique(y)) <= 2 else "macro"
    pos = model.signature.classes[-1] if (average == "binary" and model.signature.classes) else 1
    kwargs: dict[str, Any] = {"average": average}
    if average == "binary":
        kwargs["pos_label"] = pos
    return float(fn(y, pred, **kwargs))


def latency_ms(model: Model, frame: pd.DataFrame, *, repeats: int = 5,
               rows: int = 64) -> float:
    """Median time of one prediction call on ``rows`` rows (after a warm-up call)."""
    sample = frame.head(rows)
    model.predict(sample)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(sample)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def validate(registry: Registry, candidate: str, against: str, data: str | pd.DataFrame, *,
             label: str, metric: str = "accuracy", min_delta: float = 0.0,
             max_latency_ratio: float | None = None, trusted: bool = False) -> GateReport:
    """Score ``candidate`` and ``against`` (references or bundle directories) on ``data``."""
    if metric not in METRICS:
        raise ConfigurationError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    frame = read_data(data) if isinstance(data, str) else data
    if label not in frame.columns:
        raise InvalidInputError(f"the hold-out data has no label column {label!r} (columns: "
                                f"{', '.join(map(str, frame.columns[:10]))}); pass --label",
                                field=label)
    cand, base = _load(registry, candidate, trusted), _load(registry, against, trusted)
    cs, bs = score(cand, frame, label, metric), score(base, frame, label, metric)
    higher = METRICS[metric][1]
    delta = cs - bs if higher else bs - cs
    base_ms = latency_ms(base, frame.drop(columns=[label]))
    ratio = latency_ms(cand, frame.drop(columns=[label])) / base_ms if base_ms > 0 else 1.0
    reasons = []
    if delta < min_delta:
        reasons.append(f"{metric} improves by {delta:+.6g}, less than the required {min_delta:g}")
    if max_latency_ratio is not None and ratio > max_latency_ratio:
        reasons.append(f"the candidate takes {ratio:.2f}x the baseline's time "
                       f"(allowed {max_latency_ratio:g}x)")
    return GateReport(cand.ref, base.ref, metric, cs, bs, delta, min_delta, ratio,
                      max_latency_ratio, len(frame), not reasons, tuple(reasons))


def _load(registry: Registry, ref: str, trusted: bool) -> Model:
    path = Path(ref)
    if path.is_dir():
        from modelport.bundle.model import load_bundle

        return load_bundle(path, trusted=trusted)
    return registry.load(ref, trusted=trusted)


__all__ = ["METRICS", "GateReport", "read_data", "validate"]
