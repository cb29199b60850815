"""``StreamMetrics``: the Prometheus series of one stream worker, on a registry passed in."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StreamMetrics:
    """Messages in/out, dead letters, batch sizes, processing latency and lag per partition."""

    def __init__(self, registry: CollectorRegistry, *, namespace: str = "modelport_stream") -> None:
        self.registry = registry
        self.messages_in = Counter(
            "messages_in", "Messages read from the source", ["topic"],
            namespace=namespace, registry=registry)
        self.messages_out = Counter(
            "messages_out", "Predictions written to the sink", namespace=namespace,
            registry=registry)
        self.dead_letters = Counter(
            "dead_letters", "Messages sent to the dead-letter destination", ["reason"],
            namespace=namespace, registry=registry)
        self.batch_size = Histogram(
            "batch_size", "Messages per micro-batch", namespace=namespace,
            buckets=_BATCH_BUCKETS, registry=registry)
        self.processing = Histogram(
            "processing_seconds", "Time from a batch being read to its commit",
            namespace=namespace, buckets=_LATENCY_BUCKETS, registry=registry)
        self.sink_retries = Counter(
            "sink_retries", "Sink writes retried after a transient error",
            namespace=namespace, registry=registry)
        self.commits = Counter(
            "commits", "Offset commits (or acknowledgements) done", namespace=namespace,
            registry=registry)
        self.revocations = Counter(
            "revocations", "Rebalances that took partitions from this worker",
            namespace=namespace, registry=registry)
        self.lag = Gauge(
            "consumer_lag", "Messages waiting per partition", ["topic", "partition"],
            namespace=namespace, registry=registry)
        self._lag_keys: set[tuple[str, str]] = set()

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        keys = {(topic, str(partition)) for topic, partition in lag}
        for stale in self._lag_keys - keys:  # partitions this worker no longer owns
            self.lag.remove(*stale)
        for (topic, partition), value in lag.items():
            self.lag.labels(topic, str(partition)).set(value)
        self._lag_keys = keys
