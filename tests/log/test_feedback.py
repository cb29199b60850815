"""Feedback items: checks naming the field, idempotent repeats (latest wins), entity-key joins,
early and unknown ids, and quality metrics equal to scikit-learn's on the same labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics

import modelport.log as ml
from modelport.bundle.signature import Signature
from modelport.errors import InvalidInputError
from modelport.log import LogConfig, ModelLogPolicy, PredictionLog
from modelport.log.delta import DeltaStore
from modelport.log.feedback_items import parse_items
from modelport.log.quality import quality
from modelport.log.rows import row_ids


@pytest.fixture
def signature(churn_bundle: Path) -> Signature:
    import modelport

    return modelport.load(str(churn_bundle)).signature


@pytest.mark.parametrize(("payload", "field", "words"), [
    ({"label": 1}, "prediction_id", "prediction_id or entity_key"),
    ({"prediction_id": "p"}, "label", "label, a value or a reward"),
    ({"prediction_id": "p", "label": "yes"}, "label", "string"),
    ({"prediction_id": "p", "label": 7}, "label", "not a class"),
    ({"prediction_id": "p", "label": [1]}, "label", "single value"),
    ({"prediction_id": "p", "reward": "high"}, "reward", "number"),
    ({"prediction_id": 5, "label": 1}, "prediction_id", "string"),
    ({"prediction_id": "p", "label": 1, "colour": "red"}, "colour", "unknown field"),
    ({"entity_key": "c1", "label": 1, "at": "yesterday"}, "at", "ISO 8601"),
    ([], "items", "non-empty list"),
])
def test_bad_items_name_the_field(payload: Any, field: str, words: str,
                                  signature: Signature) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_items(payload, signature_of=lambda m: signature, default_model="churn")
    assert info.value.field is not None and info.value.field.endswith(field)
    assert words in str(info.value)


def test_list_items_are_named_by_position(signature: Signature) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_items({"items": [{"prediction_id": "a", "label": 1},
                               {"prediction_id": "b", "label": "no"}]},
                    signature_of=lambda m: signature, default_model="churn")
    assert info.value.field == "items[1].label"


def test_feedback_joins_by_id_and_entity_key_latest_wins_unknown_kept(
        tmp_path: Path, make_events: Any) -> None:
    store = DeltaStore(str(tmp_path / "log"))
    events = make_events([1, 1, 1])
    ids = [i for e in events for i in row_ids(e)]
    # feedback before the predictions are flushed, and for an id that will never be logged
    ml.write_feedback([{"prediction_id": ids[0], "label": 0},
                       {"prediction_id": "never-logged", "label": 1}], store=store)
    config = LogConfig(models={"churn": ModelLogPolicy(entity_key="calls")})
    plog = PredictionLog([store], config)
    for e in events:
        plog(e)
    plog.flush()
    ml.feedback(ids[0], label=1, store=store)  # a correction: the latest received wins
    ml.feedback(ids[1], label=0, store=store)
    ml.feedback(ids[1], label=0, store=store)  # the same item twice: no change
    table = ml.read(model="churn", store=store)
    key = {r["prediction_id"]: r["entity_key"] for r in table.to_pylist()}[ids[2]]
    at = datetime.now(UTC) + timedelta(seconds=1)
    ml.write_feedback([{"entity_key": key, "model": "churn", "label": 1, "at": at.isoformat(),
                        "window": "1h"},
                       {"entity_key": key, "model": "churn", "label": 0,
                        "at": (at - timedelta(hours=2)).isoformat(), "window": "1h"}],
                      store=store)
    labeled = {r["prediction_id"]: r["label"]
               for r in ml.read(model="churn", store=store, labeled=True).to_pylist()}
    assert labeled == {ids[0]: 1, ids[1]: 0, ids[2]: 1}  # the 2-hours-late window misses
    unmatched = ml.query("SELECT prediction_id FROM unmatched_feedback", model="churn",
                         store=store).column(0).to_pylist()
    assert unmatched == ["never-logged"]


def test_quality_equals_scikit_learn_on_the_same_labels(tmp_path: Path,
                                                        make_events: Any) -> None:
    store = DeltaStore(str(tmp_path / "log"))
    plog = PredictionLog([store])
    for e in make_events([40, 30]) + make_events([30], version=2, seed=9):
        plog(e)
    plog.flush()
    table = ml.read(model="churn", store=store).to_pylist()
    rng = np.random.default_rng(3)
    labels = {r["prediction_id"]: int(rng.integers(0, 2)) for r in table
              if rng.random() < 0.7}
    ml.write_feedback([{"prediction_id": k, "label": v} for k, v in labels.items()],
                      store=store)
    result = {r["version"]: r for r in quality(store, "churn", by=("version",)).to_pylist()}
    for version in (1, 2):
        rows = [r for r in table if r["version"] == version]
        got = [r for r in rows if r["prediction_id"] in labels]
        y_true = [labels[r["prediction_id"]] for r in got]
        y_pred = [r["prediction"] for r in got]
        proba = [r["probability_1"] for r in got]
        out = result[version]
        assert out["predictions"] == len(rows) and out["labeled"] == len(got)
        assert out["coverage"] == pytest.approx(len(got) / len(rows))
        assert out["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
        assert out["precision"] == pytest.approx(
            metrics.precision_score(y_true, y_pred, zero_division=0))
        assert out["recall"] == pytest.approx(metrics.recall_score(y_true, y_pred))
        assert out["roc_auc"] == pytest.approx(metrics.roc_auc_score(y_true, proba))
        assert out["log_loss"] == pytest.approx(
            metrics.log_loss(y_true, [[1 - p, p] for p in proba], labels=[0, 1]))


def test_regression_quality(tmp_path: Path, model_events: Any) -> None:
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    import modelport

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "b"])
    bundle = modelport.save(LinearRegression().fit(x, x["a"] * 2), tmp_path / "price",
                            name="price", example=x.head())
    store = DeltaStore(str(tmp_path / "log"))
    plog = PredictionLog([store])
    for e in model_events(bundle, x):
        plog(e)
    plog.flush()
    rows = ml.read(model="price", store=store).to_pylist()
    truth = {r["prediction_id"]: float(r["inputs"]["a"] * 2 + 0.5) for r in rows[:40]}
    ml.write_feedback([{"prediction_id": k, "value": v} for k, v in truth.items()], store=store)
    out = quality(store, "price", by=()).to_pylist()[0]
    y_pred = [r["prediction"] for r in rows[:40]]
    y_true = list(truth.values())
    assert out["labeled"] == 40 and out["coverage"] == pytest.approx(40 / 60)
    assert out["mae"] == pytest.approx(metrics.mean_absolute_error(y_true, y_pred))
    assert out["rmse"] == pytest.approx(metrics.root_mean_squared_error(y_true, y_pred))
    assert out["r2"] == pytest.approx(metrics.r2_score(y_true, y_pred))
