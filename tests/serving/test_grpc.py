"""The OIP V2 gRPC server on a real socket, spoken to by ``tritonclient`` and by a raw stub.

The server runs on its own event loop thread, as in ``modelport serve``; models come from a real
embedded registry. Every prediction is compared with the same model loaded in process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import serving_models  # tests/serving/conftest.py puts it on sys.path
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from conftest import Home, free_port, launch
from tritonclient.utils import InferenceServerException

import modelport
from modelport.core.batch import Batch, Result
from modelport.core.events import PredictionEvent
from modelport.core.service import InferenceService
from modelport.errors import ConfigurationError
from modelport.registry import Registry
from modelport.serving.grpc import GrpcServerHandle, start_grpc_server
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from modelport.testing import SumPredictor

T = TypeVar("T")


class LoopThread:
    """An event loop on its own thread, like the server's loop in ``modelport serve``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        """Finish what is left on the loop (runner workers exit once woken), then stop it."""
        self.run(_finish_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def _finish_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory,
             cancer_frame: tuple[pd.DataFrame, pd.Series], cancer_pipeline: object,
             iris_arrays: tuple[np.ndarray, np.ndarray], iris_classifier: object) -> Registry:
    """Three models: a DataFrame classifier, an array classifier, a mixed-column regressor."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    tmp = tmp_path_factory.mktemp("grpc")
    reg = Registry(f"sqlite:///{tmp / 'registry.db'}", tmp / "artifacts")
    x, _ = cancer_frame
    reg.register(modelport.save(cancer_pipeline, tmp / "cancer", name="cancer", example=x[:5]))
    ix, _ = iris_arrays
    reg.register(modelport.save(iris_classifier, tmp / "iris", name="iris", example=ix[:5]))
    rooms = pd.DataFrame({"rooms": [1, 2, 3, 4, 2, 3], "city": ["Oslo", "Rome", "Oslo", "Rome",
                                                                 "Lima", "Lima"],
                          "area": [30.0, 55.5, 70.0, 99.0, 41.0, 60.0]})
    price = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        LinearRegression(),
    ).fit(rooms, [100.0, 180.0, 210.0, 330.0, 120.0, 170.0])
    reg.register(modelport.save(price, tmp / "price", name="price", example=rooms))
    reg.register(modelport.save(price, tmp / "price2", name="price", example=rooms))
    pairs = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    reg.register(modelport.save(serving_models.SumModel(), tmp / "sum", name="sum",
                                example=pairs))
    reg.register(modelport.save(serving_models.SumModel(delay=2.0), tmp / "slow", name="slow",
                                example=pairs))
    return reg


@pytest.fixture(scope="module")
def served(registry: Registry) -> Iterator[tuple[GrpcServerHandle, InferenceService]]:
    loop = LoopThread()
    service = InferenceService(registry)
    handle = loop.run(start_grpc_server(service, "127.0.0.1", 0))
    yield handle, service
    loop.run(handle.stop(None))
    service.close()
    loop.close()


@pytest.fixture
def client(served: tuple[GrpcServerHandle, InferenceService]
           ) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(served[0].target)
    yield c
    c.close()


@pytest.fixture
def stub(served: tuple[GrpcServerHandle, InferenceService]
         ) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served[0].target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _status(exc: InferenceServerException) -> str:
    return str(exc.status())


# ------------------------------------------------------------------ health and metadata
def test_server_is_live_ready_and_describes_itself(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert (meta.name, meta.version) == ("modelport", modelport.__version__)


def test_model_readiness_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("cancer")
    assert client.is_model_ready("price", "2")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready("price", "9")
    meta = client.get_model_metadata("cancer")
    assert meta.name == "cancer" and list(meta.versions) == ["1"]
    assert meta.platform == "modelport_sklearn"
    assert len(meta.inputs) == 30
    assert (meta.inputs[0].name, meta.inputs[0].datatype, list(meta.inputs[0].shape)) == (
        "mean radius", "FP64", [-1])
    outputs = {o.name: (o.datatype, list(o.shape)) for o in meta.outputs}
    assert outputs == {"label": ("INT64", [-1]), "probabilities": ("FP64", [-1, 2])}
    iris = client.get_model_metadata("iris")
    assert [(i.name, i.datatype, list(i.shape)) for i in iris.inputs] == [
        ("input", "FP64", [-1, 4])]


def test_model_metadata_parameters_carry_the_class_names(
        stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="cancer"))
    params = {k: v.string_param for k, v in meta.parameters.items()}
    assert params == {"task": "classification", "input_layout": "columns", "classes": "[0, 1]"}


# ------------------------------------------------------------------ inference
def test_tritonclient_infers_a_columns_model_from_one_matrix(
    client: triton.InferenceServerClient, registry: Registry,
    cancer_frame: tuple[pd.DataFrame, pd.Series],
) -> None:
    x, _ = cancer_frame
    rows = x.iloc[:25]
    result = client.infer("cancer", [_input("input__0", rows.to_numpy(), "FP64")],
                          request_id="req-7")
    local = registry.load("cancer")
    np.testing.assert_array_equal(result.as_numpy("label"), local.predict(rows))
    np.testing.assert_allclose(result.as_numpy("probabilities"), local.predict_proba(rows),
                               rtol=1e-12)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("cancer", "1", "req-7")


def test_tritonclient_infers_one_tensor_per_column_with_text(
    client: triton.InferenceServerClient, registry: Registry,
) -> None:
    frame = pd.DataFrame({"rooms": [2, 3, 5], "city": ["Rome", "Lima", "Oslo"],
                          "area": [50.0, 62.5, 120.0]})
    inputs = [
        _input("area", frame["area"].to_numpy(np.float32), "FP32"),
        _input("city", frame["city"].to_numpy(object).reshape(-1, 1), "BYTES"),
        _input("rooms", frame["rooms"].to_numpy(np.int32), "INT32"),
    ]
    result = client.infer("price", inputs, model_version="1")
    np.testing.assert_allclose(result.as_numpy("prediction"),
                               registry.load("price:1").predict(frame), rtol=1e-9)
    assert result.get_response().model_version == "1"


def test_tritonclient_infers_a_tensor_model_and_picks_outputs(
    client: triton.InferenceServerClient, registry: Registry,
    iris_arrays: tuple[np.ndarray, np.ndarray],
) -> None:
    x, _ = iris_arrays
    rows = x[::15]
    result = client.infer("iris", [_input("input", rows, "FP64")],
                          outputs=[triton.InferRequestedOutput("probabilities")])
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    assert result.as_numpy("label") is None
    np.testing.assert_allclose(result.as_numpy("probabilities"),
                               registry.load("iris").predict_proba(rows), rtol=1e-12)


def test_typed_contents_in_give_typed_contents_out(
    stub: pb_grpc.GRPCInferenceServiceStub, registry: Registry,
    iris_arrays: tuple[np.ndarray, np.ndarray],
) -> None:
    x, _ = iris_arrays
    rows = x[:3]
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP64", shape=[3, 4])
    tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    response = stub.ModelInfer(pb.ModelInferRequest(model_name="iris", inputs=[tensor]))
    assert not response.raw_output_contents
    label, proba = response.outputs
    local = registry.load("iris")
    assert (label.name, label.datatype, list(label.shape)) == ("label", "INT64", [3])
    assert list(label.contents.int64_contents) == local.predict(rows).tolist()
    assert (proba.name, proba.datatype, list(proba.shape)) == ("probabilities", "FP64", [3, 3])
    np.testing.assert_allclose(np.reshape(proba.contents.fp64_contents, (3, 3)),
                               local.predict_proba(rows), rtol=1e-12)
    assert proba.parameters["classes"].string_param == "[0, 1, 2]"


def test_raw_outputs_can_be_asked_for_with_typed_inputs(
        stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend([5.1, 3.5, 1.4, 0.2])
    request = pb.ModelInferRequest(model_name="iris", inputs=[tensor])
    request.parameters["binary_data_output"].bool_param = True
    response = stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 2
    assert np.frombuffer(response.raw_output_contents[0], "<i8").tolist() == [0]


def test_grpc_requests_go_through_the_shared_runner(
    client: triton.InferenceServerClient, served: tuple[GrpcServerHandle, InferenceService],
) -> None:
    service = served[1]
    events: list[PredictionEvent] = []
    service.events.subscribe(events.append)
    try:
        client.infer("iris", [_input("input", np.array([[5.1, 3.5, 1.4, 0.2]]), "FP64")],
                     request_id="seen-1")
        assert service.events.flush()
    finally:
        service.events.unsubscribe(events.append)
    mine = [e for e in events if e.request_id == "seen-1"]
    assert [(e.source, e.model, e.version, e.n_rows) for e in mine] == [("grpc", "iris", 1, 1)]
    assert "iris" in service.references()


# ------------------------------------------------------------------ errors
def test_wrong_shape_is_invalid_argument_naming_the_input(
        client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("cancer", [_input("features", np.zeros((2, 29)), "FP64")])
    assert _status(caught.value) == "StatusCode.INVALID_ARGUMENT"
    assert "input 'features': expected shape [n, 30]" in caught.value.message()


def test_wrong_dtype_is_invalid_argument_naming_the_column(
        client: triton.InferenceServerClient) -> None:
    inputs = [
        _input("area", np.array(["large"], dtype=object), "BYTES"),
        _input("city", np.array(["Rome"], dtype=object), "BYTES"),
        _input("rooms", np.array([2], dtype=np.int64), "INT64"),
    ]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("price", inputs)
    assert _status(caught.value) == "StatusCode.INVALID_ARGUMENT"
    assert "column 'area': expected float64, got a string" in caught.value.message()


def test_missing_column_and_unknown_output_name_the_field(
        client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("price", [_input("area", np.array([1.0]), "FP64"),
                               _input("rooms", np.array([2]), "INT64")])
    assert _status(caught.value) == "StatusCode.INVALID_ARGUMENT"
    assert "missing column 'city'" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [_input("input", np.zeros((1, 4)), "FP64")],
                     outputs=[triton.InferRequestedOutput("score")])
    assert _status(caught.value) == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output 'score'" in caught.value.message()


def test_invalid_argument_carries_the_field_in_trailing_metadata(
        stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP64", shape=[1, 3])
    tensor.contents.fp64_contents.extend([1.0, 2.0, 3.0])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(pb.ModelInferRequest(model_name="iris", inputs=[tensor]))
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected shape [n, 4], got [1, 3]" in error.details()
    assert ("field", "input") in [(m.key, m.value) for m in error.trailing_metadata()]


def test_unknown_model_or_version_is_not_found(client: triton.InferenceServerClient) -> None:
    row = [_input("input", np.zeros((1, 4)), "FP64")]
    for name, version in (("no-such-model", ""), ("iris", "7")):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, row, model_version=version)
        assert _status(caught.value) == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", row, model_version="latest")
    assert _status(caught.value) == "StatusCode.INVALID_ARGUMENT"
    assert "model_version 'latest' is not a version number" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("../etc", row)
    assert _status(caught.value) == "StatusCode.INVALID_ARGUMENT"


# ------------------------------------------------------------------ served names, ports
def test_served_names_map_to_references_and_hide_the_rest(registry: Registry) -> None:
    registry.set_alias("price", "production", 1)
    loop = LoopThread()
    service = InferenceService(registry)
    try:
        handle = loop.run(start_grpc_server(service, "127.0.0.1", 0,
                                            models={"houses": "price@production"}))
        client = triton.InferenceServerClient(handle.target)
        try:
            meta = client.get_model_metadata("houses")
            assert (meta.name, list(meta.versions)) == ("houses", ["1"])
            assert client.is_model_ready("houses", "1")
            assert not client.is_model_ready("houses", "2")  # not the served version
            with pytest.raises(InferenceServerException) as caught:
                client.infer("houses", [_input("area", np.array([1.0]), "FP64")],
                             model_version="2")
            assert _status(caught.value) == "StatusCode.NOT_FOUND"
            assert "model 'houses' serves version 1, not 2" in caught.value.message()
            with pytest.raises(InferenceServerException) as caught:
                client.get_model_metadata("iris")
            assert _status(caught.value) == "StatusCode.NOT_FOUND"
            assert "served models: ['houses']" in caught.value.message()
            with pytest.raises(ConfigurationError, match="cannot listen for gRPC"):
                loop.run(start_grpc_server(service, "127.0.0.1", handle.port))
        finally:
            client.close()
            loop.run(handle.stop(None))
    finally:
        service.close()
        loop.close()


# ------------------------------------------------------------------ the core underneath
def _pairs(a: float, b: float) -> list[triton.InferInput]:
    return [_input("a", np.array([a]), "FP64"), _input("b", np.array([b]), "FP64")]


def test_a_failing_model_answers_internal_without_its_internals(
        client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("sum", _pairs(-1.0, 2.0), request_id="req-41")
    assert _status(caught.value) == "StatusCode.INTERNAL"
    message = caught.value.message()
    assert "negative" not in message and "Traceback" not in message
    assert "request id req-41" in message
    assert client.infer("sum", _pairs(1.0, 2.0)).as_numpy("prediction").tolist() == [3.0]


def test_a_prediction_past_the_request_timeout_is_deadline_exceeded(registry: Registry) -> None:
    loop = LoopThread()
    service = InferenceService(registry)
    try:
        handle = loop.run(start_grpc_server(service, "127.0.0.1", 0, request_timeout=0.2))
        client = triton.InferenceServerClient(handle.target)
        try:
            with pytest.raises(InferenceServerException) as caught:
                client.infer("slow", _pairs(1.0, 2.0))
            assert _status(caught.value) == "StatusCode.DEADLINE_EXCEEDED"
            assert "model slow:1 did not answer within 0.2 s" in caught.value.message()
        finally:
            client.close()
            loop.run(handle.stop(None))
    finally:
        service.close()
        loop.close()


class GatedSumPredictor(SumPredictor):
    """Holds its first call until released, so requests provably queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def predict(self, batch: Batch) -> Result:
        self.started.set()
        self.release.wait(60)
        return super().predict(batch)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def test_rest_and_grpc_requests_share_one_micro_batch(registry: Registry) -> None:
    """A REST and a gRPC request queued behind a busy model are answered by one model call."""
    from modelport.serving.app import create_app
    from modelport.serving.config import ServeConfig

    loop = LoopThread()
    service = InferenceService(registry)
    app = create_app(service, ServeConfig(models=("sum",), poll_interval_s=0))
    app.load_models()
    runner = service.runner("sum")
    gated = GatedSumPredictor()
    runner.predictor = gated

    async def rest(a: float, b: float) -> list[float]:
        body = {"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [a]},
                           {"name": "b", "datatype": "FP64", "shape": [1], "data": [b]}]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://modelport") as http:
            response = await http.post("/v2/models/sum/infer", json=body)
        assert response.status_code == 200, response.text
        data: list[float] = response.json()["outputs"][0]["data"]
        return data

    handle = loop.run(start_grpc_server(service, "127.0.0.1", 0, models=app.served))
    client = triton.InferenceServerClient(handle.target)
    try:
        first = asyncio.run_coroutine_threadsafe(rest(1.0, 2.0), loop.loop)
        assert gated.started.wait(60)
        with ThreadPoolExecutor(1) as pool:
            by_grpc = pool.submit(client.infer, "sum", _pairs(10.0, 20.0))
            by_rest = asyncio.run_coroutine_threadsafe(rest(100.0, 200.0), loop.loop)
            _until(lambda: runner.queued_rows == 2, "both requests queued")
            gated.release.set()
            assert by_grpc.result(60).as_numpy("prediction").tolist() == [30.0]
        assert by_rest.result(60) == [300.0]
        assert first.result(60) == [3.0]
        assert gated.call_sizes == [1, 2]
    finally:
        gated.release.set()
        client.close()
        loop.run(handle.stop(None))
        service.close()
        loop.close()


