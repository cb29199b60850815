"""Defences against model attacks (issue 14): the pure checks, then a real server with them on.

Rounded probabilities and labels-only answers (per model), out-of-distribution inputs flagged in
a response header and a metric or refused with 400, and a sweep of one feature noticed: counted
in ``modelport_sweep_suspected_total`` and logged as an alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
from conftest import Home, Server, free_port, launch
from tritonclient.utils import InferenceServerException

from modelport.bundle.profile import profile_columns
from modelport.core.batch import Batch, Result
from modelport.serving.defences import OutOfDistribution, ResponseShaper, SweepDetector


def _batch(**columns: Any) -> Batch:
    return Batch.from_columns({k: np.asarray(v) for k, v in columns.items()})


def test_out_of_distribution_names_far_numbers_and_unseen_categories() -> None:
    rng = np.random.default_rng(0)
    profile = profile_columns({"x": rng.normal(size=500), "city": np.array(["a", "b"] * 50)})
    check = OutOfDistribution(profile, tolerance=3.0)
    assert check.check(_batch(x=[0.1, -1.0], city=["a", "b"])) == []
    assert check.check(_batch(x=[0.1, 40.0], city=["a", "b"])) == ["x"]
    assert check.check(_batch(x=[0.1], city=["z"])) == ["city"]


def test_response_shaper_rounds_or_drops_probabilities() -> None:
    result = Result(n_rows=1, labels=np.array(["yes"]), probabilities=np.array([[0.123456,
                                                                              0.876544]]),
                    classes=["no", "yes"])
    rounded = ResponseShaper(2, labels_only=False).shape(result)
    assert rounded.probabilities is not None
    assert rounded.probabilities.tolist() == [[0.12, 0.88]]
    assert ResponseShaper(None, labels_only=True).shape(result).probabilities is None
    assert ResponseShaper(None, labels_only=False).shape(result) is result


def test_sweep_detector_tells_a_sweep_from_ordinary_traffic() -> None:
    rng = np.random.default_rng(1)
    ordinary = SweepDetector(window=50, threshold=0.5)
    assert not any(ordinary.observe("key:a", _batch(f0=rng.normal(size=10),
                                                     f1=rng.normal(size=10)))
                   for _ in range(20))
    sweep = SweepDetector(window=50, threshold=0.5)
    alerts = [sweep.observe("key:b", _batch(f0=np.linspace(-3, 3, 10) + i, f1=np.full(10, 0.5)))
              for i in range(20)]
    assert any(alerts) and alerts.count(True) <= 4  # once per window, not per request


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("defences")
    home = Home(tmp / "home")
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 2)), columns=["f0", "f1"])
    model = LogisticRegression().fit(x, np.where(x.f0 + x.f1 > 0, "yes", "no"))
    for name in ("clf", "strict"):
        home.register(model, name, x[:3], reference=x)
    config = tmp / "serve.yaml"
    config.write_text(json.dumps({"defences": {
        "round_probabilities": 2, "out_of_distribution": "flag", "sweep_detection": True,
        "sweep_window": 40, "per_model": {"strict": {"labels_only": True,
                                                     "out_of_distribution": "refuse"}}}}))
    grpc_port = free_port()
    server = launch(home, tmp, "clf", "strict", "--config", str(config), "--grpc-port",
                    str(grpc_port))
    server.grpc_target = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    yield server
    server.stop()


def test_probabilities_are_rounded_and_labels_only_per_model(served: Server) -> None:
    answer = httpx.post(served.url + "/predict/clf", json={"f0": 0.3, "f1": 0.11}).json()
    assert all(round(p, 2) == p for p in answer["probabilities"].values())
    strict = httpx.post(served.url + "/predict/strict", json={"f0": 0.3, "f1": 0.11}).json()
    assert "probabilities" not in strict or not strict["probabilities"]
    assert strict["prediction"] in ("yes", "no")


def test_far_inputs_are_flagged_or_refused(served: Server) -> None:
    near = httpx.post(served.url + "/predict/clf", json={"f0": 0.3, "f1": 0.1})
    assert "x-modelport-out-of-distribution" not in near.headers
    far = httpx.post(served.url + "/predict/clf", json={"f0": 250.0, "f1": 0.1})
    assert far.status_code == 200
    assert far.headers["x-modelport-out-of-distribution"] == "f0"
    refused = httpx.post(served.url + "/predict/strict", json={"f0": 0.1, "f1": -250.0})
    assert refused.status_code == 400 and refused.json()["field"] == "f1"
    metrics = httpx.get(served.url + "/metrics").text
    assert 'modelport_out_of_distribution_total{action="flag",model="clf"} 1.0' in metrics
    assert 'modelport_out_of_distribution_total{action="refuse",model="strict"} 1.0' in metrics


def test_a_sweep_raises_the_metric_and_an_alert(served: Server) -> None:
    for step in range(6):
        rows = [{"f0": -2.0 + 0.1 * i + step, "f1": 0.25} for i in range(10)]
        assert httpx.post(served.url + "/predict/clf", json=rows).status_code == 200
    metrics = httpx.get(served.url + "/metrics").text
    line = next(li for li in metrics.splitlines()
                if li.startswith("modelport_sweep_suspected_total{"))
    assert 'caller="client:127.0.0.1"' in line and float(line.rsplit(" ", 1)[1]) >= 1
    assert "ALERT possible model extraction" in served.output()


def _grpc_inputs(f0: float, f1: float) -> list[triton_grpc.InferInput]:
    out = []
    for name, value in (("f0", f0), ("f1", f1)):
        tensor = triton_grpc.InferInput(name, [1], "FP64")
        tensor.set_data_from_numpy(np.array([value]))
        out.append(tensor)
    return out


def test_the_same_defences_apply_over_grpc(served: Server) -> None:
    client = triton_grpc.InferenceServerClient(served.grpc_target)  # type: ignore[attr-defined]
    result = client.infer("clf", _grpc_inputs(0.3, 0.11))
    names = [o.name for o in result.get_response().outputs]
    probabilities = result.as_numpy(next(n for n in names if "prob" in n))
    assert np.array_equal(probabilities, np.round(probabilities, 2))
    strict = client.infer("strict", _grpc_inputs(0.3, 0.11))
    assert not [o.name for o in strict.get_response().outputs if "prob" in o.name]
    far = client.infer("clf", _grpc_inputs(250.0, 0.1))
    assert far.get_response().parameters["out_of_distribution"].string_param == "f0"
    with pytest.raises(InferenceServerException) as refused:
        client.infer("strict", _grpc_inputs(0.1, -250.0))
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    client.close()
