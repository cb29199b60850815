"""Online metrics of an endpoint's variants from the prediction log's feedback.

The prediction log (``modelport.log``) stores every prediction with its ``endpoint`` and
``variant`` and joins feedback to it (``labeled`` view). This module turns that into the
moments the experiment report and canary checks need:

* ``accuracy``: 1 when the prediction equals the label, else 0;
* ``reward``: the feedback's reward;
* ``abs_error`` / ``squared_error``: between a regressor's prediction and the label value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelport.errors import ConfigurationError, ModelportError
from modelport.registry.refs import parse_ref
from modelport.rollout.spec import Endpoint, check_endpoint_name
from modelport.rollout.stats import Moments

if TYPE_CHECKING:
    from modelport.registry import Registry

log = logging.getLogger("modelport.rollout")

#: metric → SQL expression over the ``labeled`` view (NULL when a row has no such feedback)
METRICS: dict[str, str] = {
    "accuracy": "CASE WHEN label_text IS NULL THEN NULL "
                "WHEN CAST(prediction AS VARCHAR) = label_text THEN 1.0 ELSE 0.0 END",
    "reward": "reward",
    "abs_error": "abs(CAST(prediction AS DOUBLE) - label_value)",
    "squared_error": "power(CAST(prediction AS DOUBLE) - label_value, 2)",
}


def _models(endpoint: Endpoint) -> list[str]:
    return sorted({parse_ref(ref).name for ref in endpoint.spec.variants.values()})


def moments(endpoint: Endpoint, metric: str, since: float = 0.0,
            until: float | None = None, *, store: Any = None,
            condition: str | None = None) -> dict[str, Moments]:
    """Per-variant count, sum and sum of squares of ``metric`` over labeled predictions
    (those meeting the SQL ``condition`` too, when given)."""
    if metric not in METRICS:
        raise ConfigurationError(
            f"unknown feedback metric {metric!r}; use one of {', '.join(METRICS)}")
    import modelport.log as ml

    name = check_endpoint_name(endpoint.name)  # letters, digits, '_', '.', '-': safe to quote
    start = datetime.fromtimestamp(since, UTC) if since else None
    end = datetime.fromtimestamp(until, UTC) if until else None
    out: dict[str, Moments] = {}
    for model in _models(endpoint):
        sql = (f"SELECT variant, count(v) AS n, sum(v) AS s, sum(v * v) AS ss FROM "
               f"(SELECT variant, {METRICS[metric]} AS v FROM labeled "
               f"WHERE endpoint = '{name}'{f' AND ({condition})' if condition else ''}) "
               "WHERE v IS NOT NULL GROUP BY variant")
        try:
            table = ml.query(sql, model=model, since=start, until=end, store=store)
        except ModelportError as exc:
            log.debug("no feedback for %s (%s): %s", name, model, exc)
            continue
        for row in table.to_pylist():
            if row["variant"] is None or not row["n"]:
                continue
            old = out.get(row["variant"], Moments(0, 0.0, 0.0))
            out[row["variant"]] = Moments(old.n + int(row["n"]), old.total + float(row["s"]),
                                          old.total_sq + float(row["ss"]))
    return out


def feedback_moments(registry: Registry) -> Callable[[str, str, float], Mapping[str, Moments]]:
    """The report's feedback source: ``(endpoint, metric, since) -> {variant: Moments}``."""
    from modelport.rollout.store import EndpointStore

    store = EndpointStore(registry)

    def source(name: str, metric: str, since: float) -> Mapping[str, Moments]:
        return moments(store.get(name), metric, since)

    return source


def canary_quality(endpoint: Endpoint, since: float, until: float) -> float | None:
    """The canary candidate's mean ``quality_metric`` in ``[since, until)``, if any."""
    metric = endpoint.spec.canary.quality_metric
    candidate = endpoint.spec.candidate
    if not metric or candidate is None:
        return None
    try:
        found = moments(endpoint, metric, since, until).get(candidate)
    except (ModelportError, ImportError) as exc:
        log.warning("reading feedback for %s failed: %s", endpoint.name, exc)
        return None
    if found is None or found.n == 0:
        return None
    value = found.mean
    # errors are "lower is better": the check compares against min_quality, so negate them
    return -value if metric.endswith("_error") else value


__all__ = ["METRICS", "canary_quality", "feedback_moments", "moments"]
