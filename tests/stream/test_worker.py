"""End to end through ``modelport stream run``: Kafka in, Kafka out, on both brokers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.stream.conftest import (  # type: ignore[import-not-found]
    Broker,
    broker_args,
    produce,
    read_topic,
    record,
    unique,
)


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_predictions_carry_key_prediction_model_offset_and_passthrough(
    broker: Broker, classifier_bundle: Path, workers: Any
) -> None:
    src = broker.create_topic(unique("in"), partitions=2)
    dst = broker.create_topic(unique("out"), partitions=2)
    n = 300
    items = [(f"k{i}".encode(), json.dumps(record(i)).encode()) for i in range(n)]
    produce(broker, src, items, headers=[("request-id", b"req-1")])
    w = workers([str(classifier_bundle), "--source", broker.uri(src), "--sink", broker.uri(dst),
                 "--group", unique("g"), "--passthrough", "id", "--max-batch", "64",
                 *broker_args(broker)])
    got = read_topic(broker, dst, expect=n, timeout=60)
    assert w.terminate() == 0, w.output()
    assert len(got) == n
    values = [json.loads(m.value()) for m in got]
    assert sorted(v["id"] for v in values) == list(range(n))
    first = values[0]
    assert first["key"] == f"k{first['id']}"
    assert first["label"] in (0, 1)
    assert set(first["probabilities"]) == {"0", "1"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-9
    assert first["model"] == "fraud"
    assert first["input_topic"] == src and isinstance(first["input_offset"], int)
    assert first["latency_ms"] >= 0
    assert all(m.key() == f"k{json.loads(m.value())['id']}".encode() for m in got)
    assert all(dict(m.headers())["request-id"] == b"req-1" for m in got)
    assert "stopped after 300 messages" in w.output()
