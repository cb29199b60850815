"""Triton's per-model inference statistics, kept by the serving edges.

``GET /v2/models/{m}/stats`` and the gRPC ``ModelStatistics`` call answer them in Triton's layout,
so ``tritonclient``'s ``get_inference_statistics`` reads them. Per model version, cumulative since
the server started (per worker process when ``--workers`` is above 1):

==================== ==========================================================================
``success``          requests answered, and their time from request to response
``fail``             requests that failed after naming a served model, and their time
``queue``            time requests waited for a model call (their wait minus ``compute_infer``)
``compute_input``    time decoding request bodies into the model's batch
``compute_infer``    time inside the model call that answered each request
``compute_output``   time encoding answers
``inference_count``  rows predicted; ``execution_count``: model calls (a micro-batch is one)
``batch_stats``      model calls per batch size (rows per call)
==================== ==========================================================================

The edges call :meth:`InferenceStatistics.request` once per request with the times they measured;
the runners' batch hook calls :meth:`model_call`; prediction events give :meth:`infer`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelport.core.events import PredictionEvent

Clock = Callable[[], float]


@dataclass
class Duration:
    """A count and cumulative nanoseconds (Triton's ``StatisticDuration``)."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += max(0, ns)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class ModelStatistics:
    """The statistics of one model version."""

    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    waited_ns: int = 0  # queue + infer, as the edges measured it
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    #: rows per call -> model calls of that size
    batch_calls: dict[int, int] = field(default_factory=dict)

    @property
    def queue(self) -> Duration:
        return Duration(self.success.count, max(0, self.waited_ns - self.compute_infer.ns))

    def as_dict(self) -> dict[str, Any]:
        """Triton's JSON layout (``model_stats`` entries of ``/v2/models/{m}/stats``)."""
        empty = Duration().as_dict()
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": self.compute_input.as_dict(),
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": self.compute_output.as_dict(),
                "cache_hit": empty,
                "cache_miss": empty,
            },
            "batch_stats": [
                {"batch_size": size, "compute_input": empty,
                 "compute_infer": {"count": calls, "ns": 0}, "compute_output": empty}
                for size, calls in sorted(self.batch_calls.items())
            ],
        }


class InferenceStatistics:
    """Cumulative statistics per (model, version); thread-safe (runners call from threads)."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], ModelStatistics] = {}

    def _of(self, model: str, version: str) -> ModelStatistics:
        key = (model, version)
        stats = self._models.get(key)
        if stats is None:
            stats = self._models[key] = ModelStatistics(model, version)
        return stats

    def request(self, model: str, version: str, *, ok: bool, total_ns: int, input_ns: int = 0,
                wait_ns: int = 0, output_ns: int = 0) -> None:
        """One request the edge answered: its whole time and the parts it measured."""
        with self._lock:
            stats = self._of(model, version)
            if not ok:
                stats.fail.add(total_ns)
                return
            stats.success.add(total_ns)
            stats.compute_input.add(input_ns)
            stats.compute_output.add(output_ns)
            stats.waited_ns += max(0, wait_ns)
            stats.last_inference_ms = int(self._clock() * 1000)

    def model_call(self, model: str, version: str, rows: int) -> None:
        """One model call of ``rows`` rows (the runners' batch hook)."""
        with self._lock:
            stats = self._of(model, version)
            stats.execution_count += 1
            stats.inference_count += rows
            stats.batch_calls[rows] = stats.batch_calls.get(rows, 0) + 1

    def infer(self, event: PredictionEvent) -> None:
        """A prediction event: the time inside the model call that answered one request."""
        with self._lock:
            self._of(event.model, str(event.version)).compute_infer.add(
                int(event.latency_ms * 1_000_000))

    def snapshot(self, model: str | None = None, version: str | None = None
                 ) -> list[ModelStatistics]:
        """Copies of the statistics of ``model`` (every model when None), optionally one
        version, sorted by name and version."""
        with self._lock:
            chosen = [s for (name, ver), s in self._models.items()
                      if (model is None or name == model) and (version is None or ver == version)]
            return [_copy(s) for s in sorted(chosen, key=lambda s: (s.name, s.version))]

    def ensure(self, model: str, version: str) -> None:
        """Make an empty entry, so a served model that has not predicted yet is listed."""
        with self._lock:
            self._of(model, version)


def _copy(stats: ModelStatistics) -> ModelStatistics:
    return ModelStatistics(
        stats.name, stats.version, stats.last_inference_ms, stats.inference_count,
        stats.execution_count, Duration(stats.success.count, stats.success.ns),
        Duration(stats.fail.count, stats.fail.ns), stats.waited_ns,
        Duration(stats.compute_input.count, stats.compute_input.ns),
        Duration(stats.compute_infer.count, stats.compute_infer.ns),
        Duration(stats.compute_output.count, stats.compute_output.ns), dict(stats.batch_calls))


__all__ = ["Duration", "InferenceStatistics", "ModelStatistics"]
