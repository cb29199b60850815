"""``--extra-columns`` on the protocol routes: KServe V1 and Open Inference V2 (REST JSON, REST
binary, gRPC), through the real ``tritonclient`` (HTTP and gRPC) and HTTP against live servers.

One server per policy serves ``sum`` (a regressor: V1 predictions are plain values) and ``pair``
(two named outputs: V1 predictions are objects). Under ``refuse`` an extra tensor or field is a
400 / INVALID_ARGUMENT naming it, with the message every surface gives; under ``ignore`` it is
dropped; under ``passthrough`` V2 answers it as an output tensor of the same name, shape and
datatype, and V1 copies it into object predictions (plain-value predictions have no room).
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from conftest import Home, Server, free_port, launch, sum_example, sum_model
from extra_columns_models import PairModel
from tritonclient.utils import InferenceServerException

from modelport.bundle.signature import ColumnSpec, Signature
from modelport.errors import InvalidInputError
from modelport.serving.extra_tensors import extra_tensors

POLICIES = ("refuse", "ignore", "passthrough")
A, B = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])
IDS = np.array([b"r0", b"r1", b"r2"], dtype=object)
WEIGHTS = np.array([[0.5], [1.5], [2.5]], dtype=np.float32)
REFUSED = "unexpected column 'id'"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    home = Home(tmp_path_factory.mktemp("extra") / "home")
    home.register(sum_model(), "sum", sum_example())
    home.register(PairModel(), "pair", sum_example())
    started: dict[str, Server] = {}
    try:
        for policy in POLICIES:
            grpc_port = free_port()
            started[policy] = launch(home, home.path.parent, "sum", "pair", "--poll-interval",
                                     "0", "--grpc-port", str(grpc_port), "--extra-columns",
                                     policy)
            started[policy].grpc = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
        yield started
    finally:
        for server in started.values():
            server.stop()


def _http_inputs(binary: bool) -> list[triton_http.InferInput]:
    out = []
    for name, array, datatype in (("a", A, "FP64"), ("id", IDS, "BYTES"),
                                  ("weight", WEIGHTS, "FP32"), ("b", B, "FP64")):
        tensor = triton_http.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        out.append(tensor)
    return out


def _grpc_inputs() -> list[triton_grpc.InferInput]:
    out = []
    for name, array, datatype in (("a", A, "FP64"), ("id", IDS, "BYTES"),
                                  ("weight", WEIGHTS, "FP32"), ("b", B, "FP64")):
        tensor = triton_grpc.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


def _check_answer(policy: str, result: Any) -> None:
    np.testing.assert_allclose(result.as_numpy("prediction"), A + B)
    if policy == "ignore":
        assert result.as_numpy("id") is None and result.as_numpy("weight") is None
        return
    assert result.as_numpy("id").tolist() == IDS.tolist()
    weight = result.as_numpy("weight")
    assert weight.dtype == np.float32 and weight.shape == (3, 1)
    np.testing.assert_array_equal(weight, WEIGHTS)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_rest_follows_the_policy(servers: dict[str, Server], policy: str,
                                    binary: bool) -> None:
    client = triton_http.InferenceServerClient(servers[policy].url.removeprefix("http://"))
    try:
        if policy == "refuse":
            with pytest.raises(InferenceServerException) as caught:
                client.infer("sum", _http_inputs(binary))
            assert caught.value.status() == "400"
            assert REFUSED in caught.value.message()
            return
        outputs = None
        if binary:  # ask for binary answers too, passed-through tensors among them
            names = ["prediction", *(["id", "weight"] if policy == "passthrough" else [])]
            outputs = [triton_http.InferRequestedOutput(n, binary_data=True) for n in names]
        result = client.infer("sum", _http_inputs(binary), outputs=outputs)
        _check_answer(policy, result)
        if policy == "passthrough":
            declared = {o["name"]: (o["datatype"], o["shape"])
                        for o in result.get_response()["outputs"]}
            assert declared["id"] == ("BYTES", [3]) and declared["weight"] == ("FP32", [3, 1])
    finally:
        client.close()


@pytest.mark.parametrize("policy", POLICIES)
def test_v2_grpc_follows_the_policy(servers: dict[str, Server], policy: str) -> None:
    client = triton_grpc.InferenceServerClient(servers[policy].grpc)  # type: ignore[attr-defined]
    try:
        if policy == "refuse":
            with pytest.raises(InferenceServerException) as caught:
                client.infer("sum", _grpc_inputs())
            assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
            assert REFUSED in caught.value.message()
            return
        result = client.infer("sum", _grpc_inputs())
        _check_answer(policy, result)
        if policy == "passthrough":
            declared = {o.name: (o.datatype, list(o.shape))
                        for o in result.get_response().outputs}
            assert declared["id"] == ("BYTES", [3]) and declared["weight"] == ("FP32", [3, 1])
            # only the requested outputs come back, passed-through ones as any other
            only = client.infer("sum", _grpc_inputs(),
                                outputs=[triton_grpc.InferRequestedOutput("id")])
            assert [o.name for o in only.get_response().outputs] == ["id"]
    finally:
        client.close()


@pytest.mark.parametrize("policy", ["refuse", "passthrough"])
def test_v2_grpc_stream_follows_the_policy(servers: dict[str, Server], policy: str) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = triton_grpc.InferenceServerClient(servers[policy].grpc)  # type: ignore[attr-defined]
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("sum", _grpc_inputs(), request_id="s0")
        result, error = answers.get(timeout=30)
    finally:
        client.stop_stream()
        client.close()
    if policy == "refuse":
        assert result is None and REFUSED in error.message()
    else:
        assert error is None
        _check_answer(policy, result)


def test_v2_matrix_beside_an_extra_tensor(servers: dict[str, Server]) -> None:
    matrix = np.stack([A, B], axis=1)
    client = triton_grpc.InferenceServerClient(
        servers["passthrough"].grpc)  # type: ignore[attr-defined]
    try:
        inputs = [triton_grpc.InferInput("input__0", [3, 2], "FP64"),
                  triton_grpc.InferInput("id", [3], "BYTES")]
        inputs[0].set_data_from_numpy(matrix)
        inputs[1].set_data_from_numpy(IDS)
        result = client.infer("sum", inputs)
        np.testing.assert_allclose(result.as_numpy("prediction"), A + B)
        assert result.as_numpy("id").tolist() == IDS.tolist()
    finally:
        client.close()


def test_v2_passthrough_named_like_an_output_is_refused(servers: dict[str, Server]) -> None:
    body = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
                       {"name": "b", "shape": [1], "datatype": "FP64", "data": [2.0]},
                       {"name": "prediction", "shape": [1], "datatype": "FP64", "data": [9.0]}]}
    answer = httpx.post(servers["passthrough"].url + "/v2/models/sum/infer", json=body)
    assert answer.status_code == 400
    assert "'prediction' is passed through" in answer.json()["error"]


V1_ROWS = [{"id": "r0", "a": 1.0, "b": 10.0}, {"id": "r1", "a": 2.0, "b": 20.0}]


@pytest.mark.parametrize("policy", POLICIES)
def test_v1_follows_the_policy(servers: dict[str, Server], policy: str) -> None:
    url = servers[policy].url
    plain = httpx.post(url + "/v1/models/sum:predict", json={"instances": V1_ROWS})
    objects = httpx.post(url + "/v1/models/pair:predict", json={"instances": V1_ROWS})
    columns = httpx.post(url + "/v1/models/pair:predict",
                         json={"inputs": {"a": [1.0, 2.0], "b": [10.0, 20.0],
                                          "id": ["r0", "r1"]}})
    if policy == "refuse":
        for answer in (plain, objects, columns):
            assert answer.status_code == 400
            assert REFUSED in answer.json()["error"]
        return
    assert plain.status_code == 200 and plain.json() == {"predictions": [11.0, 22.0]}
    expected = [{"total": 11.0, "diff": -9.0}, {"total": 22.0, "diff": -18.0}]
    if policy == "passthrough":
        expected = [{"id": f"r{i}", **row} for i, row in enumerate(expected)]
    for answer in (objects, columns):
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert predictions == expected
        assert next(iter(predictions[0])) == ("id" if policy == "passthrough" else "total")


# ------------------------------------------------------------------ the pure policy
COLUMNS = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float64")),
                    outputs=(), kind="columns", task="regression")


def test_extra_tensors_policy() -> None:
    a, m = np.zeros(2), np.zeros((2, 2))
    assert extra_tensors(COLUMNS, [("a", a), ("id", a), ("b", a)], "ignore") == ["id"]
    assert extra_tensors(COLUMNS, [("x", m), ("id", a)], "passthrough") == ["id"]
    assert extra_tensors(COLUMNS, [("x", m)], "refuse") == []  # one tensor: the matrix
    with pytest.raises(InvalidInputError, match=REFUSED) as caught:
        extra_tensors(COLUMNS, [("a", a), ("id", a), ("b", a)], "refuse")
    assert caught.value.field == "id"
    with pytest.raises(InvalidInputError, match="none of the inputs"):
        extra_tensors(COLUMNS, [("x", a), ("y", a)], "ignore")
