"""Triton's statistics kept by the edges: pure bookkeeping, checked without a server."""

from __future__ import annotations

import numpy as np

from modelport.core.batch import Batch, Result
from modelport.core.events import PredictionEvent
from modelport.serving.statistics import InferenceStatistics


def _event(model: str, version: int, latency_ms: float) -> PredictionEvent:
    return PredictionEvent(model=model, version=version,
                           inputs=Batch.from_columns({"a": np.zeros(2)}), outputs=Result(2),
                           latency_ms=latency_ms, source="grpc", request_id="r", id="e")


def test_queue_is_the_wait_minus_the_model_call_and_failures_count_apart() -> None:
    stats = InferenceStatistics(clock=lambda: 1700000000.5)
    stats.request("m", "1", ok=True, total_ns=5_000, input_ns=1_000, wait_ns=3_000,
                  output_ns=500)
    stats.request("m", "1", ok=True, total_ns=7_000, input_ns=1_000, wait_ns=4_000,
                  output_ns=500)
    stats.request("m", "1", ok=False, total_ns=900)
    stats.model_call("m", "1", 2)
    stats.model_call("m", "1", 2)
    stats.model_call("m", "1", 5)
    stats.infer(_event("m", 1, 0.002))
    stats.infer(_event("m", 1, 0.003))
    [entry] = stats.snapshot("m")
    out = entry.as_dict()
    inference = out["inference_stats"]
    assert inference["success"] == {"count": 2, "ns": 12_000}
    assert inference["fail"] == {"count": 1, "ns": 900}
    assert inference["compute_infer"] == {"count": 2, "ns": 5_000}
    assert inference["queue"] == {"count": 2, "ns": 7_000 - 5_000}
    assert inference["compute_input"] == {"count": 2, "ns": 2_000}
    assert (out["inference_count"], out["execution_count"]) == (9, 3)
    assert out["batch_stats"][0]["batch_size"] == 2
    assert out["batch_stats"][0]["compute_infer"]["count"] == 2
    assert out["last_inference"] == 1700000000500


def test_snapshots_are_copies_filtered_by_model_and_version() -> None:
    stats = InferenceStatistics()
    stats.ensure("a", "1")
    stats.ensure("a", "2")
    stats.ensure("b", "1")
    assert [(s.name, s.version) for s in stats.snapshot()] == [("a", "1"), ("a", "2"),
                                                               ("b", "1")]
    [only] = stats.snapshot("a", "2")
    only.success.add(10)
    assert stats.snapshot("a", "2")[0].success.count == 0
