"""Test kit: predictors named by behaviour, for testing adapters and policies without a framework.

>>> from modelport.testing import SumPredictor, fixture_model, rows
>>> fixture_model(SumPredictor()).predict_batch(rows((1, 2))).labels.tolist()
[3.0]
"""

from __future__ import annotations

import threading
import time

import numpy as np

from modelport.bundle.manifest import Manifest
from modelport.bundle.model import Model
from modelport.bundle.signature import ColumnSpec, Signature
from modelport.core.batch import Batch, Result
from modelport.flavors.base import Predictor

SIGNATURE = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float64")),
                      outputs=(ColumnSpec("prediction", "float64"),), task="regression")


class SumPredictor(Predictor):
    """Predicts a + b; records the size of every call; optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.native = None
        self.delay = delay
        self.call_sizes: list[int] = []
        self._lock = threading.Lock()

    def predict(self, batch: Batch) -> Result:
        with self._lock:
            self.call_sizes.append(batch.n_rows)
        if self.delay:
            time.sleep(self.delay)
        m = batch.to_matrix()
        return Result(batch.n_rows, labels=m[:, 0] + m[:, 1])


class ErrorOnNegativePredictor(SumPredictor):
    """Fails the whole call when any row has a negative ``a`` (a poisoned request)."""

    def predict(self, batch: Batch) -> Result:
        if (batch.column("a") < 0).any():
            with self._lock:
                self.call_sizes.append(batch.n_rows)
            raise ValueError("negative a")
        return super().predict(batch)


def fixture_model(predictor: Predictor, name: str = "sum", version: int = 1) -> Model:
    return Model(Manifest(name=name, flavor="pyfunc", signature=SIGNATURE), predictor,
                 version=version)


def rows(*values: tuple[float, float]) -> Batch:
    return SIGNATURE.coerce(np.array(values, dtype=np.float64))
