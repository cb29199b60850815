"""The generated gRPC modules load on every protobuf runtime from 6.30 on (the project's own
environment covers 7.x, the co-installation test 6.33); an older runtime gets one error line naming
the fix instead of protobuf's VersionError traceback. Each runtime is put in front of the
project's own with PYTHONPATH (``uv pip install --target``), so no environment is changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from coinstall_env import free_port, uv

LOAD = ("import google.protobuf, modelport.serving.grpc;"
        "from modelport.serving.grpc import grpc_predict_v2_pb2 as pb;"
        "r = pb.ModelInferRequest.FromString(pb.ModelInferRequest(model_name='m')"
        ".SerializeToString());"
        "print(google.protobuf.__version__, r.model_name)")


def _runtime(tmp_path: Path, version: str) -> dict[str, str]:
    target = tmp_path / f"protobuf-{version}"
    subprocess.run([uv(), "pip", "install", "-q", "--python", sys.executable, "--target",
                    str(target), f"protobuf=={version}"], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    env["PYTHONPATH"] = str(target)
    env["MODELPORT_HOME"] = str(tmp_path / "home")
    return env


def test_the_oldest_supported_runtime_loads_the_modules(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", LOAD], env=_runtime(tmp_path, "6.30.0"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["6.30.0", "m"]


def test_an_older_runtime_gets_one_error_line_naming_the_fix(
        tmp_path: Path, iris_arrays: tuple[Any, Any], iris_classifier: Any) -> None:
    import modelport
    from modelport.registry import Registry
    from modelport.settings import Settings

    env = _runtime(tmp_path, "5.29.5")
    x, _ = iris_arrays
    with Registry.from_settings(Settings.from_env(env)) as registry:
        registry.register(modelport.save(iris_classifier, tmp_path / "iris", name="iris",
                                         example=x[:5]))
    done = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "serve", "iris", "--port",
         str(free_port()), "--grpc-port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "VersionError" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "protobuf 5.29.5" in errors[0] and "pip install 'protobuf>=6.30'" in errors[0]


@pytest.mark.parametrize("module", ["grpc_predict_v2_pb2"])
def test_the_checked_in_modules_are_generated_for_protobuf_6_30(module: str) -> None:
    source = (Path(modelport_grpc_dir()) / f"{module}.py").read_text()
    assert "# Protobuf Python Version: 6.30.0" in source
    assert "_descriptor_pool.DescriptorPool().AddSerializedFile(" in source


def modelport_grpc_dir() -> str:
    import modelport.serving.grpc

    return str(Path(modelport.serving.grpc.__file__).parent)
