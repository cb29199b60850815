"""Serving fixtures: models registered in a temporary registry and real servers on loopback.

``start_server(...)`` runs ``modelport serve`` as a subprocess on a free 127.0.0.1 port, waits
for ``/v2/health/ready`` and stops it by PID (SIGTERM, then SIGKILL) when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the server subprocess imports serving_models too

import serving_models  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Home:
    """A registry home directory and the environment that points a subprocess at it."""

    path: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS",
                            "MODELPORT_STORAGE_OPTIONS", "PROMETHEUS_MULTIPROC_DIR")}
        env["MODELPORT_HOME"] = str(self.path)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
        env["OMP_NUM_THREADS"] = "1"
        return env

    def registry(self) -> Any:
        from modelport.registry import Registry
        from modelport.settings import Settings

        return Registry.from_settings(Settings.from_env(self.env))

    def register(self, model: Any, name: str, example: Any, alias: str | None = None,
                 **save_args: Any) -> int:
        import modelport

        bundle = self.path.parent / f"bundle-{name}-{time.monotonic_ns()}"
        modelport.save(model, bundle, name=name, example=example, **save_args)
        with self.registry() as reg:
            version = reg.register(bundle).version
            if alias:
                reg.set_alias(name, alias, version)
        return int(version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with self.registry() as reg:
            reg.set_alias(name, alias, version)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def wait_ready(server: Server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited with {server.proc.returncode}:\n"
                                 f"{server.output()}")
        try:
            if httpx.get(server.url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"server not ready in {timeout} s:\n{server.output()}")


StartServer = Callable[..., Server]


def launch(home: Home, log_dir: Path, *args: str, ready: bool = True) -> Server:
    """``modelport serve ARGS`` on a free port, logging to a file under ``log_dir``."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelport.cli.main", "serve", "--port", str(port), *args],
            env=home.env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    if ready:
        try:
            wait_ready(server)
        except BaseException:
            server.stop()
            raise
    return server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    servers: list[Server] = []

    def start(home: Home, *args: str, ready: bool = True) -> Server:
        server = launch(home, tmp_path, *args, ready=ready)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    return x, y, LogisticRegression(max_iter=500).fit(x, y)


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, Any]:
    """A DataFrame-trained pipeline with named columns and string class labels."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x = x.iloc[:, :5]
    x.columns = [c.replace(" ", "_") for c in x.columns]
    labels = np.where(y == 1, "benign", "malignant")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, labels)
    return x, model


def sum_example() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})


def sum_model(delay: float = 0.0, load_delay: float = 0.0) -> Any:
    return serving_models.SumModel(delay, load_delay)
