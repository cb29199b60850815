"""pyfunc: any Python class with ``load(self, path)`` and ``predict(self, batch)``.

The bundle stores the class's import path, never a pickle of the object::

    flavor_info: {python_class: "mypkg.models:SumModel", artifacts: artifacts}

and an ``artifacts/`` folder that the model fills through an optional ``save(self, path)``
method, or that is copied from the directory named by the model's ``artifacts`` attribute.
Loading imports the class (it must be importable where the bundle is loaded), calls it with no
arguments and then ``load(artifacts_path)``.

``predict`` receives a pandas DataFrame, or the :class:`~modelport.core.batch.Batch` itself when
the class sets ``input_type = "batch"``. It may return an array or list (one value per row), a
DataFrame (one output per column) or a dict of arrays; ``label`` / ``probabilities`` keys are
understood. A ``learn(self, batch, targets)`` method makes the model an online learner.

A class that sets ``requires_trust = True`` (its ``load`` runs code from the artifacts, as
:class:`~modelport.flavors.mlflow_pyfunc.MLflowPyfuncModel` does through MLflow's unpickling)
is recorded as such, and its bundles load only with ``trusted=True``.

>>> class SumModel:
...     def load(self, path): pass
...     def predict(self, frame): return frame.sum(axis=1)
>>> from modelport.flavors import flavor_for
>>> flavor_for(SumModel()).name
'pyfunc'
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature, Task
from modelport.core.batch import Array, Batch, Result
from modelport.errors import (
    ModelLoadError,
    PredictionError,
    UnsupportedModelError,
    UntrustedArtifactError,
)
from modelport.flavors.base import Description, Flavor, Predictor, comes_from, version_of

_FRAMEWORKS = ("sklearn", "xgboost", "lightgbm", "river", "torch", "onnx", "onnxruntime")
ARTIFACTS = "artifacts"


def class_path(model: Any) -> str:
    cls = type(model)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        where = "a function" if "<locals>" in cls.__qualname__ else "the __main__ script"
        raise UnsupportedModelError(
            f"class {cls.__qualname__} is defined in {where}, "
            "so it cannot be imported when the bundle is loaded; move it into a module that is "
            "importable (on PYTHONPATH or installed) and save again"
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(
            f"the pyfunc model class {path!r} cannot be imported ({exc}); it must be "
            "importable where the bundle is loaded: install or put on PYTHONPATH the package "
            "that defines it, then load again"
        ) from None
    # only a class with the pyfunc methods is instantiated, never an arbitrary callable
    if not isinstance(obj, type) or not all(callable(getattr(obj, m, None))
                                            for m in ("load", "predict")):
        raise ModelLoadError(
            f"{path!r} is not a pyfunc model class (a class with load(path) and predict(batch))"
        )
    return obj


def to_result(out: Any, n_rows: int) -> Result:
    """Normalize whatever ``predict`` returned into a ``Result`` of ``n_rows`` rows."""
    if type(out).__module__.startswith("pandas"):
        if hasattr(out, "columns"):
            out = {str(c): out[c].to_numpy() for c in out.columns}
        else:
            out = out.to_numpy()
    if isinstance(out, Mapping):
        values = {str(k): _column(v, n_rows, str(k)) for k, v in out.items()}
        labels = values.pop("label", None)
        proba = values.pop("probabilities", None)
        if labels is None and len(values) == 1 and next(iter(values.values())).ndim == 1:
            labels = values.pop(next(iter(values)))
        return Result(n_rows, labels=labels, probabilities=proba, outputs=values)
    return Result(n_rows, labels=_column(out, n_rows, "prediction"))


def _column(value: Any, n_rows: int, name: str) -> Array:
    arr = np.asarray(value)
    if arr.ndim == 0 or len(arr) != n_rows:
        raise PredictionError(
            f"the model's predict() returned {name!r} with "
            f"{'one value' if arr.ndim == 0 else f'{len(arr)} values'} for {n_rows} rows; "
            "return one value per row"
        )
    if arr.ndim == 2 and arr.shape[1] == 1 and name == "prediction":
        arr = arr.reshape(n_rows)
    return arr


class PyfuncPredictor(Predictor):
    def __init__(self, model: Any, *, signature: Signature) -> None:
        self.native = model
        self._as_batch = getattr(model, "input_type", "dataframe") == "batch"
        self.classes = list(signature.classes) if signature.classes is not None else None

    def predict(self, batch: Batch) -> Result:
        data = batch if self._as_batch else batch.to_frame()
        result = to_result(self.native.predict(data), batch.n_rows)
        if result.probabilities is not None and result.classes is None:
            result.classes = self.classes
        return result


class LearningPyfuncPredictor(PyfuncPredictor):
    can_learn = True

    def learn(self, batch: Batch, targets: Array) -> None:
        data = batch if self._as_batch else batch.to_frame()
        self.native.learn(data, targets)


class PyfuncFlavor(Flavor):
    name = "pyfunc"
    requirement = None

    def handles(self, model: Any) -> bool:
        return (
            not isinstance(model, type)
            and callable(getattr(model, "load", None))
            and callable(getattr(model, "predict", None))
            and not comes_from(model, *_FRAMEWORKS)
        )

    def describe(self, model: Any) -> Description:
        task: Task = "other"
        if getattr(model, "task", None) in ("classification", "regression"):
            task = model.task
        classes = getattr(model, "classes", None)
        module = type(model).__module__.split(".", 1)[0]
        return Description(task, tuple(classes) if classes is not None else None,
                           {module: version_of(module)} if module != "builtins" else {})

    def save(self, model: Any, directory: Path, *, signature: Signature,
             trusted: bool) -> dict[str, Any]:
        info: dict[str, Any] = {"python_class": class_path(model), "artifacts": ARTIFACTS}
        if getattr(model, "requires_trust", False) is True:
            info["requires_trust"] = True
        target = directory / ARTIFACTS
        source = getattr(model, "artifacts", None)
        if isinstance(source, str | Path) and Path(source).is_dir():
            shutil.copytree(source, target)
        else:
            target.mkdir()
        if callable(getattr(model, "save", None)):
            model.save(target)
        return info

    def load(self, directory: Path, info: dict[str, Any], signature: Signature, *,
             trusted: bool) -> Predictor:
        if info.get("requires_trust") and not trusted:
            raise UntrustedArtifactError(
                f"the pyfunc model {info['python_class']!r} runs code from its artifacts when "
                "loaded (an MLflow pyfunc model is cloudpickled); load or serve it with "
                "--trusted only if you trust its source")
        cls = import_class(str(info["python_class"]))
        try:
            model = cls()
            model.load(directory / str(info.get("artifacts", ARTIFACTS)))
        except Exception as exc:
            raise ModelLoadError(
                f"the pyfunc model {info['python_class']!r} failed to load: {exc}"
            ) from None
        if callable(getattr(model, "learn", None)):
            return LearningPyfuncPredictor(model, signature=signature)
        return PyfuncPredictor(model, signature=signature)
