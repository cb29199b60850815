"""Fixture models for the serving tests, importable by the server subprocess (pyfunc flavor).

``SumModel`` answers ``a + b`` per row after sleeping ``delay`` seconds per call; a row with a
negative ``a`` makes the whole call raise (a poison row), which is what the batching tests need.
``load_delay`` makes loading slow (hot-reload timeouts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


class SumModel:
    input_type = "batch"
    task = "regression"

    def __init__(self, delay: float = 0.0, load_delay: float = 0.0) -> None:
        self.delay = delay
        self.load_delay = load_delay

    def save(self, path: Path) -> None:
        (Path(path) / "params.json").write_text(
            json.dumps({"delay": self.delay, "load_delay": self.load_delay}))

    def load(self, path: Path) -> None:
        params = json.loads((Path(path) / "params.json").read_text())
        self.delay = params["delay"]
        time.sleep(params.get("load_delay", 0.0))

    def predict(self, batch: Any) -> Any:
        if self.delay:
            time.sleep(self.delay)
        matrix = batch.to_matrix(np.float64)
        if (matrix[:, 0] < 0).any():
            raise ValueError("negative 'a' is poison for this model")
        return matrix.sum(axis=1)


class TextLengthModel:
    """``len(word) + x`` per row: a model with a string input column."""

    input_type = "batch"
    task = "regression"

    def load(self, path: Path) -> None:
        pass

    def predict(self, batch: Any) -> Any:
        words = batch.column("word")
        return np.array([len(w) for w in words], dtype=np.float64) + batch.column("x")


class BrokenLoadModel(SumModel):
    """Fails to load with a server path in its message, which callers must never see."""

    def load(self, path: Path) -> None:
        raise RuntimeError("boom in load /secret/path/xyz")
