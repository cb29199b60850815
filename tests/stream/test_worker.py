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
    assert list(first) == ["id", "prediction_id", "prediction", "probabilities", "model",
                           "version", "predicted_at"]
    assert first["prediction"] in (0, 1)
    assert set(first["probabilities"]) == {"0", "1"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-9
    assert first["model"] == "fraud" and first["predicted_at"].endswith("Z")
    assert all(m.key() == f"k{json.loads(m.value())['id']}".encode() for m in got)
    ids = {(m.partition(), m.value()): v["prediction_id"] for m, v in zip(got, values,
                                                                          strict=True)}
    assert len(set(ids.values())) == n  # one id per input, made from its position
    for m, v in zip(got, values, strict=True):
        topic, partition, offset = v["prediction_id"].rsplit("-", 2)
        assert topic == src and int(partition) in (0, 1) and int(offset) >= 0
        position = f"{src}/{partition}/{offset}"
        expected = "req-1" if v["id"] < n // 2 else position
        assert dict(m.headers())["request-id"] == expected.encode()
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
    assert {json.loads(m.value())["version"] for m in first} == {1}
    registry.set_alias("fraud", "production", 2)
    time.sleep(2)
    produce(broker, src, [(f"b{i}".encode(), json.dumps(record(i)).encode()) for i in range(50)])
    got = read_topic(broker, dst, expect=100, timeout=60, settle=0.5)
    assert w.terminate() == 0, w.output()
    versions = {m.key().decode()[0] + str(json.loads(m.value())["version"]) for m in got}
    assert versions == {"a1", "b2"}


def test_a_polled_batch_reads_as_the_messages_the_broker_holds(broker: Broker) -> None:
    from modelport.stream.kafka import KafkaSource
    from modelport.stream.message import Messages

    src = broker.create_topic(unique("in"), partitions=2)
    before_ms = int(time.time() * 1000) - 60_000
    produce(broker, src, [(f"k{i}".encode(), json.dumps({"i": i}).encode()) for i in range(20)])
    source = KafkaSource(broker.bootstrap, [src], unique("g"), session_timeout_ms=6000)
    source.start()
    try:
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            batch = source.poll(100, 0.5)
            if batch:
                assert isinstance(batch, Messages)  # no headers, no errors: kept as columns
                one = batch[len(batch) - 1]  # one message, read without making the others
                assert one.timestamp_ms == batch.timestamps[len(batch) - 1]
                got.extend(batch)
        assert sorted(json.loads(m.value)["i"] for m in got) == list(range(20))
        assert all(m.key == f"k{json.loads(m.value)['i']}".encode() for m in got)
        assert all(m.timestamp_ms is not None and m.timestamp_ms > before_ms for m in got)
        last = {}
        for m in got:
            last[m.partition] = max(last.get(m.partition, -1), m.offset)
        assert {tp.partition: tp.offset for tp in source.offsets(got)} == {
            p: o + 1 for p, o in last.items()}
    finally:
        source.close()
