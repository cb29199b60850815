"""Prometheus metrics of the serving edge, on a registry passed in (never the global one).

With several worker processes, each worker writes its samples to ``multiproc_dir`` (prometheus
client's multiprocess mode, enabled by the supervisor before workers start) and ``render()``
aggregates every worker's files, so any worker answers ``/metrics`` for the whole server.

=========================================== ===========================================
metric                                      labels
=========================================== ===========================================
``modelport_requests_total``                model, version, protocol, status
``modelport_request_duration_seconds``      model, protocol (histogram)
``modelport_batch_rows``                    model, version (histogram of model calls)
``modelport_queue_rows``                    model, version (rows waiting, summed)
``modelport_predicted_rows_total``          model, version (from the core's events)
``modelport_model_load_failures_total``     model
``process_*``                               (CPU seconds, memory, open files, start time)
=========================================== ===========================================

Every protocol is counted under its own ``protocol`` label: ``v2``, ``v1``, ``mlflow``,
``simple`` and ``grpc``. The same hooks keep Triton's per-model inference statistics
(:mod:`modelport.serving.statistics`) in ``ServingMetrics.statistics``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

from modelport.core.events import PredictionEvent
from modelport.core.runner import Runner
from modelport.serving.statistics import InferenceStatistics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry, *, multiproc_dir: str | None = None) -> None:
        self.registry = registry
        self.multiproc_dir = multiproc_dir
        self.statistics = InferenceStatistics()
        _add_process_collector(registry)
        self.requests = Counter(
            "modelport_requests", "Requests answered, by model, version, protocol and status.",
            ["model", "version", "protocol", "status"], registry=registry)
        self.latency = Histogram(
            "modelport_request_duration_seconds", "Time from request to response.",
            ["model", "protocol"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.batch_rows = Histogram(
            "modelport_batch_rows", "Rows per model call made by the micro-batcher.",
            ["model", "version"], buckets=_ROW_BUCKETS, registry=registry)
        self.queue_rows = Gauge(
            "modelport_queue_rows", "Rows waiting for a model call.", ["model", "version"],
            registry=registry, multiprocess_mode="livesum")
        self.predicted_rows = Counter(
            "modelport_predicted_rows", "Rows predicted, counted from prediction events.",
            ["model", "version"], registry=registry)
        self.load_failures = Counter(
            "modelport_model_load_failures", "Model versions that failed to load or reload.",
            ["model"], registry=registry)
        # labelled children, cached: labels() costs more than the increment itself
        self._request_children: dict[tuple[str, str, str, int | str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._model_children: dict[tuple[str, str | None], tuple[Any, Any, Any]] = {}

    def observe_request(self, model: str, version: str, protocol: str, status: int | str,
                        seconds: float, *, input_s: float = 0.0, wait_s: float = 0.0,
                        output_s: float = 0.0) -> None:
        """One answered request; ``input_s`` / ``wait_s`` / ``output_s`` are the times spent
        decoding, waiting for the model's answer and encoding (Triton's statistics).
        ``status`` is the HTTP status, or the gRPC status code's name (``OK``, ``NOT_FOUND``).
        """
        if version:  # the request named a served model
            ok = status == "OK" if isinstance(status, str) else status < 400
            self.statistics.request(
                model, version, ok=ok, total_ns=int(seconds * 1e9),
                input_ns=int(input_s * 1e9), wait_ns=int(wait_s * 1e9),
                output_ns=int(output_s * 1e9))
        key = (model, version, protocol, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(
                model, version, protocol, str(status))
        child.inc()
        lkey = (model, protocol)
        lchild = self._latency_children.get(lkey)
        if lchild is None:
            lchild = self._latency_children[lkey] = self.latency.labels(model, protocol)
        lchild.observe(seconds)

    def _per_model(self, model: str, version: int | None) -> tuple[Any, Any, Any]:
        key = (model, str(version))
        children = self._model_children.get(key)
        if children is None:
            children = self._model_children[key] = (
                self.batch_rows.labels(*key), self.queue_rows.labels(*key),
                self.predicted_rows.labels(*key))
        return children

    def observe_batch(self, runner: Runner, rows: int) -> None:
        """The runners' per-call hook (``Runner.on_batch``)."""
        batch_rows, queue_rows, _ = self._per_model(runner.name, runner.version)
        batch_rows.observe(rows)
        queue_rows.set(runner.queued_rows)
        self.statistics.model_call(runner.name, str(runner.version), rows)

    def observe_event(self, event: PredictionEvent) -> None:
        """An ``EventBus`` observer: counts rows off the hot path."""
        self._per_model(event.model, event.version)[2].inc(event.n_rows)
        self.statistics.infer(event)

    def load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def render(self) -> bytes:
        if self.multiproc_dir:
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                registry, path=self.multiproc_dir)
            _add_process_collector(registry)  # the answering worker's own process
            return generate_latest(registry)
        return generate_latest(self.registry)


def _add_process_collector(registry: CollectorRegistry) -> None:
    """``process_*`` metrics on ``registry`` (once: a second collector of one name fails)."""
    with contextlib.suppress(ValueError):  # the registry already has them
        ProcessCollector(registry=registry)


def multiprocess_enabled() -> str | None:
    """The multiprocess directory when this process writes multiprocess samples."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
