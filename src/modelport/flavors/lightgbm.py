"""LightGBM models: ``LGBMClassifier`` / ``LGBMRegressor`` and raw ``Booster`` objects.

Stored in LightGBM's native text format (``model.txt``), never pickled, so loading needs no
trust. The loaded predictor calls the ``Booster`` directly, which is what the scikit-learn
wrappers do internally: probabilities are the booster's output (``[1 - p, p]`` for binary
models) and labels are ``classes[argmax]``, exactly as ``LGBMClassifier.predict`` computes them.
The class labels (strings included) come from the signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.core.batch import Batch, Result
from modelport.errors import ModelLoadError, UnsupportedModelError
from modelport.flavors.base import Description, Flavor, Predictor, comes_from, require, version_of
from modelport.flavors.xgboost import features

#: Prediction threads per call; one keeps single-row latency low and leaves cores to workers.
DEFAULT_THREADS = 1


def booster_objective(booster: Any) -> tuple[str, int]:
    """The objective's name (``binary``, ``multiclass``, ``regression``…) and class count."""
    dumped = str(booster.dump_model(num_iteration=0).get("objective", ""))
    parts = dumped.split()
    name = parts[0] if parts else ""
    num_class = 0
    for part in parts[1:]:
        if part.startswith("num_class:"):
            num_class = int(part.split(":", 1)[1])
    return name, num_class


class LightGBMPredictor(Predictor):
    def __init__(self, booster: Any, *, signature: Signature, threads: int = DEFAULT_THREADS
                 ) -> None:
        self.native = booster
        self._signature = signature
        self._threads = threads
        self._classify = signature.task == "classification"
        self.classes = list(signature.classes) if signature.classes is not None else None
        self._labels = (np.asarray(self.classes, dtype=object if any(
            isinstance(c, str) for c in self.classes) else None)
            if self.classes is not None else None)

    def predict(self, batch: Batch) -> Result:
        raw = np.asarray(self.native.predict(features(batch, self._signature),
                                             num_threads=self._threads))
        if not self._classify:
            return Result(batch.n_rows, labels=raw)
        proba = raw if raw.ndim == 2 else np.vstack((1.0 - raw, raw)).transpose()
        index = proba.argmax(axis=1)
        labels = self._labels[index] if self._labels is not None else index
        return Result(batch.n_rows, labels=labels, probabilities=proba, classes=self.classes)


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    requirement = "lightgbm"

    def handles_missing(self, model: Any) -> bool:
        return True  # every split learns a default direction for missing values

    def handles(self, model: Any) -> bool:
        return comes_from(model, "lightgbm")

    def _booster(self, model: Any) -> Any:
        lgb = require("lightgbm", "lightgbm")
        if isinstance(model, lgb.Booster):
            return model
        if isinstance(model, lgb.LGBMClassifier | lgb.LGBMRegressor):
            return model.booster_
        raise UnsupportedModelError(
            f"the LightGBM flavor stores LGBMClassifier, LGBMRegressor and Booster objects, not "
            f"{type(model).__name__}; save its booster (model.booster_) instead"
        )

    def describe(self, model: Any) -> Description:
        lgb = require("lightgbm", "lightgbm")
        libraries = {"lightgbm": version_of("lightgbm")}
        if isinstance(model, lgb.LGBMClassifier):
            classes = tuple(c.item() if isinstance(c, np.generic) else c
                            for c in np.asarray(model.classes_))
            return Description("classification", classes, libraries)
        if isinstance(model, lgb.LGBMRegressor):
            return Description("regression", None, libraries)
        objective, num_class = booster_objective(self._booster(model))
        if objective == "binary":
            return Description("classification", (0, 1), libraries)
        if objective in ("multiclass", "multiclassova"):
            return Description("classification", tuple(range(num_class)), libraries)
        if objective.startswith(("regression", "huber", "fair", "poisson", "quantile", "mape",
                                 "gamma", "tweedie")):
            return Description("regression", None, libraries)
        return Description("other", None, libraries)

    def save(self, model: Any, directory: Path, *, signature: Signature,
             trusted: bool) -> dict[str, Any]:
        text = [c.name for c in signature.inputs if c.dtype == "string"]
        if signature.kind == "columns" and text:
            raise UnsupportedModelError(
                f"the LightGBM flavor takes numeric columns only, but {text[:3]} hold strings; "
                "encode them as numbers (or pandas categories' codes) before training"
            )
        booster = self._booster(model)
        booster.save_model(str(directory / "model.txt"))
        return {"file": "model.txt", "format": "text", "model_class": type(model).__name__}

    def load(self, directory: Path, info: dict[str, Any], signature: Signature, *,
             trusted: bool) -> Predictor:
        lgb = require("lightgbm", "lightgbm")
        try:
            booster = lgb.Booster(model_file=str(directory / str(info["file"])))
        except lgb.basic.LightGBMError as exc:
            raise ModelLoadError(f"LightGBM could not load the model: {exc}") from None
        return LightGBMPredictor(booster, signature=signature,
                                 threads=int(info.get("threads", DEFAULT_THREADS)))
