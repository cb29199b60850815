"""Rule metrics computed from a real prediction log (Delta table) of a real served model."""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import modelport
from modelport import log as mplog
from modelport.core.service import InferenceService
from modelport.errors import ConfigurationError
from modelport.monitor.reference import References
from modelport.monitor.rules import Rule
from modelport.monitor.sources import LogMetrics
from modelport.registry import Registry


def rule(metric: str, **extra: Any) -> Rule:
    return Rule.from_dict({"name": f"r-{metric}", "model": "cancer", "metric": metric,
                           "op": ">", "threshold": 1, "window": "1h", **extra})


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory,
           cancer_frame: tuple[pd.DataFrame, pd.Series], cancer_pipeline: Any) -> dict[str, Any]:
    """300 logged predictions (the last 150 with 'mean radius' shifted) and 200 labels."""
    x, y = cancer_frame
    tmp_path = tmp_path_factory.mktemp("logged")
    registry = Registry(f"sqlite:///{tmp_path}/registry.db", tmp_path / "artifacts",
                        cache_dir=tmp_path / "cache")
    path = modelport.save(cancer_pipeline, tmp_path / "b", name="cancer", example=x.head(5),
                          reference=x)
    registry.register(path)
    store = mplog.open_store(str(tmp_path / "log"))
    plog = mplog.PredictionLog([store], mplog.LogConfig(flush_seconds=0.2))
    service = InferenceService(registry)
    service.events.subscribe(plog)
    rows = x.sample(300, replace=True, random_state=2).reset_index(drop=True)
    truth = y.sample(300, replace=True, random_state=2).reset_index(drop=True)
    rows.loc[150:, "mean radius"] *= 1.6
    ids: list[str] = []
    try:
        for start in range(0, 300, 10):
            service.predict("cancer", rows.iloc[start:start + 10])
        assert service.events.flush()
    finally:
        plog.close()
        service.close()
    table = mplog.read(model="cancer", store=store)
    ids = table.column("prediction_id").to_pylist()
    assert len(ids) == 300
    by_id = dict(zip(ids, range(300), strict=True))
    order = sorted(ids, key=lambda i: by_id[i])
    labels = [{"prediction_id": pid, "label": int(truth[k])} for k, pid in enumerate(order)
              if k % 3 != 0]
    mplog.write_feedback(labels, store=store)
    return {"registry": registry, "store": store, "home": tmp_path, "x": x,
            "table": mplog.read(model="cancer", labeled=True, store=store)}


def source(logged: dict[str, Any], **kwargs: Any) -> LogMetrics:
    registry = logged["registry"]
    return LogMetrics(registry, references=References(registry, home=logged["home"]),
                      read=functools.partial(mplog.read, store=logged["store"]), **kwargs)


def test_quality_metrics_equal_scikit_learn_on_the_joined_rows(logged: dict[str, Any]) -> None:
    metrics = source(logged)
    now = time.time() + 1
    table = logged["table"].to_pandas()
    known = table[table["label"].notna()]
    assert len(known) == 200
    truth = known["label"].astype(int).to_numpy()
    predicted = known["prediction"].astype(int).to_numpy()
    assert metrics.value(rule("accuracy"), now) == pytest.approx(np.mean(truth == predicted))
    assert metrics.value(rule("roc_auc"), now) == pytest.approx(
        skm.roc_auc_score(truth, known["probability_1"]))
    assert metrics.value(rule("log_loss"), now) == pytest.approx(
        skm.log_loss(truth, known[["probability_0", "probability_1"]].to_numpy(),
                     labels=[0, 1]))
    assert metrics.value(rule("feedback_coverage"), now) == pytest.approx(200 / 300)
    assert metrics.value(rule("throughput_per_min"), now) == pytest.approx(300 / 60)
    assert metrics.value(rule("latency_p99_ms"), now) == pytest.approx(
        np.percentile(table["latency_ms"], 99))
    # the errors of one unshifted stream: no change for the detector to find
    assert metrics.value(rule("concept_drift"), now) == 0.0


def test_drift_from_the_log_finds_the_shifted_feature(logged: dict[str, Any]) -> None:
    metrics = source(logged)
    now = time.time() + 1
    score = metrics.value(rule("feature_drift", feature="mean radius"), now)
    calm = metrics.value(rule("feature_drift", feature="mean texture"), now)
    assert score is not None and score >= 1 and calm is not None and calm < 1
    share = metrics.value(rule("drift_share"), now)
    assert share is not None and 0 < share < 0.5
    assert metrics.value(rule("psi", feature="mean radius"), now) > 0.25  # type: ignore[operator]
    prediction = metrics.value(rule("prediction_drift"), now)
    assert prediction is not None and prediction > 0
    with pytest.raises(ConfigurationError, match="no logged feature 'nope'"):
        metrics.value(rule("psi", feature="nope"), now)


def test_windows_without_rows_give_no_value(logged: dict[str, Any]) -> None:
    metrics = source(logged)
    long_ago = time.time() - 30 * 86400
    assert metrics.value(rule("accuracy"), long_ago) is None
    assert metrics.value(rule("drift_share"), long_ago) is None
    assert metrics.value(rule("throughput_per_min"), long_ago) == 0.0
    with pytest.raises(ConfigurationError, match="--scrape"):
        metrics.value(rule("error_rate"), time.time())
    assert isinstance(metrics.references, References)
