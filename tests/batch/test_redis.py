"""Redis outputs on a real Redis: one hash read with HGET, switched atomically per run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import redis

import modelport
from modelport.batch import JobSpec, run_job
from modelport.batch.progress import Progress
from modelport.batch.redis_sink import lookup
from modelport.errors import ConfigurationError

from .conftest import FEATURES, REDIS_URL, frame, write_parquet

QUIET = {"progress": Progress(enabled=False)}


def test_one_hget_reads_a_prediction_and_runs_switch_atomically(
        classifier_bundle: Path, tmp_path: Path, home: Path, redis_prefix: str) -> None:
    data = frame(120)
    write_parquet(tmp_path / "in.parquet", data)
    spec = JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"),
                   output=REDIS_URL, prefix=redis_prefix, key=("id",), keep=("id",),
                   ttl=600, chunk_rows=50)
    first = run_job(spec, **QUIET)
    client = redis.Redis.from_url(REDIS_URL)
    # the documented read: one HGET of <prefix>predictions by row id
    record = json.loads(client.hget(f"{redis_prefix}predictions", "0"))
    model = modelport.load(str(classifier_bundle))
    expected = model.predict_proba(data[FEATURES].iloc[[0]])[0, 1]
    assert list(record) == ["id", "prediction_id", "prediction", "probabilities", "model",
                            "version", "predicted_at"]
    assert record["probabilities"]["1"] == pytest.approx(expected, abs=1e-5)
    assert record["model"] == "lr" and record["prediction"] in (0, 1)
    assert record["prediction_id"] == f"{first.run_id}-0"
    values = lookup(client, redis_prefix, ["0", "119", "missing"])
    assert values[0] == record and values[1] is not None and values[2] is None
    assert 0 < client.ttl(f"{redis_prefix}predictions") <= 600
    assert not client.exists(f"{redis_prefix}__staging__:{first.run_id}")

    write_parquet(tmp_path / "in.parquet", frame(60, seed=9))
    run_job(spec, **QUIET)
    third_data = frame(30, seed=10)
    write_parquet(tmp_path / "in.parquet", third_data)
    third = run_job(spec, **QUIET)
    values = lookup(client, redis_prefix, ["0", "100"])
    assert values[1] is None  # row 100 is not in the latest run: no mix of runs
    assert client.hlen(f"{redis_prefix}predictions") == 30
    assert client.hget(f"{redis_prefix}__published__", f"{redis_prefix}predictions"
                       ).decode() == third.run_id
    payload = json.loads(client.hget(f"{redis_prefix}predictions", "5"))
    np.testing.assert_allclose(payload["probabilities"]["1"],
                               model.predict_proba(third_data[FEATURES].iloc[[5]])[0, 1],
                               atol=1e-5)
    # nothing of earlier runs is left but their run records
    leftovers = [k.decode() for k in client.scan_iter(match=f"{redis_prefix}*")]
    assert sorted(k for k in leftovers if "__run__" not in k) == [
        f"{redis_prefix}__published__", f"{redis_prefix}predictions"]
    client.close()


def test_redis_output_needs_a_key(classifier_bundle: Path, tmp_path: Path, home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(5))
    with pytest.raises(ConfigurationError, match="--key"):
        run_job(JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"),
                        output=REDIS_URL), **QUIET)
