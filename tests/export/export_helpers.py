"""Names and checks the export tests share (imported by conftest and the test modules)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

MODEL = "churn"
VERSION = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Setup:
    home: Path
    frame: pd.DataFrame
    bundle: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS",
                            "MODELPORT_STORAGE_OPTIONS", "PROMETHEUS_MULTIPROC_DIR")}
        env["MODELPORT_HOME"] = str(self.home)
        env["OMP_NUM_THREADS"] = "1"
        return env

    def package(self, target: str, out: Path, *extra: str) -> Path:
        """``modelport package MODEL:VERSION --target TARGET -o OUT`` against this home."""
        from modelport.cli.main import main

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MODELPORT_HOME", str(self.home))
            assert main(["package", f"{MODEL}:{VERSION}", "--target", target, "-o", str(out),
                         *extra]) == 0
        return out

    def rows(self, start: int = 100, n: int = 100) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.frame.iloc[start:start + n].to_dict("records")
        return [{k: float(v) for k, v in r.items()} for r in records]


def same_answers(expected: list[dict[str, Any]], got: list[dict[str, Any]], *,
                 atol: float = 1e-5) -> None:
    """Labels equal (value and type), probabilities within ``atol``, row by row."""
    assert len(expected) == len(got)
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert a["prediction"] == b["prediction"], f"row {i}: {a} != {b}"
        assert type(a["prediction"]) is type(b["prediction"]), f"row {i}"
        assert set(a["probabilities"]) == set(b["probabilities"]), f"row {i}"
        for cls, p in a["probabilities"].items():
            assert abs(p - b["probabilities"][cls]) <= atol, f"row {i} class {cls}"
