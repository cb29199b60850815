"""Alert rules: what to watch, when it counts as a problem, and the pure state machine of an alert.

Rules are written in YAML (``modelport monitor apply rules.yaml``)::

    rules:
      - name: churn-drift
        model: churn
        metric: drift_share          # see METRICS
        op: ">="
        threshold: 0.3
        window: 1h
        for: 10m                     # the condition must hold this long before it fires
        severity: critical
        labels: {team: growth}
        notify: [slack-growth, pagerduty]
        retrain: retrain-churn       # optional: a trigger from the ``triggers:`` section

A rule is evaluated against one value per evaluation (the monitor computes it over ``window``);
``AlertState.step(holds, now)`` is the Prometheus alert life cycle, pure and clock-injected:
inactive → pending (condition true, ``for`` not yet elapsed) → firing → resolved (condition
false again). Values that cannot be computed (too little data) leave the state as it is.

>>> rule = Rule.from_dict({"name": "p99", "model": "churn", "metric": "latency_p99_ms",
...                        "op": ">", "threshold": 50, "for": "1m"})
>>> state = AlertState()
>>> state.step(rule, True, 0.0).status, state.step(rule, True, 30.0).status
('pending', 'pending')
>>> state.step(rule, True, 60.0).status, state.step(rule, False, 90.0).status
('firing', 'resolved')
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelport.durations import parse_duration
from modelport.errors import ConfigurationError

#: metric name → what it measures; a rule naming any other metric is refused
METRICS: dict[str, str] = {
    "drift_share": "share of the model's features that drift in the window (0 to 1)",
    "feature_drift": "the deciding drift value of one feature (needs `feature`)",
    "psi": "population stability index of one feature (needs `feature`)",
    "prediction_drift": "the deciding drift value of the model's prediction distribution",
    "accuracy": "accuracy over predictions with feedback in the window",
    "roc_auc": "ROC AUC over predictions with feedback in the window",
    "log_loss": "log loss over predictions with feedback in the window",
    "mae": "mean absolute error over predictions with feedback in the window",
    "rmse": "root mean squared error over predictions with feedback in the window",
    "error_rate": "share of failed requests in the window (0 to 1)",
    "latency_p99_ms": "99th percentile of prediction latency in the window, milliseconds",
    "throughput_per_min": "predictions per minute in the window",
    "feedback_coverage": "share of predictions in the window that have feedback (0 to 1)",
    "log_drops": "prediction-log events dropped in the window",
    "canary_rollbacks": "automatic canary rollbacks of the model's endpoints in the window",
    "concept_drift": "1 when a change detector (`detector`, default adwin) reading ten "
                     "windows of prediction errors from feedback finds a change in the last "
                     "window, else 0",
}
#: metrics that are about one feature and need ``feature:``
FEATURE_METRICS = {"feature_drift", "psi"}
SEVERITIES = ("critical", "error", "warning", "info")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Rule:
    """One alert rule; build it with :meth:`from_dict` (which validates)."""

    name: str
    model: str
    metric: str
    op: str
    threshold: float
    window_s: float = 3600.0
    for_s: float = 0.0
    severity: str = "warning"
    feature: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    notify: tuple[str, ...] = ()
    retrain: str | None = None
    #: River change detector of ``concept_drift`` (modelport.monitor.concept)
    detector: str = "adwin"

    def holds(self, value: float) -> bool:
        """Whether ``value`` breaks the rule."""
        return OPS[self.op](value, self.threshold)

    @property
    def alert_labels(self) -> dict[str, str]:
        """The labels every alert of this rule carries (grouping and dedup use them)."""
        out = {"alertname": self.name, "model": self.model, "metric": self.metric,
               "severity": self.severity}
        if self.feature:
            out["feature"] = self.feature
        return {**out, **self.labels}

    def describe(self, value: float | None) -> str:
        if self.summary:
            return self.summary.format(value=value, threshold=self.threshold, model=self.model,
                                       feature=self.feature or "", metric=self.metric)
        what = f"{self.metric}[{self.feature}]" if self.feature else self.metric
        shown = "n/a" if value is None else f"{value:.4g}"
        return f"{self.model}: {what} = {shown} ({self.op} {self.threshold:g})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        if not isinstance(data, Mapping):
            raise ConfigurationError("each rule must be a mapping with name, model, metric, "
                                     "op and threshold")
        known = {"name", "model", "metric", "op", "threshold", "window", "for", "severity",
                 "feature", "labels", "summary", "notify", "retrain", "detector"}
        unknown = sorted(set(data) - known)
        name = str(data.get("name", ""))
        where = f"rule {name!r}" if name else "a rule"
        if unknown:
            raise ConfigurationError(f"{where} has unknown field(s) {unknown}; known: "
                                     f"{sorted(known)}")
        for key in ("name", "model", "metric", "threshold"):
            if data.get(key) in (None, ""):
                raise ConfigurationError(f"{where} needs `{key}`")
        if not _NAME.match(name):
            raise ConfigurationError(f"rule name {name!r} must be letters, digits, '.', '_' "
                                     "or '-' (up to 128)")
        metric = str(data["metric"])
        if metric not in METRICS:
            raise ConfigurationError(
                f"{where}: unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")
        feature = data.get("feature")
        if metric in FEATURE_METRICS and not feature:
            raise ConfigurationError(f"{where}: metric {metric} needs `feature`")
        op = str(data.get("op", ">"))
        if op not in OPS:
            raise ConfigurationError(f"{where}: op must be one of {', '.join(OPS)}, not {op!r}")
        try:
            threshold = float(data["threshold"])
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{where}: threshold must be a number, not {data['threshold']!r}") from None
        severity = str(data.get("severity", "warning"))
        if severity not in SEVERITIES:
            raise ConfigurationError(
                f"{where}: severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        labels = data.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ConfigurationError(f"{where}: labels must be a mapping of strings")
        notify = data.get("notify") or []
        if isinstance(notify, str):
            notify = [notify]
        detector = str(data.get("detector", "adwin"))
        from modelport.monitor.concept import DETECTORS

        if detector not in DETECTORS:
            raise ConfigurationError(f"{where}: unknown detector {detector!r}; use one of "
                                     f"{', '.join(DETECTORS)}")
        window = parse_duration(data.get("window", "1h"), what=f"{where}: window")
        if window <= 0:
            raise ConfigurationError(f"{where}: window must be longer than zero")
        return cls(
            name=name, model=str(data["model"]), metric=metric, op=op, threshold=threshold,
            window_s=window, for_s=parse_duration(data.get("for", 0), what=f"{where}: for"),
            severity=severity, feature=str(feature) if feature else None,
            labels={str(k): str(v) for k, v in labels.items()},
            summary=str(data.get("summary", "")), notify=tuple(str(n) for n in notify),
            retrain=str(data["retrain"]) if data.get("retrain") else None,
            detector=detector,
        )


Status = Literal["inactive", "pending", "firing", "resolved"]


@dataclass(frozen=True)
class Transition:
    """What one evaluation changed: the new status and whether people should hear of it."""

    status: Status
    changed: bool
    #: the alert started firing at this time (kept while it fires and in the resolve)
    active_since: float | None = None

    @property
    def notify(self) -> bool:
        return self.changed and self.status in ("firing", "resolved")


@dataclass
class AlertState:
    """The life cycle of one rule's alert (Prometheus semantics), advanced by :meth:`step`."""

    status: Status = "inactive"
    since: float | None = None  # when the condition started holding
    fired_at: float | None = None

    def step(self, rule: Rule, holds: bool | None, now: float) -> Transition:
        """Advance with this evaluation's outcome; ``holds=None`` means "no data": no change."""
        before = self.status
        if holds is None:
            return Transition(self.status, False, self.fired_at)
        if holds:
            if self.status in ("inactive", "resolved"):
                self.status, self.since, self.fired_at = "pending", now, None
            since = now if self.since is None else self.since
            if self.status == "pending" and now - since >= rule.for_s:
                self.status, self.fired_at = "firing", now
        else:
            if self.status == "firing":
                self.status = "resolved"
            elif self.status == "pending":
                self.status, self.since = "inactive", None
        return Transition(self.status, self.status != before, self.fired_at)


def load_rules(document: Mapping[str, Any]) -> list[Rule]:
    """The ``rules:`` list of a parsed YAML document; names must be unique."""
    items = document.get("rules") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise ConfigurationError("the rules file needs a top-level `rules:` list")
    rules = [Rule.from_dict(item) for item in items]
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ConfigurationError(f"rule name {rule.name!r} appears twice; names are unique")
        seen.add(rule.name)
    return rules


__all__ = ["METRICS", "AlertState", "Rule", "Transition", "load_rules", "parse_duration"]
