"""``LogMetrics``: every rule metric computed from the prediction log (and the registry).

Each rule's value is computed over ``[now - window, now)`` of its model's logged predictions:

* drift (``drift_share``, ``feature_drift``, ``psi``, ``prediction_drift``) against the reference
  of the newest version in the window (``modelport.monitor.reference``). ``feature_drift`` and
  ``prediction_drift`` are a **drift score**: the deciding statistic over its threshold (a
  distance / threshold, or threshold / p-value), so 1 or more means "drifted" whatever test
  decided;
* quality (``accuracy``, ``roc_auc``, ``log_loss``, ``mae``, ``rmse``) from predictions joined
  with their feedback, with scikit-learn's metric functions;
* ``latency_p99_ms``, ``throughput_per_min``, ``feedback_coverage`` from the log rows;
* ``canary_rollbacks`` from the registry's audit log (automatic rollbacks of an endpoint named
  like the model, or serving it);
* ``error_rate`` and ``log_drops`` from a server's ``/metrics`` (``scrape_url``): the change of
  its counters since the previous evaluation.

Too little data gives ``None`` (the alert stays as it is); a model that is not logged at all is a
``NotFoundError`` with what to do.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from modelport.errors import ConfigurationError, ModelportError, NotFoundError
from modelport.monitor.drift import FeatureDrift, Reference, Thresholds, compare
from modelport.monitor.reference import References, table_columns
from modelport.monitor.rules import Rule

if TYPE_CHECKING:
    from modelport.registry import Registry

QUALITY = {"accuracy", "roc_auc", "log_loss", "mae", "rmse"}
DRIFT = {"drift_share", "feature_drift", "psi", "prediction_drift"}
#: fewest labelled rows before a quality value is given
MIN_LABELLED = 10
#: concept drift reads this many windows of history (a change needs a "before" to be seen)
CONCEPT_LOOKBACK = 10

LogReader = Callable[..., pa.Table]


def drift_score(feature: FeatureDrift) -> float | None:
    """≥ 1 means drifted: distance / threshold, or threshold / p-value."""
    if feature.method is None or feature.value is None or feature.threshold is None:
        return None
    if feature.method in ("ks", "chisquare"):
        return feature.threshold / max(feature.value, 1e-300)
    return feature.value / feature.threshold


def input_columns(table: pa.Table) -> dict[str, Any]:
    """The logged ``inputs`` struct as NumPy columns by feature name."""
    if "inputs" not in table.column_names:
        return {}
    inputs = table.column("inputs").combine_chunks()
    flat = pa.Table.from_arrays(inputs.flatten(), names=[f.name for f in inputs.type])
    return table_columns(flat)


class LogMetrics:
    """A ``MetricSource`` over the prediction log. The constructor only stores."""

    def __init__(self, registry: Registry, *, references: References | None = None,
                 read: LogReader | None = None, thresholds: Thresholds | None = None,
                 scrape_url: str | None = None, timeout: float = 5.0) -> None:
        self.registry = registry
        self.references = references or References(registry)
        self._read = read
        self.thresholds = thresholds or Thresholds()
        self.scrape_url = scrape_url
        self.timeout = timeout
        self._tables: dict[tuple[str, float, float, bool], pa.Table] = {}
        self._counters: dict[str, float] | None = None
        self._scraped: tuple[float, dict[str, float]] | None = None
        self._prediction_refs: dict[tuple[str, int], Reference] = {}

    # ------------------------------------------------------------------ reading
    def window(self, model: str, since: float, until: float, *,
               labeled: bool = False) -> pa.Table:
        key = (model, since, until, labeled)
        if key not in self._tables:
            if len(self._tables) > 16:
                self._tables.clear()
            read = self._read
            if read is None:
                from modelport import log

                read = log.read
            try:
                self._tables[key] = read(model=model,
                                         since=datetime.fromtimestamp(since, UTC),
                                         until=datetime.fromtimestamp(until, UTC),
                                         labeled=labeled)
            except NotFoundError:
                self._tables[key] = pa.table({})
        return self._tables[key]

    def value(self, rule: Rule, now: float) -> float | None:
        since = now - rule.window_s
        if rule.metric in DRIFT:
            return self._drift(rule, since, now)
        if rule.metric in QUALITY:
            return self._quality(rule.metric, self.window(rule.model, since, now, labeled=True))
        if rule.metric == "concept_drift":
            # the detector reads a longer history, so that the window's change has a "before"
            history = self.window(rule.model, now - CONCEPT_LOOKBACK * rule.window_s, now,
                                  labeled=True)
            return self._concept(rule, history, since)
        if rule.metric == "canary_rollbacks":
            return self._rollbacks(rule.model, since, now)
        if rule.metric in ("error_rate", "log_drops"):
            return self._scraped_value(rule.metric, rule.model, now)
        table = self.window(rule.model, since, now, labeled=rule.metric == "feedback_coverage")
        if table.num_rows == 0:
            return 0.0 if rule.metric == "throughput_per_min" else None
        if rule.metric == "latency_p99_ms":
            latency = table.column("latency_ms").to_numpy(zero_copy_only=False)
            return float(np.percentile(latency, 99))
        if rule.metric == "throughput_per_min":
            return float(table.num_rows / (rule.window_s / 60.0))
        if rule.metric == "feedback_coverage":
            covered = table.column("feedback_at").is_valid()
            return float(np.mean(covered.to_numpy(zero_copy_only=False)))
        raise ConfigurationError(f"metric {rule.metric!r} has no source")

    # ------------------------------------------------------------------ drift
    def drift_report(self, model: str, since: float, until: float,
                     version: int | None = None) -> tuple[int, Any] | None:
        """(version, DriftReport) of the window's newest version (or ``version``)."""
        table = self.window(model, since, until)
        if table.num_rows == 0:
            return None
        versions = table.column("version").to_numpy(zero_copy_only=False)
        chosen = int(np.nanmax(versions)) if version is None else version
        rows = table.filter(pa.compute.equal(table.column("version"), chosen))
        if rows.num_rows == 0:
            return None
        reference = self.references.require(model, chosen)
        columns = {k: v for k, v in input_columns(rows).items() if k in reference.features}
        return chosen, compare(reference, columns, self.thresholds)

    def _drift(self, rule: Rule, since: float, now: float) -> float | None:
        if rule.metric == "prediction_drift":
            return self._prediction_drift(rule.model, since, now)
        found = self.drift_report(rule.model, since, now)
        if found is None:
            return None
        report = found[1]
        if rule.metric == "drift_share":
            judged = [f for f in report.features.values() if f.method is not None]
            return report.share_drifted if judged else None
        feature = report.features.get(rule.feature or "")
        if feature is None:
            raise ConfigurationError(
                f"rule {rule.name!r}: model {rule.model} has no logged feature "
                f"{rule.feature!r}; features: {', '.join(sorted(report.features))}")
        return feature.psi if rule.metric == "psi" and feature.method else drift_score(feature)

    def _prediction_drift(self, model: str, since: float, now: float) -> float | None:
        table = self.window(model, since, now)
        if table.num_rows == 0:
            return None
        version = int(np.nanmax(table.column("version").to_numpy(zero_copy_only=False)))
        rows = table.filter(pa.compute.equal(table.column("version"), version))
        reference = self._prediction_reference(model, version)
        values = rows.column("prediction").to_numpy(zero_copy_only=False)
        report = compare(reference, {"prediction": values}, self.thresholds)
        return drift_score(report.features["prediction"])

    def _prediction_reference(self, model: str, version: int) -> Reference:
        """The model's own predictions on its reference sample, computed once per version."""
        key = (model, version)
        if key not in self._prediction_refs:
            sample = self.references.table(model, version)
            if sample is None:
                raise NotFoundError(f"{model}:{version} has no reference to compare predictions "
                                    f"with; add one with 'modelport monitor reference "
                                    f"{model}:{version} --data training.parquet'")
            loaded = self.registry.load(f"{model}:{version}")
            predictions = np.asarray(loaded.predict(sample))
            categorical = {"prediction"} if loaded.signature.task == "classification" else set()
            self._prediction_refs[key] = Reference.from_columns(
                {"prediction": predictions}, categorical=categorical)
        return self._prediction_refs[key]

    # ------------------------------------------------------------------ quality
    def _quality(self, metric: str, table: pa.Table) -> float | None:
        from sklearn import metrics as skm

        if table.num_rows == 0:
            return None
        if metric in ("mae", "rmse"):
            truth = table.column("label_value").to_numpy(zero_copy_only=False).astype(float)
            predicted = table.column("prediction").to_numpy(zero_copy_only=False).astype(float)
            known = ~np.isnan(truth)
            if known.sum() < MIN_LABELLED:
                return None
            error = skm.mean_absolute_error if metric == "mae" else skm.root_mean_squared_error
            return float(error(truth[known], predicted[known]))
        labelled = table.filter(table.column("label").is_valid())
        if labelled.num_rows < MIN_LABELLED:
            return None
        truth = np.asarray(labelled.column("label").to_pylist(), dtype=object)
        predicted = np.asarray(labelled.column("prediction").to_pylist(), dtype=object)
        if metric == "accuracy":
            return float(np.mean(truth == predicted))
        columns = [c for c in labelled.column_names if c.startswith("probability_")]
        if not columns:
            raise ConfigurationError(f"metric {metric} needs probabilities; this model logs "
                                     "none (use accuracy)")
        classes = [c[len("probability_"):] for c in columns]
        proba = np.column_stack([labelled.column(c).to_numpy(zero_copy_only=False)
                                 for c in columns])
        truth_text = np.asarray([str(v) for v in truth])
        if len(set(truth_text)) < 2 and metric == "roc_auc":
            return None  # ROC AUC needs both classes among the labels
        if metric == "roc_auc":
            if len(classes) == 2:
                return float(skm.roc_auc_score(truth_text == classes[1], proba[:, 1]))
            return float(skm.roc_auc_score(truth_text, proba, multi_class="ovr",
                                           labels=classes))
        return float(skm.log_loss(truth_text, proba, labels=classes))

    def _concept(self, rule: Rule, table: pa.Table, since: float) -> float | None:
        """1 when the detector finds a change among the outcomes of ``[since, now)``."""
        from modelport.monitor.concept import change_points

        if table.num_rows == 0:
            return None
        table = table.sort_by("predicted_at")
        if table.column("label").null_count <= table.num_rows - MIN_LABELLED:
            rows = table.filter(table.column("label").is_valid())
            truth = rows.column("label").to_pylist()
            predicted = rows.column("prediction").to_pylist()
            outcomes = [float(t != p) for t, p in zip(truth, predicted, strict=True)]
        else:
            rows = table.filter(table.column("label_value").is_valid())
            if rows.num_rows < MIN_LABELLED:
                return None
            outcomes = list(np.abs(
                rows.column("label_value").to_numpy(zero_copy_only=False).astype(float)
                - rows.column("prediction").to_numpy(zero_copy_only=False).astype(float)))
        times = rows.column("predicted_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
        points = change_points(outcomes, rule.detector)
        return 1.0 if any(times[p] / 1e6 >= since for p in points) else 0.0

    def quality_by_version(self, model: str, since: float, until: float
                           ) -> dict[int, dict[str, float]]:
        """Quality per version over the window (classifiers: accuracy, ROC AUC; regressors:
        MAE, RMSE) and each version's feedback coverage; metrics without enough labels are
        left out."""
        table = self.window(model, since, until, labeled=True)
        if table.num_rows == 0:
            return {}
        regression = "label_value" in table.column_names and table.column(
            "label_value").null_count < table.num_rows and table.column("label").null_count \
            == table.num_rows
        out: dict[int, dict[str, float]] = {}
        versions = table.column("version").to_numpy(zero_copy_only=False)
        for version in sorted({int(v) for v in versions if v == v}):
            rows = table.filter(pa.compute.equal(table.column("version"), version))
            values: dict[str, float] = {"feedback_coverage": float(np.mean(
                rows.column("feedback_at").is_valid().to_numpy(zero_copy_only=False)))}
            for metric in (("mae", "rmse") if regression else ("accuracy", "roc_auc")):
                try:
                    value = self._quality(metric, rows)
                except ConfigurationError:  # no probabilities logged: no ROC AUC
                    value = None
                if value is not None:
                    values[metric] = value
            out[version] = values
        return out

    # ------------------------------------------------------------------ registry / server
    def _rollbacks(self, model: str, since: float, now: float) -> float:
        from modelport.registry.refs import parse_ref
        from modelport.rollout.store import EndpointStore

        endpoints = EndpointStore(self.registry)
        serves: dict[str, bool] = {}
        count = 0
        for entry in self.registry.audit(limit=1000):
            at = entry.at.timestamp()
            if not since <= at < now or entry.action != "endpoint.canary.rollback" \
                    or entry.name is None:
                continue
            if entry.name not in serves:
                try:
                    refs = endpoints.get(entry.name).spec.variants.values()
                    serves[entry.name] = entry.name == model or any(
                        parse_ref(r).name == model for r in refs)
                except ModelportError:  # the endpoint was deleted since
                    serves[entry.name] = entry.name == model
            count += serves[entry.name]
        return float(count)

    def _scraped_value(self, metric: str, model: str, now: float) -> float | None:
        if not self.scrape_url:
            raise ConfigurationError(
                f"metric {metric} is read from a server's /metrics: start the monitor with "
                "'modelport monitor run --scrape http://HOST:PORT/metrics'")
        current = self._scrape(model)
        previous, self._counters = self._counters, current
        if previous is None:
            return None  # a rate needs two scrapes
        if metric == "log_drops":
            return max(0.0, current["drops"] - previous["drops"])
        total = current["requests"] - previous["requests"]
        if total <= 0:
            return None
        return max(0.0, current["errors"] - previous["errors"]) / total

    def _scrape(self, model: str) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        assert self.scrape_url is not None
        try:
            with urllib.request.urlopen(self.scrape_url, timeout=self.timeout) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise ModelportError(f"could not read {self.scrape_url}: "
                                 f"{getattr(exc, 'reason', exc)}") from None
        out = {"requests": 0.0, "errors": 0.0, "drops": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "modelport_requests_total" \
                        and sample.labels.get("model") == model:
                    out["requests"] += sample.value
                    status = sample.labels.get("status", "")
                    if (status.isdigit() and int(status) >= 500) or status in _GRPC_ERRORS:
                        out["errors"] += sample.value
                elif sample.name.startswith("modelport_log_dropped") \
                        and sample.name.endswith("_total") \
                        and sample.labels.get("model", model) == model:
                    out["drops"] += sample.value
        return out


#: gRPC status names counted as server errors (the others are the client's mistakes)
_GRPC_ERRORS = {"INTERNAL", "UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED", "DATA_LOSS",
                "RESOURCE_EXHAUSTED"}


__all__ = ["LogMetrics", "drift_score", "input_columns"]
