"""Concept drift with River's detectors on River's own synthetic drifting stream."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import ConfigurationError
from modelport.monitor.concept import change_points
from modelport.monitor.rules import AlertState, Rule

DRIFT_AT = 5000


def sea_errors() -> list[int]:
    """Errors of a model fitted before the drift on SEA (variant 0 → 2 at DRIFT_AT)."""
    from river.datasets import synth
    from sklearn.linear_model import LogisticRegression

    stream = synth.ConceptDriftStream(stream=synth.SEA(variant=0, seed=7),
                                      drift_stream=synth.SEA(variant=2, seed=8),
                                      position=DRIFT_AT, width=100, seed=9)
    rows = list(stream.take(10_000))
    x = np.array([[r[0][k] for k in sorted(r[0])] for r in rows])
    y = np.array([r[1] for r in rows])
    model = LogisticRegression(max_iter=1000).fit(x[:2000], y[:2000])
    return [int(e) for e in model.predict(x) != y]


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_a_quality_alert_fires_after_the_drift_point_and_not_before(detector: str) -> None:
    errors = sea_errors()
    rule = Rule.from_dict({"name": "concept", "model": "m", "metric": "concept_drift",
                           "op": ">=", "threshold": 1, "detector": detector})
    state = AlertState()
    fired_at = None
    for end in range(1000, 10_001, 250):  # evaluations of a window of 1,000 outcomes
        start = max(0, end - 10_000)  # the detector reads ten windows (as LogMetrics does)
        points = change_points(errors[start:end], detector)
        value = 1.0 if any(start + p >= end - 1000 for p in points) else 0.0
        transition = state.step(rule, rule.holds(value), float(end))
        if transition.status == "firing" and fired_at is None:
            fired_at = end
    assert fired_at is not None, f"{detector} never fired"
    assert DRIFT_AT < fired_at <= DRIFT_AT + 1000


def test_ddm_false_alarms_on_a_near_zero_error_rate_are_why_adwin_is_the_default() -> None:
    errors = sea_errors()
    assert any(p < DRIFT_AT - 500 for p in change_points(errors, "ddm"))
    assert not any(p < DRIFT_AT - 500 for p in change_points(errors, "adwin"))


def test_unknown_detectors_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown detector"):
        Rule.from_dict({"name": "c", "model": "m", "metric": "concept_drift", "op": ">=",
                        "threshold": 1, "detector": "vibes"})
