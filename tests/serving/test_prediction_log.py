"""``modelport serve --log``: two workers writing one Delta table, every protocol's prediction
ids (body, ``x-prediction-id``, gRPC trailing metadata) equal the logged ones, ``POST /feedback``
and the gRPC feedback call, bad feedback, SIGTERM flush and a ``kill -9`` crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import Home, StartServer, free_port
from google.protobuf import struct_pb2

import modelport.log as ml
from modelport.log.delta import DeltaStore
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

FEATURES = ["tenure", "spend", "calls"]


def churn_frame(n: int, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)), columns=FEATURES)


@pytest.fixture
def churn_home(home: Home) -> Home:
    from sklearn.linear_model import LogisticRegression

    x = churn_frame(300, 1)
    home.register(LogisticRegression().fit(x, (x["tenure"] > x["spend"]).astype(int)), "churn",
                  x.head())
    return home


def log_config(tmp_path: Path, seconds: float = 0.3) -> str:
    path = tmp_path / "log.yaml"
    path.write_text(f"flush_seconds: {seconds}\nflush_rows: 100000\n"
                    "models: {churn: {entity_key: calls}}\n")
    return str(path)


def store_of(home: Home) -> DeltaStore:
    return DeltaStore(str(home.path / "log"))


def grpc_infer(target: str, rows: np.ndarray) -> tuple[pb.ModelInferResponse, str]:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP64",
                                                   shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    with grpc.insecure_channel(target) as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(
            pb.ModelInferRequest(model_name="churn", inputs=[tensor]))
    response, state = call
    trailer = dict(state.trailing_metadata())
    return response, trailer["x-prediction-id"]


def test_two_workers_log_every_protocol_and_take_feedback(
        churn_home: Home, start_server: StartServer, tmp_path: Path) -> None:
    grpc_port = free_port()
    server = start_server(churn_home, "churn", "--workers", "2", "--log", "delta",
                          "--log-config", log_config(tmp_path), "--grpc-port", str(grpc_port))
    expected: dict[str, int] = {}  # prediction id -> the class the server answered
    records = churn_frame(200, 2).to_dict(orient="records")
    for i in range(40):  # a new connection each: the kernel spreads them over both workers
        r = httpx.post(f"{server.url}/predict/churn", json=records[i])
        body = r.json()
        assert r.status_code == 200 and body["prediction_id"] == r.headers["x-prediction-id"]
        expected[body["prediction_id"]] = body["prediction"]
    for i in range(10):
        r = httpx.post(f"{server.url}/predict/churn", json=records[50 + 3 * i:53 + 3 * i])
        pid = r.headers["x-prediction-id"]
        rows = r.json()["predictions"]
        assert [p["prediction_id"] for p in rows] == [f"{pid}-{k}" for k in range(3)]
        expected.update({p["prediction_id"]: p["prediction"] for p in rows})
    for i in range(10):  # V2 REST, two rows each
        part = churn_frame(2, 100 + i)
        body = {"inputs": [{"name": c, "datatype": "FP64", "shape": [2],
                            "data": part[c].tolist()} for c in FEATURES]}
        r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body)
        pid = r.headers["x-prediction-id"]
        labels = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]
        expected.update({f"{pid}-{k}": labels[k] for k in range(2)})
    for i in range(5):  # KServe V1, one row: the id is P itself
        r = httpx.post(f"{server.url}/v1/models/churn:predict",
                       json={"instances": [records[100 + i]]})
        expected[r.headers["x-prediction-id"]] = r.json()["predictions"][0]
    for i in range(10):  # gRPC: trailing metadata and a response parameter
        rows = churn_frame(1, 200 + i).to_numpy()
        response, pid = grpc_infer(f"127.0.0.1:{grpc_port}", rows)
        assert response.parameters["prediction_id"].string_param == pid
        label = next(o for o in response.outputs if o.name == "label")
        expected[pid] = int(label.contents.int64_contents[0])
    assert len(expected) == 40 + 30 + 20 + 5 + 10

    ids = list(expected)
    # feedback: one item, a list, a correction (latest wins), an unknown id, the gRPC call
    assert httpx.post(f"{server.url}/feedback",
                      json={"prediction_id": ids[0], "label": 0}).json() == {"accepted": 1}
    r = httpx.post(f"{server.url}/feedback/churn",
                   json=[{"prediction_id": p, "label": expected[p]} for p in ids[1:60]])
    assert r.json() == {"accepted": 59}
    httpx.post(f"{server.url}/feedback", json={"prediction_id": ids[0], "label": 1})
    httpx.post(f"{server.url}/feedback", json={"prediction_id": "unknown-id", "label": 1})
    request = struct_pb2.Struct()
    request.update({"items": [{"prediction_id": p, "label": 1 - expected[p]}
                              for p in ids[60:70]]})
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        feedback = channel.unary_unary(
            "/modelport.FeedbackService/Feedback",
            request_serializer=struct_pb2.Struct.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString)
        assert feedback(request)["accepted"] == 10
        bad = struct_pb2.Struct()
        bad.update({"items": [{"prediction_id": "x", "label": "maybe"}]})
        with pytest.raises(grpc.RpcError) as info:
            feedback(bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "items[0].label" in (info.value.details() or "")

    # bad feedback: 400 naming the field / 404 for an unknown model; nothing stored
    r = httpx.post(f"{server.url}/feedback", json=[{"prediction_id": ids[0], "label": 1},
                                                    {"prediction_id": ids[1], "label": "yes"}])
    assert r.status_code == 400 and r.json()["field"] == "items[1].label"
    r = httpx.post(f"{server.url}/feedback", content=b"{not json")
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = httpx.post(f"{server.url}/feedback/fraud", json={"prediction_id": "a", "label": 1})
    assert r.status_code == 404 and "fraud" in r.json()["error"]
    assert httpx.post(f"{server.url}/predict/churn", json=records[0]).status_code == 200
    expected_total = len(expected) + 1

    assert server.stop() == 0  # SIGTERM flushes both workers' logs
    store = store_of(churn_home)
    table = ml.read(model="churn", store=store)
    logged = table.column("prediction_id").to_pylist()
    assert len(logged) == len(set(logged)) == expected_total
    assert set(expected) <= set(logged)
    rows = {r["prediction_id"]: r for r in ml.read(model="churn", store=store,
                                                   labeled=True).to_pylist()}
    assert all(rows[p]["prediction"] == v for p, v in expected.items())
    assert {r["source"] for r in rows.values()} == {"simple", "v2", "v1", "grpc"}
    assert rows[ids[0]]["label"] == 1  # the correction won
    assert rows[ids[65]]["label"] == 1 - expected[ids[65]]
    assert sum(r["label"] is not None for r in rows.values()) == 70
    # modelport log metrics equals the accuracy computed by hand from the same labels
    truth = {ids[0]: 1, **{p: expected[p] for p in ids[1:60]},
             **{p: 1 - expected[p] for p in ids[60:70]}}
    hand = sum(truth[p] == expected[p] for p in truth) / len(truth)
    out = subprocess.run([sys.executable, "-m", "modelport.cli.main", "log", "metrics", "churn",
                          "--json"], env=churn_home.env, capture_output=True, text=True,
                         check=True)
    metrics = json.loads(out.stdout)[0]
    assert metrics["accuracy"] == pytest.approx(hand)
    assert metrics["labeled"] == 70 and metrics["predictions"] == expected_total
    unmatched = ml.query("SELECT count(*) FROM unmatched_feedback", model="churn", store=store)
    assert unmatched.column(0).to_pylist() == [1]


def test_kill_9_loses_at_most_one_flush_interval_and_the_rerun_adds_no_duplicates(
        churn_home: Home, start_server: StartServer, tmp_path: Path) -> None:
    config = log_config(tmp_path, seconds=0.5)
    server = start_server(churn_home, "churn", "--log", "delta", "--log-config", config)
    acked: list[tuple[float, str]] = []
    stop = threading.Event()
    record = churn_frame(1, 5).to_dict(orient="records")[0]

    def load() -> None:
        with httpx.Client(base_url=server.url) as client:
            while not stop.is_set():
                try:
                    r = client.post("/predict/churn", json=record)
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append((time.monotonic(), r.headers["x-prediction-id"]))

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(3.0)
    killed_at = time.monotonic()
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    thread.join(10)
    store = store_of(churn_home)
    logged = set(ml.read(model="churn", store=store).column("prediction_id").to_pylist())
    assert logged and logged <= {p for _, p in acked}
    # everything answered more than one flush interval (+ one commit) before the kill is there
    old = {p for t, p in acked if t < killed_at - 0.5 - 1.0}
    assert old and old <= logged
    lost = len(acked) - len(logged)
    assert lost <= sum(1 for t, _ in acked if t >= killed_at - 1.5)

    rerun = start_server(churn_home, "churn", "--log", "delta", "--log-config", config)
    new = [httpx.post(f"{rerun.url}/predict/churn", json=record).headers["x-prediction-id"]
           for _ in range(20)]
    assert rerun.stop() == 0
    ids = ml.read(model="churn", store=store).column("prediction_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(logged) + 20 and set(new) <= set(ids)


def test_a_log_folder_that_is_not_writable_keeps_the_server_serving(
        churn_home: Home, start_server: StartServer, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    server = start_server(churn_home, "churn", "--log", str(blocker / "log"),
                          "--log-config", log_config(tmp_path))
    record = churn_frame(1, 5).to_dict(orient="records")[0]
    for _ in range(5):
        assert httpx.post(f"{server.url}/predict/churn", json=record).status_code == 200
    time.sleep(1.0)
    r = httpx.post(f"{server.url}/feedback", json={"prediction_id": "a", "label": 1})
    assert r.status_code == 503 and str(blocker) not in r.text  # no server path leaks
    assert httpx.post(f"{server.url}/predict/churn", json=record).status_code == 200
    server.stop()
    assert "prediction log flush" in server.output()
