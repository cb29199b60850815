"""PredictionLog + DeltaStore: exact rows, ids, policies, schema evolution, bounded memory,
a store that refuses, and several writer processes appending to one table."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import modelport.log as ml
from modelport.log import LogConfig, ModelLogPolicy, PredictionLog
from modelport.log.delta import DeltaStore
from modelport.log.rows import row_ids


def test_events_are_written_with_their_ids_and_outputs(tmp_path: Path, make_events: Any) -> None:
    events = make_events([1, 3, 2])
    store = DeltaStore(str(tmp_path / "log"))
    plog = PredictionLog([store], LogConfig(flush_rows=1000, flush_seconds=60))
    for e in events:
        plog(e)
    assert plog.flush() == 6
    table = ml.read(model="churn", store=store)
    ids = [i for e in events for i in row_ids(e)]
    assert sorted(table.column("prediction_id").to_pylist()) == sorted(ids)
    assert ids[0] == events[0].id and ids[1] == f"{events[1].id}-0"  # P, then P-0 …
    first = {r["prediction_id"]: r for r in table.to_pylist()}[ids[0]]
    e0 = events[0]
    assert first["prediction"] == int(e0.outputs.labels[0])
    assert first["probability_1"] == pytest.approx(float(e0.outputs.probabilities[0, 1]))
    assert first["inputs"]["tenure"] == pytest.approx(float(e0.inputs.column("tenure")[0]))
    assert (first["model"], first["version"], first["source"], first["request_id"]) == \
        ("churn", 1, "rest", "r0")
    assert table.schema.field("predicted_at").type.tz == "UTC"


def test_policy_sampling_allowlist_drop_hash_and_entity_key(tmp_path: Path,
                                                            make_events: Any) -> None:
    policy = ModelLogPolicy(sample_rate=0.5, include=("tenure", "spend"), drop=("spend",),
                            hash=("tenure",), entity_key="calls")
    config = LogConfig(models={"churn": policy}, hash_salt="pepper")
    store = DeltaStore(str(tmp_path / "log"))
    plog = PredictionLog([store], config, rng=random.Random(7))
    events = make_events([100, 100])
    for e in events:
        plog(e)
    plog.flush()
    rows = ml.read(model="churn", store=store).to_pylist()
    draw = random.Random(7)
    expected = sum(draw.random() < 0.5 for _ in range(200))
    assert len(rows) == expected and 60 < expected < 140
    row = rows[0]
    assert set(row["inputs"]) == {"tenure"}  # spend dropped, calls not allowed
    assert len(row["inputs"]["tenure"]) == 64  # a SHA-256 hex digest, not the value
    assert row["entity_key"] is not None and float(row["entity_key"]) == pytest.approx(
        float(row["entity_key"]))
    off = LogConfig(models={"churn": ModelLogPolicy(enabled=False)})
    quiet = PredictionLog([DeltaStore(str(tmp_path / "quiet"))], off)
    quiet(events[0])
    assert quiet.pending_rows == 0


def test_a_new_feature_in_a_later_version_widens_the_table(tmp_path: Path, make_events: Any,
                                                           model_events: Any) -> None:
    from sklearn.linear_model import LinearRegression

    import modelport

    store = DeltaStore(str(tmp_path / "log"))
    plog = PredictionLog([store])
    for e in make_events([2]):
        plog(e)
    plog.flush()
    rng = np.random.default_rng(0)
    import pandas as pd

    x = pd.DataFrame(rng.normal(size=(50, 4)), columns=["tenure", "spend", "calls", "age"])
    bundle = modelport.save(LinearRegression().fit(x, (x["tenure"] > 0).astype(int)),
                            tmp_path / "v2", name="churn", example=x.head())
    for e in model_events(bundle, x.head(3), version=2):
        plog(e)
    plog.flush()
    table = ml.read(model="churn", store=store)
    assert table.num_rows == 5
    ages = {r["version"]: r["inputs"]["age"] for r in table.to_pylist()}
    assert ages[1] is None and ages[2] is not None


def test_bounded_memory_drops_are_counted_and_exported(tmp_path: Path, make_events: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    plog = PredictionLog([DeltaStore(str(tmp_path / "log"))],
                         LogConfig(max_pending_rows=5, flush_rows=1000, flush_seconds=60),
                         metrics_registry=registry)
    for e in make_events([3, 3, 2]):
        plog(e)
    assert plog.pending_rows == 5 and plog.dropped == 3
    value = registry.get_sample_value("modelport_log_dropped_rows_total",
                                      {"model": "churn", "reason": "buffer_full"})
    assert value == 3
    assert any("dropped 3 rows" in r.getMessage() for r in caplog.records)
    plog.close()
    assert registry.get_sample_value("modelport_log_rows_written_total",
                                     {"model": "churn"}) == 5


def test_a_log_folder_that_is_not_writable_keeps_rows_for_the_next_flush(
        tmp_path: Path, make_events: Any) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the log folder should be")  # unwritable even for root
    plog = PredictionLog([DeltaStore(str(blocker / "log"))])
    for e in make_events([2]):
        plog(e)
    assert plog.flush() == 0 and plog.pending_rows == 2 and plog.dropped == 0
    blocker.unlink()
    assert plog.flush() == 2 and plog.pending_rows == 0


def test_a_store_that_refuses_keeps_rows_then_counts_them_dropped(make_events: Any) -> None:
    class Refusing:
        name, readable = "refusing", False
        fail = True
        written = 0

        def append_predictions(self, model: str, table: Any) -> None:
            if self.fail:
                from modelport.errors import StorageError

                raise StorageError("disk full")
            self.written += table.num_rows

    store = Refusing()
    plog = PredictionLog([store], LogConfig(max_pending_rows=4))  # type: ignore[list-item]
    events = make_events([2, 2, 2])
    plog(events[0])
    plog.flush()  # refused: kept
    plog(events[1])
    plog.flush()  # refused again: 4 kept
    plog(events[2])  # no room: dropped
    assert plog.dropped == 2 and plog.pending_rows == 4
    store.fail = False
    assert plog.flush() == 4 and store.written == 4


def _writer(root: str, worker: int, flushes: int, rows: int) -> None:
    import pyarrow as pa

    from modelport.log.delta import DeltaStore

    store = DeltaStore(root)
    for j in range(flushes):
        ids = [f"w{worker}-{j}-{k}" for k in range(rows)]
        store.append_predictions("churn", pa.table({
            "prediction_id": ids,
            "predicted_at": pa.array([1_800_000_000_000_000] * rows, pa.timestamp("us", "UTC")),
            "date": ["2027-01-15"] * rows, "model": ["churn"] * rows,
            "version": pa.array([worker] * rows, pa.int64()), "prediction": [1] * rows}))


def test_writer_processes_append_to_one_table_without_losing_rows(tmp_path: Path) -> None:
    root = str(tmp_path / "log")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(root, w, 15, 20)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    table = ml.read(model="churn", store=DeltaStore(root))
    ids = table.column("prediction_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3 * 15 * 20


def test_compaction_and_retention(tmp_path: Path, make_events: Any) -> None:
    import pyarrow as pa

    store = DeltaStore(str(tmp_path / "log"))
    plog = PredictionLog([store])
    for e in make_events([1] * 6):
        plog(e)
        plog.flush()  # six small files
    old = pa.table({"prediction_id": ["old"],
                    "predicted_at": pa.array([1_000_000_000_000_000], pa.timestamp("us", "UTC")),
                    "date": ["2001-09-09"], "model": ["churn"],
                    "version": pa.array([1], pa.int64())})
    store.append_predictions("churn", old)
    report = {r["table"]: r for r in store.compact(retention=30 * 86400, vacuum_hours=0)}
    entry = report["predictions/churn"]
    assert entry["deleted_rows"] == 1 and entry["files_removed"] >= 6 and entry["files_added"] >= 1
    table = ml.read(model="churn", store=store)
    assert table.num_rows == 6 and "old" not in table.column("prediction_id").to_pylist()
