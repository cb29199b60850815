"""MLflow ``pyfunc`` models inside modelport's pyfunc flavor, loaded by MLflow's own loader.

``modelport import-mlflow --trusted DIR`` wraps a model that exists only as an MLflow pyfunc
model (a custom ``mlflow.pyfunc.PythonModel``, or a framework modelport does not read itself) in
:class:`MLflowPyfuncModel`. The bundle keeps the whole MLflow model directory as the pyfunc
artifacts; loading the bundle calls ``mlflow.pyfunc.load_model`` on it, and ``predict`` hands
MLflow a DataFrame of the signature's columns, so MLflow applies its own schema enforcement too.
MLflow must be installed where the bundle is served (``pip install mlflow``).

MLflow pyfunc models are cloudpickled Python code: the bundle records that it needs trust, and
loading it without ``trusted=True`` (CLI: ``--trusted``) is refused.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from modelport.errors import ModelLoadError, UnsupportedModelError


def mlflow_installed() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def require_mlflow() -> Any:
    """The ``mlflow.pyfunc`` module, or an error naming the package to install."""
    try:
        import mlflow.pyfunc
    except ImportError:
        raise UnsupportedModelError(
            "this is an MLflow pyfunc model, which only MLflow can load; install it where the "
            "model is imported and served: pip install mlflow") from None
    return mlflow.pyfunc


class MLflowPyfuncModel:
    """A pyfunc model (``load`` / ``predict``) over an MLflow model directory."""

    #: the MLflow model directory is cloudpickled code: bundles of this class need trust
    requires_trust = True
    task = "other"

    def __init__(self, source: str | os.PathLike[str] | None = None) -> None:
        #: the MLflow model directory, copied into the bundle's artifacts when it is saved
        self.artifacts = str(source) if source is not None else None
        self._model: Any = None

    def load(self, path: Path) -> None:
        pyfunc = require_mlflow()
        try:
            self._model = pyfunc.load_model(str(path))
        except Exception as exc:  # MLflow raises many kinds: missing flavor modules, unpickling
            raise ModelLoadError(f"MLflow could not load this pyfunc model: {exc}") from None

    def predict(self, frame: Any) -> Any:
        return self._model.predict(frame)


__all__ = ["MLflowPyfuncModel", "mlflow_installed", "require_mlflow"]
