"""Redis outputs on a real Redis: a namespace per run, switched by one pointer."""

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


def test_one_key_per_row_then_pointer_switch(classifier_bundle: Path, tmp_path: Path,
                                             home: Path, redis_prefix: str) -> None:
    data = frame(120)
    write_parquet(tmp_path / "in.parquet", data)
    spec = JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"),
                   output=REDIS_URL, prefix=redis_prefix, key=("id",), keep=("id",),
                   ttl=600, chunk_rows=50)
    first = run_job(spec, **QUIET)
    client = redis.Redis.from_url(REDIS_URL)
    run_id, values = lookup(client, redis_prefix, ["0", "119", "missing"])
    assert run_id == first.run_id
    model = modelport.load(str(classifier_bundle))
    expected = model.predict_proba(data[FEATURES].iloc[[0]])[0, 1]
    assert values[0]["probabilities"]["1"] == pytest.approx(expected, abs=1e-5)
    assert values[0]["model_name"] == "lr" and values[0]["prediction"] in (0, 1)
    assert values[1] is not None and values[2] is None
    assert 0 < client.ttl(f"{redis_prefix}{run_id}:0") <= 600

    write_parquet(tmp_path / "in.parquet", frame(60, seed=9))
    second = run_job(spec, **QUIET)
    third_data = frame(30, seed=10)
    write_parquet(tmp_path / "in.parquet", third_data)
    third = run_job(spec, **QUIET)
    run_id, values = lookup(client, redis_prefix, ["0", "100"])
    assert run_id == third.run_id and values[1] is None  # row 100 is not in the latest run
    # the previous run stays for readers that just read the old pointer; older ones are gone
    assert client.exists(f"{redis_prefix}{second.run_id}:0")
    assert not client.exists(f"{redis_prefix}{first.run_id}:0")
    payload = json.loads(client.get(f"{redis_prefix}{third.run_id}:5"))
    np.testing.assert_allclose(payload["probabilities"]["1"],
                               model.predict_proba(third_data[FEATURES].iloc[[5]])[0, 1],
                               atol=1e-5)
    client.close()


def test_redis_output_needs_a_key(classifier_bundle: Path, tmp_path: Path, home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(5))
    with pytest.raises(ConfigurationError, match="--key"):
        run_job(JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"),
                        output=REDIS_URL), **QUIET)
