"""Fixtures shared by every test package: an isolated modelport home and small fitted models."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def modelport_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty embedded registry (SQLite + local folder) for this test only."""
    home = tmp_path / "home"
    monkeypatch.setenv("MODELPORT_HOME", str(home))
    for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS", "MODELPORT_STORAGE_OPTIONS"):
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture(scope="session")
def cancer_frame() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return x, y


@pytest.fixture(scope="session")
def cancer_pipeline(cancer_frame: tuple[pd.DataFrame, pd.Series]) -> object:
    """A DataFrame-trained sklearn Pipeline (scaler + logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = cancer_frame
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)


@pytest.fixture(scope="session")
def iris_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, y


@pytest.fixture(scope="session")
def iris_classifier(iris_arrays: tuple[np.ndarray, np.ndarray]) -> object:
    """A NumPy-trained classifier with three integer classes."""
    from sklearn.linear_model import LogisticRegression

    x, y = iris_arrays
    return LogisticRegression(max_iter=500).fit(x, y)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """A real S3-compatible server (moto in server mode) on a free 127.0.0.1 port, with
    ``bucket`` made (credentials ``test``/``test``); yields its endpoint, stopped by PID."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                              aws_secret_access_key="test", region_name="us-east-1")
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
