"""The same keys land on the same variants over REST, a Kafka stream and a batch job — and on
the variant the pure policy names (an A/B split by a user key)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from modelport.registry import Registry
from modelport.rollout.policy import decide
from modelport.rollout.spec import EndpointSpec
from modelport.rollout.store import EndpointStore
from tests.stream.conftest import (  # type: ignore[import-not-found]
    Broker,
    Worker,
    produce,
    read_topic,
    record,
    unique,
)

KEYS = [f"user-{i}" for i in range(120)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_same_keys_same_variants_over_rest_stream_and_batch(
        noida_broker: Broker, classifier_bundle: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")},
           "MODELPORT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    registry = Registry(f"sqlite:///{home}/registry.db", home / "artifacts")
    for _ in range(2):
        registry.register(classifier_bundle)
    spec = EndpointSpec.from_dict({"name": "ab", "policy": "split",
                                   "variants": {"a": "fraud:1", "b": "fraud:2"},
                                   "weights": {"a": 50, "b": 50}})
    endpoint = EndpointStore(registry).create(spec)
    expected = {k: decide(spec, endpoint.state, k).variant for k in KEYS}
    assert set(expected.values()) == {"a", "b"}
    version_of = {"a": 1, "b": 2}

    # stream: the message key routes
    source, sink = unique("ab-in"), unique("ab-out")
    noida_broker.create_topic(source, 2)
    produce(noida_broker, source, [(k.encode(), json.dumps(record(i)).encode())
                                   for i, k in enumerate(KEYS)])
    worker = Worker(["--endpoint", "ab", "--source", noida_broker.uri(source),
                     "--sink", noida_broker.uri(sink), "--keep", "id",
                     "--group", unique("ab")], tmp_path / "worker.log", env=env).start()
    try:
        messages = read_topic(noida_broker, sink, expect=len(KEYS), timeout=90)
        assert worker.terminate() == 0  # SIGTERM: drains and flushes its traffic counts
    finally:
        worker.stop_quietly()
    streamed = {}
    for m in messages:
        body = json.loads(m.value())
        streamed[KEYS[body["id"]]] = body["version"]
    assert streamed == {k: version_of[v] for k, v in expected.items()}, worker.output()[-2000:]

    # batch: the routing-key column routes
    frame = pd.DataFrame([record(i) for i in range(len(KEYS))])
    frame["user"] = KEYS
    frame.to_parquet(tmp_path / "in.parquet")
    done = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "batch", "run", "--endpoint", "ab",
         "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
         "--routing-key", "user", "--keep", "user"], env=env, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["user"]) == KEYS  # the input's order
    assert dict(zip(out["user"], out["variant"], strict=True)) == expected
    assert dict(zip(out["user"], out["version"], strict=True)) == {
        k: version_of[v] for k, v in expected.items()}

    # REST: the x-modelport-key header routes
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "modelport.cli.main", "serve", "fraud",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.2)
        served: dict[str, Any] = {}
        with httpx.Client() as client:
            for i, key in enumerate(KEYS):
                r = client.post(f"{url}/predict/ab", json=record(i),
                                headers={"x-modelport-key": key})
                assert r.status_code == 200, r.text
                served[key] = r.headers["x-modelport-variant"]
    finally:
        server.terminate()
        server.wait(30)
    assert served == expected

    # every surface counted its traffic under the endpoint, in the registry
    traffic = EndpointStore(registry).traffic("ab")
    counts = {v: sum(1 for e in expected.values() if e == v) for v in ("a", "b")}
    assert {v: s.requests for v, s in traffic.items()} == {v: 3 * n for v, n in counts.items()}