# ------------------------------------------------------------------ as users run it
def test_modelport_serve_grpc_port_answers_like_its_rest_v2_route(
    tmp_path: Path, iris_arrays: tuple[np.ndarray, np.ndarray], iris_classifier: object,
) -> None:
    """``modelport serve --grpc-port``: gRPC and REST V2 of one process give the same answer."""
    x, _ = iris_arrays
    home = Home(tmp_path / "home")
    home.register(iris_classifier, "iris", x[:20], alias="production")
    grpc_port = free_port()
    server = launch(home, tmp_path, "iris@production", "--grpc-port", str(grpc_port))
    try:
        rows = x[::10]
        by_grpc = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert by_grpc.is_server_ready() and by_grpc.is_model_ready("iris")
        grpc_result = by_grpc.infer("iris", [_input("input", rows, "FP64")])
        by_grpc.close()
        by_http = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
        http_input = triton_http.InferInput("input", list(rows.shape), "FP64")
        http_input.set_data_from_numpy(rows)
        http_result = by_http.infer("iris", [http_input])
        by_http.close()
        for name in ("label", "probabilities"):
            np.testing.assert_array_equal(grpc_result.as_numpy(name), http_result.as_numpy(name))
        np.testing.assert_array_equal(grpc_result.as_numpy("label"),
                                      iris_classifier.predict(rows))  # type: ignore[attr-defined]
        assert grpc_result.get_response().model_version == "1"
    finally:
        assert server.stop() == 0, server.output()


