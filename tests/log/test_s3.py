"""The same Delta log on S3-compatible storage (moto in server mode): appends from two processes
at once (commits by conditional PUT), reads, feedback and compaction."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest

import modelport.log as ml
from modelport.log.delta import DeltaStore
from tests.conftest import moto_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    with moto_s3("lake") as endpoint:
        yield {"key": "test", "secret": "test", "endpoint_url": endpoint,
               "client_kwargs": {"region_name": "us-east-1"}}


def _writer(options: dict[str, Any], worker: int) -> None:
    import pyarrow as pa

    from modelport.log.delta import DeltaStore

    store = DeltaStore("s3://lake/log", storage_options=options)
    for j in range(8):
        ids = [f"w{worker}-{j}-{k}" for k in range(10)]
        store.append_predictions("churn", pa.table({
            "prediction_id": ids,
            "predicted_at": pa.array([1_800_000_000_000_000] * 10, pa.timestamp("us", "UTC")),
            "date": ["2027-01-15"] * 10, "model": ["churn"] * 10,
            "version": pa.array([worker] * 10, pa.int64()), "prediction": [1] * 10}))


def test_two_processes_append_to_one_table_on_s3(s3: dict[str, Any]) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(s3, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    store = DeltaStore("s3://lake/log", storage_options=s3)
    assert store.models() == ["churn"]
    ids = ml.read(model="churn", store=store).column("prediction_id").to_pylist()
    assert len(ids) == len(set(ids)) == 2 * 8 * 10
    ml.feedback("w0-0-0", label=0, store=store)
    labeled = ml.read(model="churn", store=store, labeled=True).to_pylist()
    assert sum(r["label"] is not None for r in labeled) == 1
    report = {r["table"]: r for r in store.compact(vacuum_hours=0)}
    assert report["predictions/churn"]["files_removed"] == 16
    assert ml.read(model="churn", store=store).num_rows == 160
