"""Prediction log benchmark: bulk append of prediction events, and a quality query over a big log.

1. **Bulk append** — ``--events`` (1,000,000) prediction events of one row each (the server's
   case: one event per request), 30 float features, a classifier's label and two probabilities,
   pushed through ``PredictionLog`` (the event-bus observer) into the embedded Delta table:
   buffering, conversion to Arrow at flush time and the Delta commits, timed until the last
   row is committed. Baseline in the same run: the same rows, already one Arrow table, written
   as one Parquet file with pyarrow (the floor for any writer). Also the batch / stream case:
   the same rows as 1,000-row events. Target: >= 200,000 events/s.
2. **Query** — ``--rows`` (10,000,000) logged predictions of three versions over 48 hours with
   feedback for 70 % of them (5 % sent twice), in Delta tables; accuracy by version by hour of
   the predictions joined with their latest feedback: DuckDB over the tables' Arrow datasets
   (``modelport.log`` views, what ``modelport log query`` runs) against the same computation in
   pandas (reading the same tables, dropping repeated feedback, merging, grouping). Both
   answers are compared.

    python benchmarks/log.py                       # 1M events, 10M rows
    python benchmarks/log.py --events 200000 --rows 1000000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

N_FEATURES = 30


def _events(n_events: int, rows_per_event: int) -> list[Any]:
    from modelport.core.batch import Batch, Result
    from modelport.core.events import PredictionEvent

    names = [f"f{i}" for i in range(N_FEATURES)]
    rng = np.random.default_rng(0)
    total = n_events * rows_per_event
    matrix = rng.normal(size=(total, N_FEATURES))
    proba = rng.random(total)
    probabilities = np.column_stack([1 - proba, proba])
    labels = (proba > 0.5).astype(np.int64)
    now = time.time()
    out = []
    for i in range(n_events):
        a, b = i * rows_per_event, (i + 1) * rows_per_event
        out.append(PredictionEvent(
            model="bench", version=1, inputs=Batch.from_matrix(names, matrix[a:b]),
            outputs=Result(b - a, labels=labels[a:b], probabilities=probabilities[a:b],
                           classes=[0, 1]),
            latency_ms=0.05, source="simple", request_id=f"r{i}", id=f"{i:032x}",
            timestamp=now))
    return out


def bulk_append(root: Path, n_events: int, rows_per_event: int) -> dict[str, Any]:
    from modelport.log import LogConfig, PredictionLog
    from modelport.log.delta import DeltaStore

    events = _events(n_events, rows_per_event)
    store = DeltaStore(str(root / f"log-{rows_per_event}"))
    plog = PredictionLog([store], LogConfig(flush_rows=100_000, flush_seconds=5.0,
                                            max_pending_rows=2_000_000))
    start, cpu = time.perf_counter(), time.process_time()
    for event in events:
        plog(event)
    plog.close()
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    rows = n_events * rows_per_event
    assert plog.counters.written == rows and plog.dropped == 0, plog.counters
    return {"events": n_events, "rows": rows, "seconds": seconds, "cpu_s": cpu_s,
            "events_per_s": n_events / seconds, "rows_per_s": rows / seconds,
            "events_per_cpu_s": n_events / cpu_s}


def parquet_floor(root: Path, rows: int) -> dict[str, Any]:
    """The same rows as one ready Arrow table, written as one Parquet file."""
    from modelport.log.config import ModelLogPolicy
    from modelport.log.rows import group_events, to_table

    events = _events(rows // 1000, 1000)
    table = pa.concat_tables([to_table(g, ModelLogPolicy()) for g in group_events(events)])
    start, cpu = time.perf_counter(), time.process_time()
    pq.write_table(table, root / "floor.parquet")
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"rows": table.num_rows, "seconds": seconds, "rows_per_s": table.num_rows / seconds,
            "rows_per_cpu_s": table.num_rows / cpu_s}


def build_log(root: Path, rows: int, chunk: int = 1_000_000) -> Any:
    from modelport.log.delta import DeltaStore
    from modelport.log.schema import FEEDBACK_SCHEMA

    store = DeltaStore(str(root / "big"))
    rng = np.random.default_rng(1)
    t0 = 1_800_000_000_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ids = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
        at = t0 + rng.integers(0, 48 * 3600 * 1_000_000, n)
        day = np.where(at - t0 < 24 * 3600 * 1_000_000, "2027-01-15", "2027-01-16")
        proba = rng.random(n)
        store.append_predictions("bench", pa.table({
            "prediction_id": ids, "predicted_at": pa.array(at, pa.timestamp("us", "UTC")),
            "date": pa.array(day), "model": pa.array(np.full(n, "bench")),
            "version": pa.array(rng.integers(1, 4, n)),
            "prediction": pa.array((proba > 0.5).astype(np.int64)),
            "probability_0": pa.array(1 - proba), "probability_1": pa.array(proba)}))
        mask = rng.random(n) < 0.7
        fb_ids = ids.filter(pa.array(mask))
        k = len(fb_ids)
        truth = np.where(rng.random(k) < 0.8, (proba[mask] > 0.5), (proba[mask] <= 0.5))
        twice = rng.random(k) < 0.05
        label_text = pa.array(np.where(truth, "1", "0"))
        for part, received in ((slice(None), t0 + 50 * 3600 * 1_000_000),):
            store.append_feedback(pa.table({
                "prediction_id": fb_ids[part], "model": pa.nulls(k, pa.string()),
                "entity_key": pa.nulls(k, pa.string()),
                "at": pa.nulls(k, pa.timestamp("us", "UTC")),
                "window_s": pa.nulls(k, pa.float64()), "label": label_text[part],
                "value": pa.nulls(k, pa.float64()), "reward": pa.nulls(k, pa.float64()),
                "received_at": pa.array(np.full(k, received), pa.timestamp("us", "UTC")),
                "source": pa.array(np.full(k, "bench")),
                "date": pa.array(np.full(k, "2027-01-17")),
            }, schema=FEEDBACK_SCHEMA))
        again = fb_ids.filter(pa.array(twice))  # a second, later copy of 5 % of the labels
        j = len(again)
        store.append_feedback(pa.table({
            "prediction_id": again, "model": pa.nulls(j, pa.string()),
            "entity_key": pa.nulls(j, pa.string()), "at": pa.nulls(j, pa.timestamp("us", "UTC")),
            "window_s": pa.nulls(j, pa.float64()),
            "label": label_text.filter(pa.array(twice)), "value": pa.nulls(j, pa.float64()),
            "reward": pa.nulls(j, pa.float64()),
            "received_at": pa.array(np.full(j, t0 + 51 * 3600 * 1_000_000),
                                    pa.timestamp("us", "UTC")),
            "source": pa.array(np.full(j, "bench")), "date": pa.array(np.full(j, "2027-01-17")),
        }, schema=FEEDBACK_SCHEMA))
    return store


QUERY = """
    SELECT version, time_bucket(INTERVAL 1 HOUR, predicted_at) AS hour,
           avg((label = prediction)::DOUBLE) AS accuracy, count(*) AS labeled
    FROM labeled WHERE label IS NOT NULL GROUP BY ALL ORDER BY version, hour
