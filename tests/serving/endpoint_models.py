"""Fixture models for the endpoint tests, importable by the server subprocess (pyfunc flavor).

``OffsetModel`` answers ``a + b + offset``; it raises while the file ``fail_flag`` exists (a
candidate that starts failing) and sleeps ``sleep`` seconds per call (a hanging shadow).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


class OffsetModel:
    input_type = "batch"
    task = "regression"

    def __init__(self, offset: float = 0.0, fail_flag: str = "", sleep: float = 0.0,
                 always_fail: bool = False) -> None:
        self.offset = offset
        self.fail_flag = fail_flag
        self.sleep = sleep
        self.always_fail = always_fail

    def save(self, path: Path) -> None:
        (Path(path) / "params.json").write_text(json.dumps(
            {"offset": self.offset, "fail_flag": self.fail_flag, "sleep": self.sleep,
             "always_fail": self.always_fail}))

    def load(self, path: Path) -> None:
        self.__dict__.update(json.loads((Path(path) / "params.json").read_text()))

    def predict(self, batch: Any) -> Any:
        if self.always_fail or (self.fail_flag and Path(self.fail_flag).exists()):
            raise RuntimeError("this variant is broken")
        if self.sleep:
            time.sleep(self.sleep)
        return batch.to_matrix(np.float64).sum(axis=1) + self.offset
