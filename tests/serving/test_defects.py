"""Regression tests for the defects of issue 14 found on a live server (14.1, 14.4, 14.5)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from conftest import Home, Server, free_port, launch, sum_example, sum_model
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, Home]]:
    tmp = tmp_path_factory.mktemp("defects")
    home = Home(tmp / "home")
    home.register(sum_model(), "sum", sum_example())
    grpc_port = free_port()
    server = launch(home, tmp, "sum", "--grpc-port", str(grpc_port), "--allow-admin-routes")
    yield server, f"127.0.0.1:{grpc_port}", home
    server.stop()


def _v2(rows: int, datatype: str = "FP64", a: list[object] | None = None) -> dict[str, object]:
    values = a if a is not None else [1.0] * rows
    return {"inputs": [{"name": "a", "datatype": datatype, "shape": [len(values)],
                        "data": values},
                       {"name": "b", "datatype": "FP64", "shape": [rows], "data": [2.0] * rows}]}


def _grpc_inputs(rows: int, datatype: str = "FP64") -> list[triton_grpc.InferInput]:
    out = []
    for name in ("a", "b"):
        tensor = triton_grpc.InferInput(name, [rows], datatype)
        tensor.set_data_from_numpy(np.ones(rows))
        out.append(tensor)
    return out


def test_requests_within_max_rows_are_served_and_larger_ones_are_400(
        served: tuple[Server, str, Home]) -> None:
    """14.1: 4,097-10,000 rows got 503 forever (max_rows 10,000 > the queue's 4,096 rows)."""
    url = served[0].url
    ok = httpx.post(url + "/v2/models/sum/infer", json=_v2(6000), timeout=60)
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["outputs"][0]["data"]) == 6000
    mlflow = httpx.post(url + "/invocations", timeout=60,
                        json={"dataframe_records": [{"a": 1.0, "b": 2.0}] * 6000})
    assert mlflow.status_code == 200, mlflow.text
    big = httpx.post(url + "/v2/models/sum/infer", json=_v2(10_001), timeout=60)
    assert big.status_code == 400 and "10000" in big.text and "retry-after" not in big.headers
    client = triton_grpc.InferenceServerClient(served[1])
    result = client.infer("sum", _grpc_inputs(6000))
    assert result.as_numpy(result.get_response().outputs[0].name).shape[0] == 6000
    with pytest.raises(InferenceServerException) as too_many:
        client.infer("sum", _grpc_inputs(10_001))
    assert too_many.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "10000" in too_many.value.message()
    client.close()


@pytest.mark.parametrize(("body", "headers", "named"), [
    (_v2(1), {"inference-header-content-length": "abc"}, "inference-header-content-length"),
    (_v2(1), {"inference-header-content-length": "1e3"}, "inference-header-content-length"),
    (_v2(1, "INT8", [300]), {}, "'a'"),
    (_v2(1, "INT64", [2**63]), {}, "'a'"),
    (_v2(1, "UINT8", [-1]), {}, "'a'"),
    (_v2(0, "BOOL", []), {}, "'a'"),
])
def test_v2_input_errors_are_400_naming_the_tensor(served: tuple[Server, str, Home],
                                                   body: object, headers: dict[str, str],
                                                   named: str) -> None:
    """14.4: these escaped as HTTP 500 with a traceback in the server log."""
    answer = httpx.post(served[0].url + "/v2/models/sum/infer", json=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]
    assert "Traceback" not in served[0].output()


def test_grpc_input_errors_are_invalid_argument(served: tuple[Server, str, Home]) -> None:
    client = triton_grpc.InferenceServerClient(served[1])
    empty = [triton_grpc.InferInput("a", [0], "BOOL"), triton_grpc.InferInput("b", [0], "FP64")]
    empty[0].set_data_from_numpy(np.zeros(0, dtype=bool))
    empty[1].set_data_from_numpy(np.zeros(0))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("sum", empty)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    client.close()
    assert "Traceback" not in served[0].output()


def test_versions_above_the_registry_range_are_a_clear_4xx_and_exit_3(
        served: tuple[Server, str, Home]) -> None:
    """14.5: 'checkmodel:99999999999999999999999' gave HTTP 500 and an OverflowError."""
    huge = "sum:99999999999999999999999"
    answer = httpx.post(f"{served[0].url}/v2/repository/models/{huge}/load")
    assert answer.status_code == 400 and "positive integer" in answer.text
    out = subprocess.run([sys.executable, "-m", "modelport.cli.main", "models", "show", huge],
                         env=served[2].env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3
    assert out.stderr.startswith("error: invalid model reference") and \
        len(out.stderr.strip().splitlines()) == 1
