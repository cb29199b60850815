"""Feedback rewards for a bandit endpoint's predictions on a real server: a reward outside the
endpoint's declared range is refused (REST 400 naming the field and the range, gRPC
INVALID_ARGUMENT) and nothing of that request is stored; then the same on the command line
(``modelport feedback send|load|consume``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import Home, StartServer, free_port
from google.protobuf import struct_pb2

import modelport.log as ml
from modelport.errors import InvalidInputError
from modelport.log.delta import DeltaStore
from modelport.log.feedback_items import FeedbackItem, to_table

FEATURES = ["tenure", "spend", "calls"]


def frame(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)), columns=FEATURES)


def cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], env=home.env,
                          capture_output=True, text=True, timeout=120)


def stored_rewards(home: Home) -> list[float]:
    table = ml.query("SELECT reward FROM feedback WHERE reward IS NOT NULL",
                     store=DeltaStore(str(home.path / "log")))
    return sorted(table.column("reward").to_pylist())


def test_out_of_range_rewards_are_refused_on_every_feedback_path(
        home: Home, start_server: StartServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelport.rollout.spec import EndpointSpec
    from modelport.rollout.store import EndpointStore

    x = frame(200, 1)
    y = (x["tenure"] > x["spend"]).astype(int)
    home.register(LogisticRegression().fit(x, y), "churn", x.head())
    home.register(LogisticRegression(C=0.1).fit(x, y), "churn", x.head())
    with home.registry() as reg:
        EndpointStore(reg).create(EndpointSpec.from_dict({
            "name": "offers", "policy": "bandit", "variants": {"a": "churn:1", "b": "churn:2"},
            "bandit": {"reward_min": 0, "reward_max": 5}}))
    config = tmp_path / "log.yaml"
    config.write_text("flush_seconds: 0.3\nflush_rows: 100000\n")
    grpc_port = free_port()
    server = start_server(home, "churn", "offers", "--log", "delta", "--log-config", str(config),
                          "--grpc-port", str(grpc_port))
    records = frame(4, 2).to_dict(orient="records")
    bandit_ids = []
    for record in records[:3]:
        r = httpx.post(f"{server.url}/predict/offers", json=record)
        assert r.status_code == 200 and r.headers["x-modelport-variant"] in ("a", "b")
        bandit_ids.append(r.headers["x-prediction-id"])
    plain = httpx.post(f"{server.url}/predict/churn", json=records[3])
    plain_id = plain.headers["x-prediction-id"]

    # one item: 400 naming the field, the range and the endpoint
    r = httpx.post(f"{server.url}/feedback", json={"prediction_id": bandit_ids[0], "reward": 7})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == "reward"
    assert "[0, 5]" in body["error"] and "'offers'" in body["error"]
    assert "modelport endpoint set offers --reward-range" in body["error"]
    # a list: every bad item is named, and the good one beside them is not stored either
    r = httpx.post(f"{server.url}/feedback", json={"items": [
        {"prediction_id": bandit_ids[0], "reward": 3},
        {"prediction_id": bandit_ids[1], "reward": -1},
        {"prediction_id": bandit_ids[2], "reward": 5.5}]})
    assert r.status_code == 400 and r.json()["field"] == "items[1].reward"
    assert "items[2].reward 5.5" in r.json()["error"] and "items[0]" not in r.json()["error"]
    # naming the endpoint (as the model in the path) is checked without a lookup
    r = httpx.post(f"{server.url}/feedback/offers", json={"prediction_id": "later", "reward": 9})
    assert r.status_code == 400 and "[0, 5]" in r.json()["error"]
    # gRPC: INVALID_ARGUMENT with the same message
    bad = struct_pb2.Struct()
    bad.update({"items": [{"prediction_id": bandit_ids[1], "reward": 6}]})
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        feedback = channel.unary_unary(
            "/modelport.FeedbackService/Feedback",
            request_serializer=struct_pb2.Struct.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString)
        with pytest.raises(grpc.RpcError) as info:
            feedback(bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "items[0].reward 6" in (info.value.details() or "")
        good = struct_pb2.Struct()
        good.update({"items": [{"prediction_id": bandit_ids[1], "reward": 4}]})
        assert feedback(good)["accepted"] == 1
    # in range for the bandit, and any reward for a prediction no bandit answered: stored
    assert httpx.post(f"{server.url}/feedback", json={"prediction_id": bandit_ids[0],
                                                      "reward": 2.5}).status_code == 200
    r = httpx.post(f"{server.url}/feedback", json={"prediction_id": plain_id, "reward": 40})
    assert r.status_code == 200, r.text
    assert server.stop() == 0
    assert stored_rewards(home) == [2.5, 4.0, 40.0]

    # the command line: one error line, nothing stored
    out = cli(home, "feedback", "send", bandit_ids[2], "--reward", "8")
    assert out.returncode != 0 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: --reward 8") and "[0, 5]" in line
    assert "modelport feedback send" in line
    labels = tmp_path / "rewards.csv"
    pd.DataFrame({"prediction_id": [bandit_ids[2], bandit_ids[0], bandit_ids[1]],
                  "reward": [1.0, 12.0, -3.0]}).to_csv(labels, index=False)
    out = cli(home, "feedback", "load", str(labels))
    assert out.returncode != 0
    [line] = out.stderr.strip().splitlines()
    assert "row 1: reward 12" in line and "row 2: reward -3" in line and "row 0" not in line
    assert cli(home, "feedback", "send", bandit_ids[2], "--reward", "1").returncode == 0

    import redis

    stream = f"rewards-{uuid.uuid4().hex[:8]}"
    client = redis.Redis()
    try:
        client.xadd(stream, {"value": json.dumps({"prediction_id": bandit_ids[2], "reward": 3})})
        client.xadd(stream, {"value": json.dumps([{"prediction_id": bandit_ids[0], "reward": 1},
                                                  {"prediction_id": bandit_ids[1],
                                                   "reward": 99}])})
        out = cli(home, "feedback", "consume", "--source", f"redis://127.0.0.1:6379/{stream}",
                  "--idle-exit", "1", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"messages": 2, "stored": 1, "invalid": 1}
        assert "items[1].reward 99" in out.stderr
    finally:
        client.delete(stream)
        client.close()
    assert stored_rewards(home) == [1.0, 2.5, 3.0, 4.0, 40.0]
    # the Python API refuses it too; a reward stored without the check (one that arrived before
    # its prediction was logged) is ignored by the bandit, which reads only in-range rewards
    for name, value in home.env.items():
        if name.startswith("MODELPORT_") or name == "MODELPORT_HOME":
            monkeypatch.setenv(name, value)
    for name in ("MODELPORT_LOG", "MODELPORT_LOG_CONFIG", "MODELPORT_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InvalidInputError, match=r"items\[0\].reward 11 .*\[0, 5\]"):
        ml.feedback(bandit_ids[2], reward=11)
    log_store = DeltaStore(str(home.path / "log"))
    log_store.append_feedback(to_table([FeedbackItem(prediction_id=bandit_ids[2], reward=50.0)],
                                       source="test"))
    from modelport.rollout.router import logged_rewards

    with home.registry() as reg:
        endpoint = EndpointStore(reg).get("offers")
    arms = logged_rewards(endpoint)
    # ids 0 and 1 keep their in-range rewards (2.5 and 4, scaled by 1/5; the consumed 1 for id 0
    # came in the refused message); id 2's latest reward (50) is outside the range: not counted
    assert sum(a.pulls for a in arms.values()) == 2
    assert sum(a.reward_sum for a in arms.values()) == pytest.approx((2.5 + 4) / 5)
