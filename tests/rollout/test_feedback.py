"""Online metrics from the prediction log: per-variant accuracy from logged feedback feeds the
experiment report and the canary's quality check."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from modelport.registry import Registry
from modelport.rollout import report
from modelport.rollout.feedback import canary_quality, feedback_moments, moments
from modelport.rollout.spec import EndpointSpec
from modelport.rollout.store import EndpointStore


def test_accuracy_per_variant_from_logged_feedback(tmp_path: Path, iris_bundle: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import modelport.log as ml
    from modelport.core.service import InferenceService
    from modelport.log import start_logging

    home = tmp_path / "home"
    monkeypatch.setenv("MODELPORT_HOME", str(home))
    for var in ("MODELPORT_LOG", "MODELPORT_LOG_CONFIG", "MODELPORT_REGISTRY_URL"):
        monkeypatch.delenv(var, raising=False)
    registry = Registry(f"sqlite:///{home}/registry.db", home / "artifacts")
    registry.register(iris_bundle)
    registry.register(iris_bundle)
    registry.set_alias("iris", "production", 1)
    store = EndpointStore(registry)
    endpoint = store.create(EndpointSpec.from_dict({
        "name": "fraud", "policy": "canary", "candidate": "green",
        "variants": {"blue": "iris@production", "green": "iris:2"},
        "canary": {"steps": [50, 100], "quality_metric": "accuracy", "min_quality": 0.9}}))

    service = InferenceService(registry)
    plog = start_logging(service.events, stores=["delta"])
    assert plog is not None
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True, as_frame=True)
    started = time.time() - 1
    for variant, ref in (("blue", "iris@production"), ("green", "iris:2")):
        runner = service.runner(ref)
        runner.predict(runner.model.coerce(x), source="python", endpoint="fraud",
                       variant=variant)
    service.events.flush()
    plog.close()
    service.close()

    logged = ml.read(model="iris", pandas=True)
    assert set(logged["variant"]) == {"blue", "green"} and set(logged["endpoint"]) == {"fraud"}
    truth = pd.Series(y.to_numpy()).astype(str)
    items = []
    for _, row in logged.iterrows():
        position = int(row["prediction_id"].rsplit("-", 1)[1])
        right = truth[position]
        # blue's feedback says it was always right; green's says it was wrong on odd rows
        label = right if row["variant"] == "blue" or position % 2 == 0 else "wrong"
        items.append({"prediction_id": row["prediction_id"], "label": label, "model": "iris",
                      "reward": 2.0 if row["variant"] == "blue" else 0.5})
    ml.write_feedback(items)

    found = moments(endpoint, "accuracy")
    assert found["blue"].n == found["green"].n == len(x)
    blue = logged[logged["variant"] == "blue"]
    positions = blue["prediction_id"].str.rsplit("-", n=1).str[1].astype(int)
    right = (blue["prediction"].astype(str).to_numpy() == truth[positions].to_numpy()).mean()
    assert found["blue"].mean == pytest.approx(right) and right > 0.9
    assert found["green"].mean < found["blue"].mean - 0.3
    quality = canary_quality(store.get("fraud"), started, time.time() + 1)
    assert quality == pytest.approx(found["green"].mean)

    # a bandit over the same variants learns from the logged rewards, scaled by its range
    from modelport.rollout.router import logged_rewards
    from modelport.rollout.spec import Endpoint, EndpointState

    bandit = Endpoint(EndpointSpec.from_dict({
        "name": "fraud", "policy": "bandit", "variants": {"blue": "iris:1", "green": "iris:2"},
        "bandit": {"reward_min": 0, "reward_max": 2}}), EndpointState())
    arms = logged_rewards(bandit)
    assert (arms["blue"].pulls, arms["blue"].reward_sum) == (150, pytest.approx(150.0))
    assert (arms["green"].pulls, arms["green"].reward_sum) == (150, pytest.approx(37.5))

    data = report.build(store, "fraud", metric="accuracy", feedback=feedback_moments(registry))
    [comparison] = data["comparisons"]
    assert comparison["variant"] == "green" and comparison["difference"] < -0.3
    assert comparison["significant"] and "worse" in comparison["verdict"]
