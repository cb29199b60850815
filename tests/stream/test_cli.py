"""``modelport stream run`` as a user meets it: mistakes in one line, metrics on a port."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from modelport.cli.main import main
from tests.stream.conftest import (  # type: ignore[import-not-found]
    Broker,
    broker_args,
    free_port,
    produce,
    read_topic,
    record,
    unique,
)


@pytest.mark.parametrize(("source", "message"), [
    ("ftp://x/y", "unknown endpoint"),
    ("kafka://127.0.0.1:9/", "kafka://HOST:PORT/TOPIC"),
    ("postgresql://postgres@127.0.0.1/test", "can be a --sink"),
])
def test_a_wrong_source_is_one_line_and_exit_code_2(
    source: str, message: str, classifier_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stream", "run", str(classifier_bundle), "--source", source,
                 "--sink", "kafka://127.0.0.1:9/out"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("sink", ["postgresql://postgres@127.0.0.1/test", "redis://127.0.0.1:6379/0/out"])
def test_exactly_once_with_a_sink_outside_kafka_is_refused_at_start(
    sink: str, classifier_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stream", "run", str(classifier_bundle), "--source", "kafka://127.0.0.1:9/in",
                 "--sink", sink, "--table", "t", "--exactly-once"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--exactly-once needs a Kafka source" in err and err.count("\n") == 1


def test_a_missing_topic_says_to_create_it(
    noida_broker: Broker, classifier_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stream", "run", str(classifier_bundle),
                 "--source", noida_broker.uri(unique("absent")),
                 "--sink", noida_broker.uri("out")])
    assert code == 2
    assert "create it first" in capsys.readouterr().err


def test_a_database_sink_needs_a_table(
    noida_broker: Broker, classifier_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = noida_broker.create_topic(unique("in"))
    code = main(["stream", "run", str(classifier_bundle), "--source", noida_broker.uri(src),
                 "--sink", "sqlite:///x.db"])
    assert code == 2
    assert "--table" in capsys.readouterr().err


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def _sample(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_port_serves_counts_batches_and_lag_per_partition(
    noida_broker: Broker, classifier_bundle: Path, workers: Any
) -> None:
    broker = noida_broker
    src = broker.create_topic(unique("in"), partitions=2)
    dst = broker.create_topic(unique("out"), partitions=2)
    produce(broker, src, [(f"k{i}".encode(), json.dumps(record(i)).encode())
                          for i in range(500)] + [(b"bad", b"{")])
    port = free_port()
    w = workers([str(classifier_bundle), "--source", broker.uri(src), "--sink", broker.uri(dst),
                 "--group", unique("g"), "--metrics-port", str(port), "--log-format", "json",
                 *broker_args(broker)])
    read_topic(broker, dst, expect=500, timeout=60)
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        try:
            text = _metrics(port)
        except OSError:
            text = ""
        lags = [_sample(text, f'modelport_stream_consumer_lag{{partition="{p}",topic="{src}"}}')
                for p in (0, 1)]
        if lags == [0.0, 0.0]:
            break
        time.sleep(0.5)
    assert lags == [0.0, 0.0], text
    assert _sample(text, f'modelport_stream_messages_in_total{{topic="{src}"}}') == 501
    assert _sample(text, "modelport_stream_messages_out_total") == 500
    assert _sample(text, 'modelport_stream_dead_letters_total{reason="malformed"}') == 1
    assert (_sample(text, "modelport_stream_batch_size_count") or 0) >= 1
    assert w.terminate() == 0
    logs = [json.loads(line) for line in w.output().splitlines() if line.startswith("{")]
    started = next(entry for entry in logs if entry["message"] == "stream worker started")
    assert started["model"] == "fraud" and started["source"].endswith(src)


def test_missing_output_and_dead_letter_topics_are_created_at_start(
    broker: Broker, classifier_bundle: Path, workers: Any
) -> None:
    from confluent_kafka.admin import AdminClient

    src = broker.create_topic(unique("in"), partitions=3)
    dst, dlq = unique("out"), unique("dead")
    produce(broker, src, [(f"k{i}".encode(), json.dumps(record(i)).encode())
                          for i in range(20)] + [(b"bad", b"{")])
    w = workers([str(classifier_bundle), "--source", broker.uri(src), "--sink", broker.uri(dst),
                 "--dead-letter", broker.uri(dlq), "--group", unique("g"), *broker_args(broker)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deadline = time.monotonic() + 60  # made by the worker (a reader could auto-create them)
    while not {dst, dlq} <= set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline and w.alive, w.output()
        time.sleep(0.1)
    assert len(read_topic(broker, dst, expect=20, timeout=90)) == 20
    dead = read_topic(broker, dlq, expect=1, timeout=60)
    assert [m.value() for m in dead] == [b"{"]
    topics = admin.list_topics(timeout=10).topics
    assert len(topics[dst].partitions) == len(topics[dlq].partitions) == 3  # as the source
    assert w.terminate() == 0
