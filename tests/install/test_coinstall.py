"""``modelport[serve]`` + ``tritonclient[grpc]`` + ``kserve`` + ``mlflow`` in one fresh environment:
they install together, ``modelport serve --grpc-port`` runs there (on the protobuf 6 runtime the
clients pin), and each client talks to it: tritonclient over gRPC (unary and streaming) and HTTP,
the kserve SDK over KServe V1, MLflow's own scoring client over ``/invocations``; MLflow 3 models
(LightGBM saved as skops, a custom pyfunc model) go through ``modelport import-mlflow``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from coinstall_env import Env, Served, serve

pytestmark = pytest.mark.slow

SAVE_MODELS = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import lightgbm as lgb, mlflow, modelport
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

out = Path(sys.argv[1])
x, y = load_iris(return_X_y=True, as_frame=True)
x.columns = ["sl", "sw", "pl", "pw"]
# pip_requirements given: MLflow would otherwise infer them in a subprocess (~10 s each)
mlflow.lightgbm.save_model(lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y),
                           out / "lgbm", input_example=x[:3], pip_requirements=["lightgbm"])

class Weighted(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return (model_input["sl"] * 10 + model_input["pw"]).to_numpy()

mlflow.pyfunc.save_model(out / "pyf", python_model=Weighted(), input_example=x[:3],
                         pip_requirements=["pandas"])
modelport.save(LogisticRegression(max_iter=500).fit(x.to_numpy(), y), out / "iris",
               name="iris", example=x.to_numpy()[:5])
# registered in this process (the CLI of import-mlflow has its own test below)
from modelport.bundle.mlflow import import_mlflow
from modelport.registry import Registry
from modelport.settings import Settings

with Registry.from_settings(Settings.from_env()) as registry:
    registry.register(out / "iris")
    registry.register(import_mlflow(out / "lgbm", out / "lgbm-bundle", name="lgbm"))
    registry.register(import_mlflow(out / "pyf", out / "pyf-bundle", name="pyf", trusted=True))
    names = sorted(m.name for m in registry.list_models())
print(json.dumps(names))
"""

VERSIONS = r"""
import json
from importlib import metadata
import modelport.serving.grpc  # the generated modules load on this runtime
print(json.dumps({p: metadata.version(p) for p in
                  ("protobuf", "grpcio", "tritonclient", "kserve", "mlflow", "modelport")}))
"""

TRITON = r"""
import json, queue, sys
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_iris

grpc_url, http_url = sys.argv[1], sys.argv[2]
x = load_iris(return_X_y=True)[0][:4]
tensor = grpcclient.InferInput("input", list(x.shape), "FP64")
tensor.set_data_from_numpy(x)
client = grpcclient.InferenceServerClient(grpc_url)
unary = client.infer("iris", [tensor]).as_numpy("label").tolist()
answers = queue.Queue()
client.start_stream(callback=lambda result, error: answers.put((result, error)))
for i in range(3):
    client.async_stream_infer("iris", [tensor], request_id=f"s{i}")
streamed = [answers.get(timeout=30) for _ in range(3)]
client.stop_stream()
stats = client.get_inference_statistics("iris", as_json=True)["model_stats"][0]
index = client.get_model_repository_index(as_json=True)["models"]
config = client.get_model_config("iris", as_json=True)["config"]
client.close()
http = httpclient.InferenceServerClient(http_url)
h_tensor = httpclient.InferInput("input", list(x.shape), "FP64")
h_tensor.set_data_from_numpy(x)
by_http = http.infer("iris", [h_tensor]).as_numpy("label").tolist()
print(json.dumps({
    "unary": unary, "http": by_http,
    "streamed": [r.as_numpy("label").tolist() for r, e in streamed if e is None],
    "stream_errors": [str(e) for _, e in streamed if e is not None],
    "success": int(stats["inference_stats"]["success"]["count"]),
    "index": sorted(m["name"] for m in index),
    "max_batch_size": int(config["max_batch_size"]),
}))
"""

KSERVE = r"""
import asyncio, json, sys
import httpx
from kserve import InferenceRESTClient, RESTConfig

url = sys.argv[1]

async def main():
    client = InferenceRESTClient(config=RESTConfig(protocol="v1", retries=0))
    live = await client.is_server_live(url)
    ready = await client.is_model_ready(url, "iris")
    answer = await client.infer(url, {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
                                model_name="iris")
    try:
        await client.explain(url, "iris", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
        explain = None
    except httpx.HTTPStatusError as exc:
        explain = [exc.response.status_code, exc.response.json()]
    models = httpx.get(url + "/v1/models").json()
    return {"live": live, "ready": ready, "predictions": answer["predictions"],
            "explain": explain, "models": models}

print(json.dumps(asyncio.run(main())))
"""

