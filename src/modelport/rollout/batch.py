"""Batch jobs through an endpoint: rows are split by a key column exactly as online requests
with that key would be (the same sticky hash), each variant scores its rows, and the output
has one row per input row in the input's order, in the one output schema plus ``endpoint``
and ``variant`` columns. A shadow (``--shadow REF``, or the endpoint's own shadows) scores the
same rows and an agreement report is written next to the output.

Per-variant row counts and latencies go to the endpoint's statistics (source ``batch``), and
every prediction event carries the endpoint and variant (the prediction log records them).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from modelport.errors import ConfigurationError
from modelport.rollout.policy import decide
from modelport.rollout.router import compare_into
from modelport.rollout.spec import EndpointSpec, EndpointState
from modelport.rollout.telemetry import ShadowStats, VariantStats

if TYPE_CHECKING:
    from modelport.core.runner import Runner
    from modelport.registry import Registry

#: policies whose split depends on the key (the others route every row alike)
KEYED = ("canary", "split")


@dataclass
class EndpointBatchSummary:
    run_id: str
    endpoint: str
    rows: int
    output: str
    variants: dict[str, int] = field(default_factory=dict)
    shadows: dict[str, dict[str, Any]] = field(default_factory=dict)
    shadow_report: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "endpoint": self.endpoint, "rows": self.rows,
                "output": self.output, "variants": self.variants, "shadows": self.shadows,
                "shadow_report": self.shadow_report, "duration_s": self.duration_s}


def run(registry: Registry, *, input: str, output: str, endpoint: str | None = None,
        ref: str | None = None, routing_key: str | None = None, keep: tuple[str, ...] = (),
        shadow: str | None = None, shadow_report: str | None = None,
        run_id: str | None = None, query: str | None = None, input_format: str | None = None,
        storage_options: dict[str, Any] | None = None, trusted: bool = False,
        accelerate: str = "auto", seed: int = 0) -> EndpointBatchSummary:
    """Score ``input`` into ``output`` (a ``.parquet`` or ``.csv`` file) through ``endpoint``
    (or the single model ``ref``), optionally shadowed by ``shadow``."""
    from modelport.batch.source import open_source
    from modelport.core.runner import RunnerOptions
    from modelport.core.service import InferenceService
    from modelport.rollout.store import EndpointStore

    started = time.perf_counter()
    store = EndpointStore(registry, actor="modelport-batch")
    if endpoint is not None:
        current = store.get(endpoint)
        spec, state = current.spec, current.state
    elif ref is not None:
        spec = EndpointSpec.from_dict({"name": "batch", "variants": {"main": ref}})
        state = EndpointState()
    else:
        raise ConfigurationError("name a model or --endpoint NAME to score with")
    shadows = {v: spec.variants[v] for v in spec.shadows}
    if shadow is not None:
        shadows["shadow"] = shadow
    key = routing_key or spec.key
    out_path = Path(output)
    if out_path.suffix not in (".parquet", ".csv"):
        raise ConfigurationError(
            "with --endpoint or --shadow the output is one file: give --output a .parquet or "
            ".csv path")
    source = open_source(input, query=query, format=input_format,
                         storage_options=storage_options)
    schema = source.schema()
    if spec.policy in KEYED and len(spec.answering()) > 1 and key is None:
        raise ConfigurationError(
            f"endpoint {spec.name!r} splits rows by a key: name the key column with "
            "--routing-key COLUMN (or set the endpoint's key with 'modelport endpoint set "
            f"{spec.name} --key COLUMN')")
    if key is not None and key not in schema.names:
        raise ConfigurationError(
            f"the input has no routing key column {key!r} (columns: "
            f"{', '.join(schema.names[:10])}); pass --routing-key COLUMN")
    for name in keep:
        if name not in schema.names:
            raise ConfigurationError(f"--keep {name!r} is not a column of the input")
    options = RunnerOptions(accelerate=accelerate)  # type: ignore[arg-type]
    service = InferenceService(registry, options=options, trusted=trusted)
    try:
        runners = {v: service.runner(r) for v, r in spec.variants.items()
                   if v not in spec.shadows}
        shadow_runners = {v: service.runner(r) for v, r in shadows.items()}
        if run_id is None:
            identity = json.dumps({"spec": spec.to_dict(), "state": state.to_dict(),
                                   "input": source.fingerprint(), "output": output,
                                   "shadow": shadow}, sort_keys=True, default=str)
            run_id = f"run-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
        summary = EndpointBatchSummary(run_id, spec.name, 0, output)
        stats: dict[str, VariantStats] = {}
        shadow_stats = {v: ShadowStats() for v in shadows}
        rng = random.Random(seed)
        stamp = datetime.now(UTC)
        tables = []
        offset = 0
        counts: Counter[str] = Counter()
        for chunk in source.batches():
            keys = chunk.column(key).to_pylist() if key is not None else [None] * chunk.num_rows
            chosen = [decide(spec, state, None if k is None else str(k), rng=rng).variant
                      for k in keys]
            groups: dict[str, list[int]] = {}
            for i, variant in enumerate(chosen):
                groups.setdefault(variant, []).append(i)
            parts = []
            for variant, rows in groups.items():
                index = pa.array(rows, pa.int64())
                part = chunk.take(index)
                table, result, batch, ms = _score(runners[variant], part, rows, offset, run_id,
                                                  spec.name, variant, keep, stamp)
                parts.append((rows, table))
                counts[variant] += len(rows)
                stats.setdefault(variant, VariantStats()).observe(
                    ms / max(len(rows), 1), count=len(rows))
                for sv, runner in shadow_runners.items():
                    _shadow(runner, batch, result, shadow_stats[sv], spec.name, sv)
            order = np.argsort(np.concatenate([np.asarray(r) for r, _ in parts]), kind="stable")
            merged = pa.concat_tables([t for _, t in parts], promote_options="permissive")
            tables.append(merged.take(pa.array(order)))
            offset += chunk.num_rows
        summary.rows = offset
        summary.variants = dict(counts)
        _write(tables, out_path)
        rows_to_record = [(spec.name, v, "serve", "batch", s.to_dict()) for v, s in stats.items()]
        if endpoint is not None:
            rows_to_record += [(spec.name, v, "shadow", "batch", s.to_dict())
                               for v, s in shadow_stats.items() if v in spec.shadows]
            store.record_stats(rows_to_record)
        summary.shadows = {v: s.summary() for v, s in shadow_stats.items()}
        if shadows:
            report = Path(shadow_report) if shadow_report else out_path.with_name(
                out_path.name + ".shadow.json")
            report.write_text(json.dumps({"run_id": run_id, "endpoint": spec.name,
                                          "rows": offset, "shadows": {
                                              v: {"ref": shadows[v], **s}
                                              for v, s in summary.shadows.items()}},
                                         indent=2, default=str))
            summary.shadow_report = str(report)
        service.events.flush()
    finally:
        service.close()
    summary.duration_s = round(time.perf_counter() - started, 3)
    return summary


def _score(runner: Runner, part: pa.RecordBatch, rows: list[int], offset: int, run_id: str,
           endpoint: str, variant: str, keep: tuple[str, ...], stamp: datetime
           ) -> tuple[pa.Table, Any, Any, float]:
    from modelport.core.schema import PredictionSchema

    model = runner.model
    batch = model.signature.coerce(part.select(model.signature.input_names), extra="refuse")
    start = time.perf_counter()
    ids = [f"{run_id}-{offset + r}" for r in rows]
    result = runner.predict(batch, source="batch", endpoint=endpoint, variant=variant,
                            request_id=run_id)
    ms = (time.perf_counter() - start) * 1000.0
    table = PredictionSchema.of(model.signature, keys=list(keep)).table(
        result, ids=ids, model=runner.name, version=runner.version, predicted_at=stamp,
        keys={k: part.column(k) for k in keep})
    n = len(rows)
    table = table.append_column("endpoint", pa.repeat(pa.scalar(endpoint, pa.string()), n))
    table = table.append_column("variant", pa.repeat(pa.scalar(variant, pa.string()), n))
    return table, result, batch, ms


def _shadow(runner: Runner, batch: Any, primary: Any, stats: ShadowStats, endpoint: str,
            variant: str) -> None:
    start = time.perf_counter()
    try:
        result = runner.predict(batch, source="batch", endpoint=endpoint, variant=variant)
    except Exception:
        stats.errors += batch.n_rows
        return
    ms = (time.perf_counter() - start) * 1000.0
    compare_into(stats, primary, result)
    stats.latency.observe(ms / max(batch.n_rows, 1), count=batch.n_rows)


def _write(tables: list[pa.Table], path: Path) -> None:
    """All or nothing: written to a temporary file, then renamed over ``path``."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".csv":
        from modelport.core.schema import lists_as_json

        pacsv.write_csv(lists_as_json(table), tmp)
    else:
        pq.write_table(table, tmp)
    tmp.replace(path)


__all__ = ["EndpointBatchSummary", "run"]
