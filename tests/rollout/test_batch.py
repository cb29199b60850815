"""Batch jobs through endpoints (in-process): shadows and their agreement report, and the
mistakes that must be refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from modelport.errors import ConfigurationError
from modelport.registry import Registry
from modelport.rollout.batch import run
from modelport.rollout.spec import EndpointSpec
from modelport.rollout.store import EndpointStore


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True, as_frame=True)
    x["user"] = [f"user-{i}" for i in range(len(x))]
    path = tmp_path / "in.parquet"
    x.to_parquet(path)
    return path


def test_a_shadow_scores_the_same_rows_and_reports_agreement(local_registry: Registry,
                                                             rows: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    summary = run(local_registry, input=str(rows), output=str(out), ref="iris:1",
                  shadow="iris:2", keep=("user",))
    assert summary.rows == 150 and summary.variants == {"main": 150}
    scored = pd.read_csv(out)
    assert list(scored["user"]) == [f"user-{i}" for i in range(150)]
    assert list(scored["prediction_id"]) == [f"{summary.run_id}-{i}" for i in range(150)]
    report = json.loads(Path(str(out) + ".shadow.json").read_text())
    shadow = report["shadows"]["shadow"]
    # the same bundle registered twice: the candidate agrees everywhere
    assert shadow["ref"] == "iris:2" and shadow["compared"] == 150
    assert shadow["agreement"] == 1.0 and shadow["max_probability_delta"] == 0.0


def test_endpoint_batch_mistakes_are_refused(local_registry: Registry, rows: Path,
                                             tmp_path: Path) -> None:
    EndpointStore(local_registry).create(EndpointSpec.from_dict({
        "name": "ab", "policy": "split", "weights": {"a": 50, "b": 50},
        "variants": {"a": "iris:1", "b": "iris:2"}}))
    out = tmp_path / "out.parquet"
    with pytest.raises(ConfigurationError, match="--routing-key COLUMN"):
        run(local_registry, input=str(rows), output=str(out), endpoint="ab")
    with pytest.raises(ConfigurationError, match="no routing key column 'uid'"):
        run(local_registry, input=str(rows), output=str(out), endpoint="ab", routing_key="uid")
    with pytest.raises(ConfigurationError, match=".parquet or .csv"):
        run(local_registry, input=str(rows), output=str(tmp_path / "out"), endpoint="ab",
            routing_key="user")
    assert not out.exists()
    summary = run(local_registry, input=str(rows), output=str(out), endpoint="ab",
                  routing_key="user")
    assert sum(summary.variants.values()) == 150 and set(summary.variants) == {"a", "b"}
    traffic = EndpointStore(local_registry).traffic("ab")
    assert {v: s.requests for v, s in traffic.items()} == summary.variants