"""


def query_duckdb(store: Any) -> tuple[float, Any]:
    from modelport.log.views import query

    start = time.perf_counter()
    result = query(QUERY, store, model="bench")
    return time.perf_counter() - start, result.to_pandas()  # (the result is 144 rows)


def query_pandas(store: Any) -> tuple[float, float, Any]:
    import pandas as pd
    from deltalake import DeltaTable

    start = time.perf_counter()
    preds = DeltaTable(store.predictions_uri("bench")).to_pandas(
        columns=["prediction_id", "predicted_at", "version", "prediction"])
    feedback = DeltaTable(store.feedback_uri).to_pandas(
        columns=["prediction_id", "label", "received_at"])
    loaded = time.perf_counter()
    preds = preds.drop_duplicates("prediction_id")
    latest = feedback.sort_values("received_at").drop_duplicates("prediction_id", keep="last")
    joined = preds.merge(latest, on="prediction_id", how="inner")
    joined["label"] = pd.to_numeric(joined["label"], errors="coerce")
    joined = joined[joined["label"].notna()]
    joined["hour"] = joined["predicted_at"].dt.floor("h")
    joined["correct"] = (joined["label"] == joined["prediction"]).astype(float)
    out = joined.groupby(["version", "hour"]).agg(accuracy=("correct", "mean"),
                                                  labeled=("correct", "size")).reset_index()
    end = time.perf_counter()
    return end - start, end - loaded, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--skip-query", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="mp-log-bench-") as tmp:
        root = Path(tmp)
        single = bulk_append(root, args.events, 1)
        batched = bulk_append(root, max(1, args.events // 1000), 1000)
        floor = parquet_floor(root, args.events)
        results.update(single_row_events=single, thousand_row_events=batched,
                       parquet_floor=floor)
        print(f"bulk append, 1-row events:     {single['events']:>9,} events in "
              f"{single['seconds']:6.2f} s = {single['events_per_s']:>9,.0f} events/s "
              f"(target >= 200,000); {single['events_per_cpu_s']:,.0f} events per CPU-second "
              f"({single['cpu_s']:.2f} CPU s)")
        print(f"bulk append, 1,000-row events: {batched['rows']:>9,} rows   in "
              f"{batched['seconds']:6.2f} s = {batched['rows_per_s']:>9,.0f} rows/s")
        print(f"floor: one Parquet file of the same rows (pyarrow): {floor['rows_per_s']:,.0f} "
              f"rows/s; 1-row events reach {single['rows_per_s'] / floor['rows_per_s']:.0%} "
              f"of it, 1,000-row events {batched['rows_per_s'] / floor['rows_per_s']:.0%}; "
              f"per CPU-second: floor {floor['rows_per_cpu_s']:,.0f} rows")
        if not args.skip_query:
            t0 = time.perf_counter()
            store = build_log(root, args.rows)
            print(f"built a log of {args.rows:,} predictions + feedback in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            duck_s, duck = query_duckdb(store)
            pandas_s, pandas_compute_s, frame = query_pandas(store)
            same = len(duck) == len(frame) and np.allclose(
                duck["accuracy"].to_numpy(), frame["accuracy"].to_numpy()) and \
                duck["labeled"].tolist() == frame["labeled"].tolist()
            results["query"] = {"rows": args.rows, "duckdb_s": duck_s, "pandas_s": pandas_s,
                                "pandas_compute_only_s": pandas_compute_s,
                                "groups": len(duck), "same_answer": bool(same)}
            print(f"accuracy by version by hour over {args.rows:,} predictions joined with "
                  f"feedback: DuckDB {duck_s:.2f} s, pandas {pandas_s:.2f} s (of which "
                  f"{pandas_compute_s:.2f} s after reading) -> pandas / DuckDB = "
                  f"{pandas_s / duck_s:.1f}x; {len(duck)} groups; same answer: {same}")
    results["load_after"] = os.getloadavg()
    print(f"load average {results['load_before'][0]:.1f} before, "
          f"{results['load_after'][0]:.1f} after (2 shared cores: compare ratios)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
