"""Fixtures shared by every test package: an isolated modelport home and small fitted models."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
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
