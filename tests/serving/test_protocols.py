"""Every REST route of one real server, driven the way each protocol's own clients drive it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import serving_models
import tritonclient.http as triton
from conftest import Home, Server, launch
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, iris: Any, cancer: Any
           ) -> Iterator[tuple[Server, Any, Any]]:
    tmp = tmp_path_factory.mktemp("protocols")
    home = Home(tmp / "home")
    x_iris, _, iris_model = iris
    x_cancer, cancer_model = cancer
    home.register(iris_model, "iris", x_iris[:20], alias="production")
    home.register(cancer_model, "cancer", x_cancer.head(20))
    home.register(serving_models.TextLengthModel(), "text",
                  pd.DataFrame({"word": ["a", "bb"], "x": [0.5, 1.0]}))
    server = launch(home, tmp, "iris@production", "cancer", "text", "--max-rows", "50",
                    "--max-body-bytes", "20000", "--allow-admin-routes", "--log-format", "json")
    yield server, iris, cancer
    server.stop()


@pytest.fixture
def http(served: tuple[Server, Any, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0].url, timeout=30) as client:
        yield client


def cancer_rows(cancer: Any, n: int) -> pd.DataFrame:
    return cancer[0].head(n)


# ------------------------------------------------------------------------ V2 via tritonclient
def test_v2_health_and_metadata_with_tritonclient(served: tuple[Server, Any, Any]) -> None:
    client = triton.InferenceServerClient(served[0].url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("cancer")
    assert [i["name"] for i in model["inputs"]] == list(served[2][0].columns)
    assert model["versions"] == ["1"]
    assert {o["name"] for o in model["outputs"]} == {"label", "probabilities"}
    assert "accelerated" in model["parameters"]
    assert model["parameters"]["accelerate_reason"]


@pytest.mark.parametrize("binary", [True, False])
def test_v2_infer_per_column_tensors(served: tuple[Server, Any, Any], binary: bool) -> None:
    frame = cancer_rows(served[2], 7)
    client = triton.InferenceServerClient(served[0].url.removeprefix("http://"))
    inputs = []
    for name in frame.columns:
        tensor = triton.InferInput(name, [len(frame)], "FP64")
        tensor.set_data_from_numpy(frame[name].to_numpy(), binary_data=binary)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("label", binary_data=binary),
               triton.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("cancer", inputs, outputs=outputs)
    model = served[2][1]
    labels = result.as_numpy("label")
    assert [v.decode() if isinstance(v, bytes) else v for v in labels] == list(
        model.predict(frame))
    np.testing.assert_allclose(result.as_numpy("probabilities"), model.predict_proba(frame),
                               atol=1e-5)


def test_v2_infer_tensor_model_binary_default(served: tuple[Server, Any, Any]) -> None:
    x, _, model = served[1]
    client = triton.InferenceServerClient(served[0].url.removeprefix("http://"))
    tensor = triton.InferInput("input", [5, 4], "FP32")
    tensor.set_data_from_numpy(x[:5].astype(np.float32))
    result = client.infer("iris", [tensor])  # no outputs named: binary_data_output
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(result.as_numpy("label"), model.predict(x[:5]))


def test_v2_infer_json_by_hand_and_versions(http: httpx.Client, served: Any) -> None:
    x, _, model = served[1]
    body = {"id": "req-1", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64",
                                       "data": x[:2].tolist()}]}
    r = http.post("/v2/models/iris/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "req-1"
    assert out["label"]["data"] == model.predict(x[:2]).tolist()
    assert out["probabilities"]["shape"] == [2, 3]
    r = http.post("/v2/models/iris/versions/9/infer", json=body)
    assert r.status_code == 404
    assert "version 1" in r.json()["error"]


@pytest.mark.parametrize("binary", [True, False])
def test_v2_string_column_as_bytes_tensor(served: tuple[Server, Any, Any], binary: bool) -> None:
    client = triton.InferenceServerClient(served[0].url.removeprefix("http://"))
    word = triton.InferInput("word", [3], "BYTES")
    word.set_data_from_numpy(np.array([b"a", "héllo".encode(), b""], dtype=object),
                             binary_data=binary)
    x = triton.InferInput("x", [3], "FP64")
    x.set_data_from_numpy(np.array([0.5, 1.0, 2.0]), binary_data=binary)
    result = client.infer("text", [word, x])
    assert result.as_numpy("prediction").tolist() == [1.5, 6.0, 2.0]
    meta = client.get_model_metadata("text")
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"word": "BYTES", "x": "FP64"}


def test_v2_errors_name_the_field(http: httpx.Client) -> None:
    r = http.post("/v2/models/cancer/infer", json={"inputs": [
        {"name": "mean_radius", "shape": [1], "datatype": "FP64", "data": [1.0]}]})
    assert r.status_code == 400
    assert "mean_texture" in r.json()["error"]
    r = http.post("/v2/models/cancer/infer", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = http.post("/v2/models/iris/infer", json={"inputs": [
        {"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]})
    assert r.status_code == 400 and "input" in r.json()["error"]
    r = http.post("/v2/models/ghost/infer", json={"inputs": []})
    assert r.status_code == 404 and "ghost" in r.json()["error"]
    assert http.get("/v2/models/iris/infer").status_code == 405


def test_triton_client_raises_server_message(served: tuple[Server, Any, Any]) -> None:
    client = triton.InferenceServerClient(served[0].url.removeprefix("http://"))
    tensor = triton.InferInput("input", [1, 4], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"a", b"b", b"c", b"d"]], dtype=object))
    with pytest.raises(InferenceServerException, match="input"):
        client.infer("iris", [tensor])


def test_v2_repository_extension(served: tuple[Server, Any, Any]) -> None:
    client = triton.InferenceServerClient(served[0].url.removeprefix("http://"))
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["iris"]["state"] == "READY" and index["iris"]["version"] == "1"
    client.load_model("iris:1")
    assert client.is_model_ready("iris:1")
    client.unload_model("iris:1")
    assert not client.is_model_ready("iris:1")
    assert client.is_model_ready("iris")
    with pytest.raises(InferenceServerException, match="ghost"):
        client.load_model("ghost")


# ------------------------------------------------------------------------ KServe V1
def test_v1_metadata_and_predict(http: httpx.Client, served: Any) -> None:
    x, _, model = served[1]
    meta = http.get("/v1/models/iris").json()
    assert meta["name"] == "iris" and meta["ready"] is True and "accelerated" in meta
    r = http.post("/v1/models/iris:predict", json={"instances": x[:3].tolist()})
    assert r.status_code == 200
    assert r.json() == {"predictions": model.predict(x[:3]).tolist()}
    frame = cancer_rows(served[2], 2)
    r = http.post("/v1/models/cancer:predict",
                  json={"instances": frame.to_dict(orient="records")})
    assert r.json()["predictions"] == list(served[2][1].predict(frame))
    r = http.post("/v1/models/cancer:predict",
                  json={"inputs": {c: frame[c].tolist() for c in frame.columns}})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2


def test_v1_errors(http: httpx.Client) -> None:
    r = http.post("/v1/models/cancer:predict", json={"instances": [{"mean_radius": 1}]})
    assert r.status_code == 400
    assert set(r.json()) == {"error"} and "mean_texture" in r.json()["error"]
    r = http.post("/v1/models/cancer:predict", json={"rows": []})
    assert r.status_code == 400 and "instances" in r.json()["error"]
    assert http.get("/v1/models/ghost").status_code == 404


# ------------------------------------------------------------------------ MLflow scoring
def test_mlflow_health_routes(http: httpx.Client) -> None:
    assert http.get("/ping").status_code == 200
    assert http.get("/health").status_code == 200
    r = http.get("/version")
    assert r.status_code == 200 and r.text


@pytest.mark.parametrize("layout", ["dataframe_split", "dataframe_records", "instances",
                                    "inputs"])
def test_mlflow_invocations_json(http: httpx.Client, served: Any, layout: str) -> None:
    frame = cancer_rows(served[2], 3)
    if layout == "dataframe_split":  # what mlflow's pandas client sends: orient="split"
        payload: Any = {"dataframe_split": frame.to_dict(orient="split")}
    elif layout == "dataframe_records":
        payload = {"dataframe_records": frame.to_dict(orient="records")}
    elif layout == "instances":
        payload = {"instances": frame.to_dict(orient="records")}
    else:
        payload = {"inputs": {c: frame[c].tolist() for c in frame.columns}}
    payload["params"] = {}
    r = http.post("/invocations?model=cancer", json=payload)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": list(served[2][1].predict(frame))}


def test_mlflow_invocations_csv_and_default_model(http: httpx.Client, served: Any) -> None:
    frame = cancer_rows(served[2], 4)
    r = http.post("/invocations?model=cancer", content=frame.to_csv(index=False).encode(),
                  headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == list(served[2][1].predict(frame))
    x, _, _ = served[1]  # several models served: /invocations does not guess
    r = http.post("/invocations", json={"inputs": x[:2].tolist()})
    assert r.status_code == 400
    assert "?model=" in r.json()["message"] and "--invocations-model" in r.json()["message"]


def test_mlflow_error_shape(http: httpx.Client) -> None:
    r = http.post("/invocations?model=cancer", json={"dataframe_records": [{"x": 1}]})
    assert r.status_code == 400
    body = r.json()
    assert body["error_code"] == "BAD_REQUEST" and "mean_radius" in body["message"]
    r = http.post("/invocations?model=cancer", content=b"mean_radius\nabc\n",
                  headers={"content-type": "text/csv"})
    assert r.status_code == 400 and "mean_radius" in r.json()["message"]


# ------------------------------------------------------------------------ plain JSON
def test_predict_record_and_records(http: httpx.Client, served: Any) -> None:
    frame = cancer_rows(served[2], 2)
    model = served[2][1]
    records = frame.to_dict(orient="records")
    r = http.post("/predict/cancer", json=records[0], headers={"x-request-id": "abc123"})
    assert r.status_code == 200
    body = r.json()
    assert r.headers["x-request-id"] == "abc123"
    # the prediction id P is the server's own (uuid4 hex), in the body and x-prediction-id
    assert body["prediction_id"] == r.headers["x-prediction-id"] != "abc123"
    assert body["version"] == 1 and body["model"] == "cancer"
    assert list(body) == ["prediction_id", "prediction", "probabilities", "model", "version",
                          "predicted_at"]  # the record form of modelport.core.schema
    assert body["prediction"] == model.predict(frame.head(1))[0]
    assert body["predicted_at"].endswith("Z") and len(body["predicted_at"]) == 27
    probs = body["probabilities"]
    assert set(probs) == {"benign", "malignant"}
    assert probs["benign"] == pytest.approx(model.predict_proba(frame.head(1))[0][0], abs=1e-5)
    r = http.post("/predict/cancer", json=records)
    answer = r.json()
    assert [p["prediction"] for p in answer["predictions"]] == list(model.predict(frame))
    pid = r.headers["x-prediction-id"]
    assert len(pid) == 32 and pid != r.headers["x-request-id"]
    assert [p["prediction_id"] for p in answer["predictions"]] == [f"{pid}-0", f"{pid}-1"]
    assert (answer["model"], answer["version"]) == ("cancer", 1)
    # a field the model does not take (a client's id) is ignored by default
    r = http.post("/predict/cancer", json={**records[0], "customer": "c-7"})
    assert r.status_code == 200 and "customer" not in r.json()


def test_predict_errors(http: httpx.Client) -> None:
    r = http.post("/predict/cancer", json={"mean_radius": "big"})
    assert r.status_code == 400
    assert r.json()["field"] in {"mean_texture", "mean_radius"}
    r = http.post("/predict/cancer", json=[1, 2])
    assert r.status_code == 400 and "record" in r.json()["error"]


# ------------------------------------------------------------------------ docs, limits
def test_openapi_document_has_each_model_input_schema(http: httpx.Client, served: Any) -> None:
    doc = http.get("/openapi.json").json()
    assert "/predict/cancer" in doc["paths"] and "/v2/models/iris/infer" in doc["paths"]
    schema = doc["components"]["schemas"]["cancer_record"]
    assert set(schema["required"]) == set(served[2][0].columns)
    page = http.get("/docs")
    assert page.status_code == 200 and "mean_radius" in page.text


def test_max_rows(http: httpx.Client, served: Any) -> None:
    x = served[1][0]
    r = http.post("/v1/models/iris:predict", json={"instances": x[:51].tolist()})
    assert r.status_code == 400 and "limit is 50" in r.json()["error"]


def test_body_limit_from_content_length(http: httpx.Client) -> None:
    r = http.post("/v2/models/iris/infer", content=b" " * 30_000)
    assert r.status_code == 413
    assert "20000" in r.json()["error"]


def test_body_limit_while_streaming_chunks(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 1000

    r = http.post("/predict/cancer", content=chunks())  # no Content-Length: chunked
    assert r.status_code == 413
    r = http.post("/predict/cancer", content=iter([b'{"mean_radius":', b" 1}"]))
    assert r.status_code == 400  # small chunked bodies are read normally


def test_unknown_route(http: httpx.Client) -> None:
    assert http.get("/nothing/here").status_code == 404


def test_metrics_count_requests_by_model_version_protocol_status(
        http: httpx.Client, served: Any) -> None:
    x = served[1][0]
    for _ in range(3):
        http.post("/v1/models/iris:predict", json={"instances": x[:1].tolist()})
    text = http.get("/metrics").text
    line = next(li for li in text.splitlines() if li.startswith("modelport_requests_total{")
                and 'model="iris"' in li and 'protocol="v1"' in li and 'status="200"' in li)
    assert 'version="1"' in line and float(line.rsplit(" ", 1)[1]) >= 3
    assert "modelport_request_duration_seconds_bucket" in text
    assert "modelport_batch_rows_bucket" in text
    assert "modelport_predicted_rows_total" in text
    assert "modelport_queue_rows" in text


def test_server_log_lines_are_json(served: tuple[Server, Any, Any]) -> None:
    import json

    lines = [li for li in served[0].output().splitlines() if li.startswith("{")]
    assert lines
    record = json.loads(lines[0])
    assert {"ts", "level", "logger", "message"} <= set(record)
