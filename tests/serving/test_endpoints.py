"""Endpoints on a real multi-worker server: automatic canary rollback, a blue/green switch
under load, a CLI change reaching every worker, shadows that fail or hang."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from conftest import Home, StartServer, free_port
from endpoint_models import OffsetModel

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})


def register(home: Home, model: OffsetModel, alias: str | None = None) -> int:
    return home.register(model, "calc", EXAMPLE, alias=alias)


def cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], env=home.env,
                          capture_output=True, text=True, timeout=120)


def store(home: Home) -> Any:
    from modelport.rollout.store import EndpointStore

    return EndpointStore(home.registry())


def grpc_infer(port: int, name: str) -> tuple[Any, Any]:
    import grpc

    from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
    from modelport.serving.grpc import grpc_predict_v2_pb2_grpc as pbg

    request = pb.ModelInferRequest(model_name=name)
    for column in ("a", "b"):
        tensor = request.inputs.add(name=column, datatype="FP64", shape=[1])
        tensor.contents.fp64_contents.extend([1.0])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pbg.GRPCInferenceServiceStub(channel)
        return stub.ModelInfer.with_call(request, timeout=30)  # type: ignore[no-any-return]


class Load(threading.Thread):
    """Steady traffic: each request on a new connection (so the kernel spreads them over the
    workers), with a routing key; records (time sent, status, variant, answer). The time is
    when the request left: one sent before a policy change may be answered after it."""

    def __init__(self, url: str, endpoint: str, *, keys: int = 1000) -> None:
        super().__init__(daemon=True)
        self.url, self.endpoint, self.keys = url, endpoint, keys
        self.stop = threading.Event()
        self.seen: list[tuple[float, int, str, Any]] = []

    def run(self) -> None:
        i = 0
        # no keep-alive: a new connection per request, without a new client (and TLS context)
        client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)
        while not self.stop.is_set():
            i += 1
            sent = time.time()
            try:
                r = client.post(f"{self.url}/predict/{self.endpoint}", json={"a": 1.0, "b": 2.0},
                                headers={"x-modelport-key": f"user-{i % self.keys}"})
                answer = r.json().get("prediction") if r.status_code == 200 else r.text
                self.seen.append((sent, r.status_code,
                                  r.headers.get("x-modelport-variant", ""), answer))
            except httpx.HTTPError as exc:
                self.seen.append((sent, 0, "", repr(exc)))
        client.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(30)


def test_a_canary_whose_candidate_starts_failing_is_rolled_back(
        home: Home, start_server: StartServer, tmp_path: Path) -> None:
    flag = tmp_path / "candidate-broken"
    register(home, OffsetModel(0.0), alias="production")
    register(home, OffsetModel(1000.0, fail_flag=str(flag)))
    # the endpoint exists before the server starts, so every worker that accepts a connection
    # has read it (created under a running server, a worker learns of it within its 0.25 s
    # poll: a request reaching the other worker in between is a 404, not a canary failure)
    created = cli(home, "endpoint", "create", "calc-ep", "--variant", "stable=calc@production",
                  "--variant", "canary=calc:2", "--policy", "canary", "--candidate", "canary",
                  "--steps", "30,100", "--interval", "3s", "--min-requests", "5",
                  "--max-failed-checks", "1", "--max-error-rate", "0.05")
    assert created.returncode == 0, created.stderr
    server = start_server(home, "calc", "--workers", "2", "--poll-interval", "0.2",
                          "--allow-admin-routes")
    load = Load(server.url, "calc-ep")
    load.start()
    try:
        deadline = time.monotonic() + 30
        while not any(s[2] == "canary" and s[1] == 200 for s in load.seen):
            assert time.monotonic() < deadline, load.seen[-3:]
            time.sleep(0.05)
        flag.touch()  # the candidate starts failing
        deadline = time.monotonic() + 30
        while (endpoint := store(home).get("calc-ep")).state.status != "rolled_back":
            assert time.monotonic() < deadline, endpoint
            time.sleep(0.1)
        rolled_back_at = endpoint.state.checked_at
        time.sleep(2.0)
    finally:
        load.finish()
    # 503 is the server shedding load (a busy machine: "try again"), not a model's failure
    shed = [s for s in load.seen if s[1] == 503]
    failures = [s for s in load.seen if s[1] not in (200, 503)]
    assert failures, "the candidate never failed: the test proves nothing"
    assert [s for s in failures if s[2] != "canary"] == [], failures[:5]
    assert len(shed) < len(load.seen) / 10, shed[:3]
    # every failure happened inside the check window that caught it (plus the 0.25 s it
    # takes a worker to see the rollback); none after
    late = [s for s in failures if s[0] > rolled_back_at + 0.5]
    assert late == [], late[:3]
    after = [s for s in load.seen if s[0] > rolled_back_at + 0.5 and s[1] != 503]
    assert after and {s[2] for s in after} == {"stable"} and {s[1] for s in after} == {200}
    assert "error rate" in endpoint.state.reason
    with home.registry() as reg:
        assert reg.resolve("calc@production").version == 1  # not promoted
    # an admin route changes it over HTTP, audited as the caller
    stale = httpx.post(f"{server.url}/endpoints/calc-ep/pause", json={"if_revision": 1})
    assert stale.status_code == 409 and "changed by someone else" in stale.json()["error"]
    paused = httpx.post(f"{server.url}/endpoints/calc-ep/pause", json={})
    assert paused.status_code == 200 and paused.json()["state"]["paused"] is True
    assert store(home).history("calc-ep")[0]["actor"] == "anonymous"


def test_switch_under_load_and_a_cli_change_reaches_every_worker_within_a_second(
        home: Home, start_server: StartServer) -> None:
    register(home, OffsetModel(0.0), alias="production")
    register(home, OffsetModel(100.0))
    assert cli(home, "endpoint", "create", "bg", "--variant", "blue=calc@production",
               "--variant", "green=calc:2", "--policy", "bluegreen").returncode == 0
    server = start_server(home, "bg", "--workers", "2")  # an endpoint name
    load = Load(server.url, "bg")
    load.start()
    try:
        time.sleep(0.5)
        for target in ("green", "blue"):
            switched = cli(home, "endpoint", "switch", "bg", target)
            assert switched.returncode == 0, switched.stderr
            done = time.time()
            time.sleep(1.0)
            # 30 requests on fresh connections reach both workers: all on the new colour
            with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
                answers = [fresh.post(f"{server.url}/predict/bg", json={"a": 1, "b": 2})
                           for _ in range(30)]
            assert {r.headers["x-modelport-variant"] for r in answers} == {target}, done
            assert {r.json()["prediction"] for r in answers} == {
                3.0 + (100.0 if target == "green" else 0.0)}
    finally:
        load.finish()
    statuses = {s[1] for s in load.seen}
    assert statuses == {200}, [s for s in load.seen if s[1] != 200][:3]
    assert {s[2] for s in load.seen} == {"blue", "green"}
    # over HTTP too: reading needs no admin; changing is an admin route (refused without auth
    # unless the server allows admin routes), audited as the caller
    listed = httpx.get(f"{server.url}/endpoints").json()
    assert [e["name"] for e in listed] == ["bg"]
    assert httpx.get(f"{server.url}/endpoints/bg").json()["shares"] == {"blue": 100.0,
                                                                         "green": 0.0}
    refused = httpx.post(f"{server.url}/endpoints/bg/switch", json={"variant": "green"})
    assert refused.status_code == 403
    report = httpx.get(f"{server.url}/endpoints/bg/report?metric=error_rate").json()
    assert report["metric"] == "error_rate" and len(report["variants"]) == 2
    assert httpx.get(f"{server.url}/endpoints/nope").status_code == 404


def test_shadows_that_raise_or_hang_change_no_answer(home: Home,
                                                     start_server: StartServer) -> None:
    register(home, OffsetModel(0.0), alias="production")
    register(home, OffsetModel(0.0, always_fail=True))
    register(home, OffsetModel(0.0, sleep=10.0))
    register(home, OffsetModel(0.5))
    from modelport.rollout.spec import EndpointSpec

    store(home).create(EndpointSpec.from_dict({
        "name": "sh", "policy": "shadow", "primary": "main",
        "shadows": ["raises", "hangs", "differs"],
        "variants": {"main": "calc@production", "raises": "calc:2", "hangs": "calc:3",
                     "differs": "calc:4"}}))
    grpc_port = free_port()
    server = start_server(home, "calc", "--grpc-port", str(grpc_port))
    with httpx.Client() as client:
        answers = [client.post(f"{server.url}/predict/sh", json={"a": float(i), "b": 1.0})
                   for i in range(300)]
        # the endpoint answers on every protocol, naming the variant
        v2 = client.post(f"{server.url}/v2/models/sh/infer", json={"inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [2.0]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [3.0]}]})
        v1 = client.post(f"{server.url}/v1/models/sh:predict",
                         json={"instances": [{"a": 2.0, "b": 3.0}]})
        mlflow = client.post(f"{server.url}/invocations?model=sh",
                             json={"dataframe_records": [{"a": 2.0, "b": 3.0}]})
    for r in (v2, v1, mlflow):
        assert r.status_code == 200, r.text
        assert (r.headers["x-modelport-endpoint"], r.headers["x-modelport-variant"],
                r.headers["x-modelport-version"]) == ("sh", "main", "1")
    assert v2.json()["outputs"][0]["data"] == [5.0]
    meta = httpx.get(f"{server.url}/v2/models/sh").json()  # metadata of the primary variant
    assert meta["name"] == "sh" and [i["name"] for i in meta["inputs"]] == ["a", "b"]
    assert httpx.get(f"{server.url}/v2/models/sh/ready").status_code == 200
    response, call = grpc_infer(grpc_port, "sh")
    assert response.parameters["variant"].string_param == "main"
    trailing = dict(call.trailing_metadata())
    assert (trailing["x-modelport-variant"], trailing["x-modelport-version"]) == ("main", "1")
    assert {r.status_code for r in answers} == {200}
    assert [r.json()["prediction"] for r in answers] == [i + 1.0 for i in range(300)]
    assert {r.headers["x-modelport-variant"] for r in answers} == {"main"}
    from modelport.rollout import report as reports

    deadline = time.monotonic() + 20
    endpoints = store(home)
    while True:
        shadows = reports.build(endpoints, "sh")["shadows"]
        raises, differs = shadows.get("raises", {}), shadows.get("differs", {})
        # every request (300 + one per protocol) compared or, when the queue was full, dropped
        if (raises.get("errors", 0) + raises.get("dropped", 0) == 304
                and differs.get("compared", 0) + differs.get("dropped", 0) == 304):
            break
        assert time.monotonic() < deadline, (raises, differs)
        time.sleep(0.3)
    assert shadows["hangs"]["dropped"] > 0  # its queue filled while it slept; nothing waited
    assert differs["compared"] > 0 and differs["agreement"] == 0.0  # every value is 0.5 off
    assert raises["errors"] > 0
    assert "shadow raises:" in reports.render(reports.build(endpoints, "sh"))
