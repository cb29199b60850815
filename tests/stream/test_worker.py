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


def test_predictions_carry_key_prediction_model_offset_and_passthrough(
    broker: Broker, classifier_bundle: Path, workers: Any
) -> None:
    src = broker.create_topic(unique("in"), partitions=2)
    dst = broker.create_topic(unique("out"), partitions=2)
    n = 300
    items = [(f"k{i}".encode(), json.dumps(record(i)).encode()) for i in range(n)]
    produce(broker, src, items[:n // 2], headers=[("request-id", b"req-1")])
    produce(broker, src, items[n // 2:])  # these get a request id made from their position
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
    for m, v in zip(got, values, strict=True):
        position = f"{src}/{v['input_partition']}/{v['input_offset']}"
        expected = "req-1" if v["id"] < n // 2 else position
        assert dict(m.headers())["request-id"] == expected.encode() == v["request_id"].encode()
    assert "stopped after 300 messages" in w.output()


def test_a_registry_alias_is_followed_when_it_moves(
    noida_broker: Broker, classifier_bundle: Path, workers: Any, tmp_path: Path
) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.registry import Registry
    from modelport.settings import Settings

    broker = noida_broker
    home = tmp_path / "home"
    registry = Registry.from_settings(Settings.from_env({"MODELPORT_HOME": str(home)}))
    registry.register(classifier_bundle)
    registry.set_alias("fraud", "production", 1)
    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.normal(size=(200, 5)), columns=[f"f{i}" for i in range(5)])
    second = modelport.save(LogisticRegression().fit(x, (x["f4"] > 0).astype(int)),
                            tmp_path / "fraud2", name="fraud", example=x.head(10))
    registry.register(second)

    src = broker.create_topic(unique("in"))
    dst = broker.create_topic(unique("out"))
    produce(broker, src, [(f"a{i}".encode(), json.dumps(record(i)).encode()) for i in range(50)])
    w = workers(["fraud@production", "--source", broker.uri(src), "--sink", broker.uri(dst),
                 "--group", unique("g"), "--refresh-s", "0.5", *broker_args(broker)],
                env={"MODELPORT_HOME": str(home)})
    first = read_topic(broker, dst, expect=50, timeout=60, settle=0.5)
    assert {json.loads(m.value())["model_version"] for m in first} == {1}
    registry.set_alias("fraud", "production", 2)
    time.sleep(2)
    produce(broker, src, [(f"b{i}".encode(), json.dumps(record(i)).encode()) for i in range(50)])
    got = read_topic(broker, dst, expect=100, timeout=60, settle=0.5)
    assert w.terminate() == 0, w.output()
    versions = {m.key().decode()[0] + str(json.loads(m.value())["model_version"]) for m in got}
    assert versions == {"a1", "b2"}
