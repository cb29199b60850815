"""The prediction log end to end: 10,000 predictions over REST, gRPC and a stream worker into
one Delta table, feedback for 70 % of them through every channel, ``log metrics`` equal to a
hand computation; ``kill -9`` of a stream worker; the PostgreSQL and Kafka sinks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import struct_pb2

import modelport.log as ml
from modelport.log import LogConfig, PredictionLog
from modelport.log.delta import DeltaStore
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.stream.conftest import (  # type: ignore[import-not-found]
    FEATURES,
    Broker,
    broker_args,
    free_port,
    produce,
    read_topic,
    record,
    unique,
)

PG_URL = os.environ.get("MODELPORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def truth(rec: dict[str, Any]) -> int:
    """The label the world reveals later (a rule the model only approximates)."""
    return int(rec["f0"] + 0.8 * rec["f1"] + 0.3 * rec["f2"] > 0)


@pytest.fixture
def home(tmp_path: Path, classifier_bundle: Path) -> Path:
    from modelport.registry import Registry
    from modelport.settings import Settings

    home = tmp_path / "home"
    with Registry.from_settings(Settings.from_env({}, home=str(home))) as reg:
        reg.register(classifier_bundle)
    return home


def env_of(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    return {**env, "MODELPORT_HOME": str(home), "OMP_NUM_THREADS": "1"}


def cli(home: Path, *args: str, timeout: float = 120) -> str:
    out = subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], env=env_of(home),
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start_server(home: Path, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with (tmp_path / f"serve-{port}.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "modelport.cli.main", "serve", "fraud",
                                 "--port", str(port), *args], env=env_of(home), stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start")


def test_10000_predictions_over_rest_grpc_and_stream_with_70_percent_feedback(
        noida_broker: Broker, home: Path, tmp_path: Path, workers: Any) -> None:
    broker = noida_broker
    config = tmp_path / "log.yaml"
    config.write_text("flush_seconds: 0.5\n")
    slow = tmp_path / "slow.yaml"  # the stream's rows wait in memory: feedback arrives first
    slow.write_text("flush_seconds: 600\nflush_rows: 1000000\n")
    grpc_port = free_port()
    server, url = start_server(home, tmp_path, "--workers", "2", "--grpc-port", str(grpc_port),
                               "--log", "delta", "--log-config", str(config))
    records: dict[str, dict[str, Any]] = {}  # prediction id -> input record
    answered: dict[str, int] = {}
    try:
        with httpx.Client(base_url=url) as client:
            for r in range(60):  # 3,000 over REST, 50 rows a request
                batch = [record(100_000 + r * 50 + k) for k in range(50)]
                body = client.post("/predict/fraud", json=batch).json()
                for rec, p in zip(batch, body["predictions"], strict=True):
                    records[p["prediction_id"]] = rec
                    answered[p["prediction_id"]] = p["prediction"]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for r in range(40):  # 2,000 over gRPC
                batch = [record(200_000 + r * 50 + k) for k in range(50)]
                rows = np.array([[rec[f] for f in FEATURES] for rec in batch])
                tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP64",
                                                               shape=list(rows.shape))
                tensor.contents.fp64_contents.extend(rows.ravel().tolist())
                response, call = stub.ModelInfer.with_call(
                    pb.ModelInferRequest(model_name="fraud", inputs=[tensor]))
                pid = dict(call.trailing_metadata())["x-prediction-id"]
                labels = next(o for o in response.outputs if o.name == "label")
                for k, rec in enumerate(batch):
                    records[f"{pid}-{k}"] = rec
                    answered[f"{pid}-{k}"] = int(labels.contents.int64_contents[k])

        src = broker.create_topic(unique("in"), partitions=2)
        dst = broker.create_topic(unique("out"), partitions=2)
        stream_records = [record(300_000 + i) for i in range(5000)]
        produce(broker, src, [(None, json.dumps(r).encode()) for r in stream_records])
        worker = workers(["fraud", "--source", broker.uri(src), "--sink", broker.uri(dst),
                          "--group", unique("g"), "--passthrough", "id", "--log", "delta",
                          "--log-config", str(slow),
                          *broker_args(broker)], env=env_of(home))
        got = read_topic(broker, dst, expect=5000, timeout=120)
        for m in got:
            value = json.loads(m.value())
            pid = value["prediction_id"]
            records[pid] = record(value["id"])  # the input's id, passed through
            answered[pid] = value["prediction"]
        assert len(records) == 10_000

        rng = np.random.default_rng(0)
        ids = sorted(records)
        labeled = [p for p in ids if rng.random() < 0.7]
        labels = {p: truth(records[p]) for p in labeled}
        stream_ids = [p for p in labeled if p.startswith(src)]
        other = [p for p in labeled if not p.startswith(src)]
        half = len(other) // 2
        # the stream's labels come through a Kafka label topic, before its rows are flushed
        label_topic = broker.create_topic(unique("labels"))
        items = [{"prediction_id": p, "label": labels[p]} for p in stream_ids]
        items += [{"prediction_id": f"unknown-{i}", "label": 1} for i in range(50)]
        produce(broker, label_topic, [(None, json.dumps(it).encode()) for it in items]
                + [(None, b"not json")])
        out = json.loads(cli(home, "feedback", "consume", "--source",
                             broker.uri(label_topic), "--idle-exit", "3", "--json",
                             "--model", "fraud"))
        assert out == {"messages": len(items) + 1, "stored": len(items), "invalid": 1}
        assert worker.alive  # its rows are still waiting to be flushed
        with httpx.Client(base_url=url) as client:
            for start in range(0, half, 500):
                part = other[start:start + 500]
                r = client.post("/feedback/fraud", json=[{"prediction_id": p, "label": labels[p]}
                                                         for p in part])
                assert r.json() == {"accepted": len(part)}
            repeat = [{"prediction_id": p, "label": labels[p]} for p in other[:300]]
            assert client.post("/feedback", json={"items": repeat}).status_code == 200
        request = struct_pb2.Struct()
        request.update({"model": "fraud", "items": [{"prediction_id": p, "label": labels[p]}
                                                    for p in other[half:]]})
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary("/modelport.FeedbackService/Feedback",
                                       request_serializer=struct_pb2.Struct.SerializeToString,
                                       response_deserializer=struct_pb2.Struct.FromString)
            assert call(request)["accepted"] == len(other) - half
        assert worker.terminate() == 0  # SIGTERM: the stream's rows are flushed now
    finally:
        server.terminate()
        server.wait(60)

    metrics = json.loads(cli(home, "log", "metrics", "fraud", "--by", "none", "--json"))[0]
    hand = sum(labels[p] == answered[p] for p in labeled) / len(labeled)
    assert metrics["predictions"] == 10_000 and metrics["labeled"] == len(labeled)
    assert metrics["coverage"] == pytest.approx(len(labeled) / 10_000)
    assert metrics["accuracy"] == pytest.approx(hand)
    by_source = ml.query("SELECT split_part(source, ':', 1) AS s, count(*) AS n FROM "
                         "predictions GROUP BY 1 ORDER BY 1", model="fraud",
                         store=DeltaStore(str(home / "log"))).to_pylist()
    assert by_source == [{"s": "grpc", "n": 2000}, {"s": "simple", "n": 3000},
                         {"s": "stream", "n": 5000}]
    unmatched = cli(home, "log", "query", "SELECT count(*) AS n FROM unmatched_feedback",
                    "--model", "fraud", "--format", "json")
    assert json.loads(unmatched) == {"n": 50}


def test_kill_9_of_a_stream_worker_keeps_the_table_readable_and_the_rerun_adds_no_duplicates(
        noida_broker: Broker, classifier_bundle: Path, tmp_path: Path, workers: Any) -> None:
    broker = noida_broker
    src = broker.create_topic(unique("in"))
    dst = broker.create_topic(unique("out"))
    n, step, pause = 4000, 100, 0.1  # input paced at ~1,000 messages/s
    config = tmp_path / "log.yaml"
    config.write_text("flush_seconds: 0.3\n")
    env = {"MODELPORT_HOME": str(tmp_path / "home")}
    args = [str(classifier_bundle), "--source", broker.uri(src), "--sink", broker.uri(dst),
            "--group", unique("g"), "--max-batch", "50", "--log", "delta", "--log-config",
            str(config), *broker_args(broker)]
    first = workers(args, env=env)
    produced: list[tuple[float, int]] = []

    def feed() -> None:
        for start in range(0, n, step):
            produce(broker, src, [(None, json.dumps(record(i)).encode())
                                  for i in range(start, start + step)])
            produced.append((time.monotonic(), step))
            time.sleep(pause)

    feeder = threading.Thread(target=feed)
    feeder.start()
    # killed after two thirds: losing everything it predicted would break the bound below
    read_topic(broker, dst, expect=2 * n // 3, timeout=60, settle=0)
    killed_at = time.monotonic()
    first.kill()  # mid-run, mid-flush
    store = DeltaStore(str(tmp_path / "home" / "log"))
    before = ml.read(model="fraud", store=store).column("prediction_id").to_pylist()
    assert before and len(before) == len(set(before))
    second = workers(args, env=env)
    deadline = time.monotonic() + 60
    while "stream worker started" not in second.output() and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGTERM before the worker is up would kill it, not stop it
    feeder.join(120)
    read_topic(broker, dst, expect=n, timeout=120,
               complete=lambda ms: len({m.offset() for m in ms}) >= n)
    assert second.terminate() == 0, second.output()
    ids = ml.read(model="fraud", store=store).column("prediction_id").to_pylist()
    expected = {f"{src}-0-{i}" for i in range(n)}
    assert len(ids) == len(set(ids)) and set(ids) <= expected
    # lost: only what the killed worker predicted in its last flush interval (+ one commit),
    # which the paced input bounds: what was produced in that time before the kill
    window = sum(k for t, k in produced if killed_at - 1.5 <= t <= killed_at)
    assert len(expected - set(ids)) <= window + 2 * step
    raw = ml.query("SELECT count(*) FROM predictions", model="fraud", store=store)
    assert raw.column(0).to_pylist() == [len(ids)]


@pytest.fixture
def pg_url() -> str:
    return f"{PG_URL}?log_prefix=t{uuid.uuid4().hex[:8]}_"


def test_postgres_and_kafka_sinks_hold_the_same_predictions(
        noida_broker: Broker, tmp_path: Path, pg_url: str, classifier_bundle: Path) -> None:
    import psycopg
    from confluent_kafka import Consumer, TopicPartition

    import modelport
    from modelport.core.events import EventBus
    from modelport.core.runner import Runner
    from modelport.log.kafka import KafkaStore
    from modelport.log.postgres import PostgresStore

    topic = noida_broker.create_topic(unique("log"))
    pg = PostgresStore(pg_url)
    kafka = KafkaStore(noida_broker.bootstrap, topic)
    bus = EventBus()
    plog = PredictionLog([pg, kafka], LogConfig(flush_seconds=60))
    bus.subscribe(plog)
    model = modelport.load(str(classifier_bundle))
    runner = Runner(model, events=bus)
    rows = [record(i) for i in range(30)]
    runner.predict(model.coerce(rows[:20]), prediction_id="p1")
    runner.predict(model.coerce(rows[20:]), prediction_id="p2", row_ids=[f"s-{i}" for i in
                                                                          range(10)])
    bus.flush()
    plog.flush()
    plog.flush()  # nothing new: no duplicate rows
    ids = {f"p1-{i}" for i in range(20)} | {f"s-{i}" for i in range(10)}
    table = ml.read(model="fraud", store=pg)
    assert set(table.column("prediction_id").to_pylist()) == ids and table.num_rows == 30
    assert table.column("probability_1").null_count == 0
    pg.append_predictions("fraud", ml.read(model="fraud", store=pg).slice(0, 5))  # a rerun
    assert ml.read(model="fraud", store=pg).num_rows == 30
    ml.feedback("p1-3", label=1, store=pg)
    assert ml.read(model="fraud", store=pg, labeled=True).to_pandas().set_index(
        "prediction_id").loc["p1-3", "label"] == 1
    plog.close()  # closes both stores
    with psycopg.connect(PG_URL) as conn:
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s",
            (pg.predictions_table,)).fetchall()}
        assert f"{pg.predictions_table}_model_time" in indexes
        conn.execute(f"DROP TABLE {pg.predictions_table}, {pg.feedback_table}")
    consumer = Consumer({"bootstrap.servers": noida_broker.bootstrap, "group.id": unique("r"),
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while len(got) < 30 and time.monotonic() < deadline:
        got.extend(m for m in consumer.consume(100, 0.5) if m.error() is None)
    consumer.close()
    assert {m.key().decode() for m in got} == ids and len(got) == 30
    message = json.loads(got[0].value())
    assert message["prediction_id"] == got[0].key().decode()
    assert set(message["inputs"]) == set(FEATURES) and message["model"] == "fraud"
