"""Triton's extensions through the real ``tritonclient`` (HTTP and gRPC) against
``modelport serve --grpc-port``: streaming inference, model configuration, statistics, the
repository index, and the request / process metrics of both protocols."""

from __future__ import annotations

import queue
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from conftest import Home, Server, free_port, launch
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           iris_arrays: tuple[np.ndarray, np.ndarray],
           iris_classifier: Any) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("triton-clients")
    x, _ = iris_arrays
    home = Home(tmp / "home")
    home.register(iris_classifier, "iris", x[:20])
    home.register(iris_classifier, "other", x[:20])
    grpc_port = free_port()
    srv = launch(home, tmp, "iris", "other", "--grpc-port", str(grpc_port))
    yield srv, f"127.0.0.1:{grpc_port}"
    assert srv.stop() == 0, srv.output()


@pytest.fixture
def grpc_client(server: tuple[Server, str]) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server[1])
    yield client
    client.close()


@pytest.fixture
def http_client(server: tuple[Server, str]) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(server[0].url.removeprefix("http://"))
    yield client
    client.close()


def _grpc_input(rows: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    return tensor


def test_stream_infer_answers_every_request_and_reports_a_bad_one_in_the_stream(
        grpc_client: triton.InferenceServerClient, iris_arrays: tuple[np.ndarray, np.ndarray],
        iris_classifier: Any) -> None:
    x, _ = iris_arrays
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(6):
            grpc_client.async_stream_infer("iris", [_grpc_input(x[i * 10:i * 10 + 3])],
                                           request_id=f"r{i}")
        bad = triton.InferInput("input", [2, 3], "FP64")  # three columns; the model takes four
        bad.set_data_from_numpy(np.zeros((2, 3)))
        grpc_client.async_stream_infer("iris", [bad], request_id="bad")
        got = [answers.get(timeout=30) for _ in range(7)]
    finally:
        grpc_client.stop_stream()
    results = {r.get_response().id: r for r, e in got if e is None}
    errors = [e for _, e in got if e is not None]
    assert sorted(results) == [f"r{i}" for i in range(6)]
    for i in range(6):
        np.testing.assert_array_equal(results[f"r{i}"].as_numpy("label"),
                                      iris_classifier.predict(x[i * 10:i * 10 + 3]))
    assert len(errors) == 1 and "input" in str(errors[0])


def test_model_config_over_grpc_and_http(grpc_client: triton.InferenceServerClient,
                                         http_client: triton_http.InferenceServerClient) -> None:
    by_grpc = grpc_client.get_model_config("iris", as_json=True)["config"]
    by_http = http_client.get_model_config("iris")
    for config in (by_grpc, by_http):
        assert config["name"] == "iris"
        assert config["platform"] == "modelport_sklearn"
        assert int(config["max_batch_size"]) > 0
        assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]])
                for i in config["input"]] == [("input", "TYPE_FP64", [4])]
        assert {o["name"]: o["data_type"] for o in config["output"]} == {
            "label": "TYPE_INT64", "probabilities": "TYPE_FP64"}
    with pytest.raises(InferenceServerException, match="not served"):
        grpc_client.get_model_config("missing")


def test_repository_index_over_grpc(grpc_client: triton.InferenceServerClient) -> None:
    index = grpc_client.get_model_repository_index(as_json=True)["models"]
    assert {(m["name"], m["version"], m["state"]) for m in index} == {
        ("iris", "1", "READY"), ("other", "1", "READY")}


def test_repository_index_over_http(http_client: triton_http.InferenceServerClient,
                                    server: tuple[Server, str]) -> None:
    index = http_client.get_model_repository_index()
    assert {(m["name"], m["state"]) for m in index} == {("iris", "READY"), ("other", "READY")}
    ready = httpx.post(server[0].url + "/v2/repository/index", json={"ready": True})
    assert {m["name"] for m in ready.json()} == {"iris", "other"}
    bad = httpx.post(server[0].url + "/v2/repository/index", content=b"{not json")
    assert bad.status_code == 400 and "ready" in bad.json()["error"]


def _stats(client: Any, name: str, *, as_json: bool = False) -> dict[str, Any]:
    stats = (client.get_inference_statistics(name, as_json=True) if as_json
             else client.get_inference_statistics(name))
    [entry] = stats["model_stats"]
    return dict(entry)


def test_statistics_count_requests_rows_calls_and_times_over_both_protocols(
        server: tuple[Server, str], grpc_client: triton.InferenceServerClient,
        http_client: triton_http.InferenceServerClient,
        iris_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = iris_arrays
    before = _stats(http_client, "other")
    before_success = int(before["inference_stats"]["success"]["count"])
    before_rows = int(before["inference_count"])
    for _ in range(3):
        grpc_client.infer("other", [_grpc_input(x[:5])])
    tensor = triton_http.InferInput("input", [2, 4], "FP64")
    tensor.set_data_from_numpy(x[:2])
    http_client.infer("other", [tensor])
    with pytest.raises(InferenceServerException):
        grpc_client.infer("other", [_grpc_input(x[:2, :3])])  # wrong shape: a failed request
    for entry in (_stats(http_client, "other"),
                  _stats(grpc_client, "other", as_json=True)):
        stats = entry["inference_stats"]
        assert (entry["name"], entry["version"]) == ("other", "1")
        assert int(stats["success"]["count"]) == before_success + 4
        assert int(stats["fail"]["count"]) >= 1
        assert int(entry["inference_count"]) == before_rows + 17
        assert int(entry["execution_count"]) >= 4
        assert int(stats["queue"]["count"]) == int(stats["success"]["count"])
        for part in ("success", "compute_input", "compute_infer", "compute_output"):
            assert int(stats[part]["ns"]) > 0, part
        assert int(stats["success"]["ns"]) >= int(stats["compute_infer"]["ns"])
        assert int(entry["last_inference"]) > 0
    every = http_client.get_inference_statistics()["model_stats"]
    assert {e["name"] for e in every} == {"iris", "other"}


def test_grpc_requests_are_counted_and_process_metrics_exported(
        server: tuple[Server, str], grpc_client: triton.InferenceServerClient,
        iris_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = iris_arrays

    def grpc_ok() -> float:
        text = httpx.get(server[0].url + "/metrics").text
        found = re.search(r'modelport_requests_total\{model="iris",protocol="grpc",'
                          r'status="OK",version="1"\} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    start = grpc_ok()
    grpc_client.infer("iris", [_grpc_input(x[:1])])
    grpc_client.infer("iris", [_grpc_input(x[:1])])
    assert grpc_ok() == start + 2
    text = httpx.get(server[0].url + "/metrics").text
    assert re.search(r'modelport_request_duration_seconds_count\{model="iris",'
                     r'protocol="grpc"\} [1-9]', text)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_start_time_seconds"):
        assert re.search(rf"^{name} \d", text, re.M), name


def test_kserve_v1_liveness_model_list_and_explain(server: tuple[Server, str]) -> None:
    url = server[0].url
    assert httpx.get(url + "/").json() == {"status": "alive"}
    assert httpx.get(url + "/v1/models").json() == {"models": ["iris", "other"]}
    explain = httpx.post(url + "/v1/models/iris:explain", json={"instances": [[1, 2, 3, 4]]})
    assert explain.status_code == 501
    assert "no explainer" in explain.json()["error"] and ":predict" in explain.json()["error"]