MLFLOW = r"""
import io, json, sys, warnings
warnings.filterwarnings("ignore")
import mlflow.pyfunc, pandas as pd, requests
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from sklearn.datasets import load_iris

host, port, models = sys.argv[1], int(sys.argv[2]), sys.argv[3]
x = load_iris(return_X_y=True, as_frame=True)[0].iloc[::30].reset_index(drop=True)
x.columns = ["sl", "sw", "pl", "pw"]
sent = x.assign(customer_id=range(100, 100 + len(x)))  # a column the signature does not name
client = ScoringServerClient(host, port)
client.wait_server_ready(timeout=30)
out = {"expected_pyf": mlflow.pyfunc.load_model(f"{models}/pyf").predict(sent).tolist(),
       "expected_lgbm": mlflow.pyfunc.load_model(f"{models}/lgbm").predict(sent).tolist(),
       # the default model of /invocations (serve --invocations-model pyf), MLflow's client
       "client": client.invoke(sent).get_predictions().iloc[:, 0].tolist()}
base = f"http://{host}:{port}/invocations"
csv = sent.to_csv()  # with the pandas index as an unnamed first column
out["csv"] = requests.post(base + "?model=lgbm", data=csv,
                           headers={"Content-Type": "text/csv"}).json()["predictions"]
records = requests.post(base + "?model=lgbm",
                        json={"dataframe_records": sent.to_dict(orient="records")})
out["records"] = records.json()["predictions"]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def models(coinstall: Env, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mlflow-models")
    assert coinstall.script(SAVE_MODELS, str(out)) == ["iris", "lgbm", "pyf"]
    return out


@pytest.fixture(scope="module")
def served(coinstall: Env, models: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    srv = serve(coinstall, tmp_path_factory.mktemp("serve-logs"), "iris", "lgbm", "pyf",
                "--trusted", "--invocations-model", "pyf")
    yield srv
    assert srv.stop() == 0, srv.log.read_text()


def test_the_clients_install_next_to_modelport_and_protobuf_6_loads_its_grpc_modules(
        coinstall: Env) -> None:
    versions = coinstall.script(VERSIONS)
    assert versions["protobuf"].startswith("6."), versions  # what tritonclient and kserve pin
    assert versions["tritonclient"].startswith("2.73") and versions["kserve"].startswith("0.21")
    assert versions["mlflow"].startswith("3.17")


def test_tritonclient_grpc_unary_stream_and_http_against_serve(coinstall: Env,
                                                               served: Served) -> None:
    got = coinstall.script(TRITON, served.grpc, served.url.removeprefix("http://"))
    assert got["unary"] == got["http"] == [0, 0, 0, 0]
    assert got["streamed"] == [got["unary"]] * 3 and got["stream_errors"] == []
    assert got["success"] >= 4
    assert got["index"] == ["iris", "lgbm", "pyf"]
    assert got["max_batch_size"] > 0


def test_kserve_sdk_speaks_v1_to_serve(coinstall: Env, served: Served) -> None:
    got = coinstall.script(KSERVE, served.url)
    assert got["live"] is True and got["ready"] is True
    assert got["predictions"] == [0, 2]
    assert got["models"] == {"models": ["iris", "lgbm", "pyf"]}
    status, body = got["explain"]
    assert status == 501 and "no explainer" in body["error"]


def test_mlflow_scoring_client_gets_what_mlflow_itself_predicts(
        coinstall: Env, served: Served, models: Path) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    got = coinstall.script(MLFLOW, host, port, str(models))
    assert got["client"] == pytest.approx(got["expected_pyf"])
    assert got["csv"] == got["records"] == got["expected_lgbm"]


def test_import_mlflow_trust_and_overwrite(coinstall: Env, models: Path, tmp_path: Path) -> None:
    mp = coinstall.modelport
    out = tmp_path / "bundle"
    refused = coinstall.run([mp, "import-mlflow", str(models / "pyf"), "-o", str(out)],
                            check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error:") and "--trusted" in refused.stderr
    out.mkdir()
    (out / "old-bundle-file").write_text("an earlier import")
    again = coinstall.run([mp, "import-mlflow", str(models / "lgbm"), "-o", str(out)],
                          check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    coinstall.run([mp, "import-mlflow", str(models / "lgbm"), "-o", str(out), "--overwrite"])
    assert (out / "modelport.yaml").is_file() and not (out / "old-bundle-file").exists()
