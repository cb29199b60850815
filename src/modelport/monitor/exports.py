"""What the monitor shows to Prometheus and Grafana: its own metrics, a dashboard, alert rules.

``MonitorMetrics`` (served by ``modelport monitor run --metrics-port``) has stable names:

=============================================== =====================================
metric                                          labels
=============================================== =====================================
``modelport_monitor_rule_value``                rule, model, metric (last computed value)
``modelport_alert_state``                       rule, model, severity (0 ok, 1 pending,
                                                2 firing)
``modelport_monitor_evaluations_total``         status
``modelport_monitor_notifications_total``       receiver, status
``modelport_model_quality``                     model, version, metric (accuracy, roc_auc,
                                                mae, rmse, feedback_coverage)
=============================================== =====================================

``grafana_dashboard()`` is a Grafana dashboard (JSON model, schema 39) over these, the serving
and stream metrics and the live drift gauges; ``prometheus_rules(config)`` turns the applied
rules into Prometheus alerting rules on ``modelport_monitor_rule_value`` (every rule, whatever
its source) so teams on Alertmanager get the same alerts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelport.monitor.config import MonitorConfig
from modelport.monitor.dispatch import Delivery
from modelport.monitor.evaluate import Evaluation
from modelport.monitor.rules import Rule

STATE_VALUE = {"inactive": 0, "resolved": 0, "pending": 1, "firing": 2}


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.value = Gauge("modelport_monitor_rule_value",
                           "The last value of each alert rule's metric.",
                           ["rule", "model", "metric"], registry=registry)
        self.state = Gauge("modelport_alert_state",
                           "Alert state per rule: 0 ok, 1 pending, 2 firing.",
                           ["rule", "model", "severity"], registry=registry)
        self.evaluations = Counter("modelport_monitor_evaluations",
                                   "Rule evaluations, by outcome.", ["status"],
                                   registry=registry)
        self.notifications = Counter("modelport_monitor_notifications",
                                     "Alert messages sent, by receiver and outcome.",
                                     ["receiver", "status"], registry=registry)
        self.quality = Gauge("modelport_model_quality",
                             "Quality per model version over the monitor's window, from "
                             "logged feedback.", ["model", "version", "metric"],
                             registry=registry)

    def observe(self, rule: Rule, evaluation: Evaluation) -> None:
        """``Monitor(on_evaluation=...)``."""
        if evaluation.value is not None:
            self.value.labels(rule.name, rule.model, rule.metric).set(evaluation.value)
        self.state.labels(rule.name, rule.model, rule.severity).set(
            STATE_VALUE.get(evaluation.status, 0))
        self.evaluations.labels("error" if evaluation.error else "ok").inc()

    def delivered(self, delivery: Delivery) -> None:
        self.notifications.labels(delivery.receiver, "ok" if delivery.ok else "failed").inc()


# ---------------------------------------------------------------------------------- Grafana
def _panel(pid: int, title: str, exprs: list[tuple[str, str]], x: int, y: int, *,
           kind: str = "timeseries", unit: str = "short", w: int = 12,
           h: int = 8) -> dict[str, Any]:
    return {
        "id": pid, "type": kind, "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(exprs)],
    }


#: (title, [(PromQL, legend)], unit, kind) — one row of two panels per pair
PANELS: list[tuple[str, list[tuple[str, str]], str, str]] = [
    ("Requests per second",
     [('sum by (model, protocol) (rate(modelport_requests_total{model=~"$model"}[5m]))',
       "{{model}} {{protocol}}")], "reqps", "timeseries"),
    ("Errors per second",
     [('sum by (model, status) (rate(modelport_requests_total{model=~"$model",'
       'status=~"5..|INTERNAL|UNAVAILABLE|UNKNOWN"}[5m]))', "{{model}} {{status}}")],
     "reqps", "timeseries"),
    ("Latency p50 / p99",
     [('histogram_quantile(0.5, sum by (le, model) '
       '(rate(modelport_request_duration_seconds_bucket{model=~"$model"}[5m])))',
       "p50 {{model}}"),
      ('histogram_quantile(0.99, sum by (le, model) '
       '(rate(modelport_request_duration_seconds_bucket{model=~"$model"}[5m])))',
       "p99 {{model}}")], "s", "timeseries"),
    ("Rows per model call (median)",
     [('histogram_quantile(0.5, sum by (le, model) '
       '(rate(modelport_batch_rows_bucket{model=~"$model"}[5m])))', "{{model}}")],
     "short", "timeseries"),
    ("Feature drift (PSI, live)",
     [('max by (model, feature) (modelport_drift_psi{model=~"$model"})',
       "{{model}} {{feature}}")], "short", "heatmap"),
    ("Share of drifting features",
     [('max by (model, version) (modelport_drift_share{model=~"$model"})',
       "{{model}}:{{version}}")], "percentunit", "timeseries"),
    ("Quality per version",
     [('modelport_model_quality{model=~"$model"}', "{{model}}:{{version}} {{metric}}")],
     "short", "timeseries"),
    ("Alert states",
     [('max by (rule, severity) (modelport_alert_state{model=~"$model"})',
       "{{rule}} ({{severity}})")], "short", "state-timeline"),
    ("Prediction log: rows written / dropped",
     [('sum by (model) (rate(modelport_log_rows_written_total{model=~"$model"}[5m]))',
       "written {{model}}"),
      ('sum by (model) (rate(modelport_log_dropped_rows_total{model=~"$model"}[5m]))',
       "dropped {{model}}")], "short", "timeseries"),
    ("Stream: messages in / out and lag",
     [("sum(rate(modelport_stream_messages_in_total[5m]))", "in"),
      ("sum(rate(modelport_stream_messages_out_total[5m]))", "out"),
      ("sum by (topic) (modelport_stream_consumer_lag)", "lag {{topic}}")],
     "short", "timeseries"),
]


def grafana_dashboard(*, title: str = "modelport", uid: str = "modelport") -> dict[str, Any]:
    import modelport

    panels = [_panel(i + 1, t, exprs, (i % 2) * 12, (i // 2) * 8, kind=kind, unit=unit)
              for i, (t, exprs, unit, kind) in enumerate(PANELS)]
    return {
        "title": title, "uid": uid, "schemaVersion": 39, "version": 1, "editable": True,
        "tags": ["modelport"], "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "description": f"made by modelport {getattr(modelport, '__version__', '')}".strip(),
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus"},
            {"name": "model", "type": "query", "label": "model", "includeAll": True,
             "multi": True, "allValue": ".*",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(modelport_requests_total, model)",
                       "refId": "models"},
             "definition": "label_values(modelport_requests_total, model)"},
        ]},
        "panels": panels,
    }


def dashboard_metric_names(dashboard: dict[str, Any]) -> set[str]:
    """Every metric name a dashboard's queries read (for checking them against a scrape)."""
    import re

    names: set[str] = set()
    pattern = re.compile(r"\b(modelport_[a-z_]+|process_[a-z_]+)\b")
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names.update(pattern.findall(target["expr"]))
    for variable in dashboard["templating"]["list"]:
        names.update(pattern.findall(str(variable.get("definition", ""))))
    return names


# ---------------------------------------------------------------------------------- rules
def prometheus_rules(config: MonitorConfig) -> dict[str, Any]:
    """Prometheus alerting rules equivalent to the monitor's (``rule_files:`` format)."""
    rules = []
    for rule in config.rules:
        selector = f'modelport_monitor_rule_value{{rule="{rule.name}"}}'
        rules.append({
            "alert": rule.name,
            "expr": f"{selector} {rule.op} {rule.threshold:g}",
            "for": f"{int(rule.for_s)}s",
            "labels": {k: v for k, v in rule.alert_labels.items() if k != "alertname"},
            "annotations": {"summary": rule.summary or rule.describe(None).replace(
                "n/a", "{{ $value }}")},
        })
    return {"groups": [{"name": "modelport", "rules": rules}]}


__all__ = ["MonitorMetrics", "dashboard_metric_names", "grafana_dashboard", "prometheus_rules"]
