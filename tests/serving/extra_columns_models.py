"""A fixture model for the extra-column tests, importable by the server subprocess (pyfunc).

``PairModel`` answers two named outputs per row (``total`` and ``diff`` of ``a`` and ``b``), so
its KServe V1 predictions are objects, the shape passed-through fields can join.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class PairModel:
    input_type = "batch"
    task = "regression"

    def load(self, path: Path) -> None:
        pass

    def predict(self, batch: Any) -> dict[str, Any]:
        matrix = batch.to_matrix(np.float64)
        return {"total": matrix[:, 0] + matrix[:, 1], "diff": matrix[:, 0] - matrix[:, 1]}