def test_every_worker_serves_grpc_on_the_shared_port(
    tmp_path: Path, iris_arrays: tuple[np.ndarray, np.ndarray], iris_classifier: object,
) -> None:
    """``--workers 2 --grpc-port P``: both worker processes listen on P (SO_REUSEPORT)."""
    import psutil

    x, _ = iris_arrays
    home = Home(tmp_path / "home")
    home.register(iris_classifier, "iris", x[:20], alias="production")
    grpc_port = free_port()
    server = launch(home, tmp_path, "iris@production", "--grpc-port", str(grpc_port),
                    "--workers", "2")
    try:
        supervisor = psutil.Process(server.proc.pid)
        deadline = time.monotonic() + 60
        while True:  # the first ready worker already answers; wait for the second one
            workers = {p.pid for p in supervisor.children(recursive=True)}
            listening = {c.pid for c in psutil.net_connections("tcp")
                         if c.status == psutil.CONN_LISTEN and c.laddr.port == grpc_port}
            if len(listening & workers) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(listening & workers) == 2, (listening, workers)
        for _ in range(6):  # new connections, spread over the workers by the kernel
            client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            result = client.infer("iris", [_input("input", x[:3], "FP64")])
            client.close()
            np.testing.assert_array_equal(result.as_numpy("label"),
                                          iris_classifier.predict(x[:3]))  # type: ignore[attr-defined]
    finally:
        assert server.stop() == 0, server.output()
