"""XGBoost models: the scikit-learn wrappers (``XGBClassifier`` / ``XGBRegressor``) and raw
``Booster`` objects.

Stored in XGBoost's own binary JSON format (``model.ubj``; ``.json`` files load too), never
pickled, so loading needs no trust. ``flavor_info["model_class"]`` records which wrapper to
rebuild (``XGBClassifier``, ``XGBRegressor`` or ``Booster``), so predictions and probabilities
come out exactly as the original object's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.core.batch import Array, Batch, Result
from modelport.errors import ModelLoadError, UnsupportedModelError
from modelport.flavors.base import Description, Flavor, Predictor, comes_from, require, version_of

_WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor")
_CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")


def booster_objective(booster: Any) -> tuple[str, int]:
    """The objective's name and the number of classes recorded in a Booster's configuration."""
    config = json.loads(booster.save_config())
    learner = config.get("learner", {})
    name = str(learner.get("objective", {}).get("name", ""))
    num_class = int(learner.get("learner_model_param", {}).get("num_class", "0") or 0)
    return name, num_class


def _check_inputs(signature: Signature) -> None:
    if signature.kind != "columns":
        return
    text = [c.name for c in signature.inputs if c.dtype == "string"]
    if text:
        raise UnsupportedModelError(
            f"the XGBoost flavor takes numeric columns only, but {text[:3]} hold strings; "
            "encode them as numbers before training, or wrap the model in a scikit-learn "
            "Pipeline with an encoder"
        )


def features(batch: Batch, signature: Signature) -> Array:
    if signature.kind == "tensor":
        arr = batch.column(batch.names[0])
        return arr.reshape(len(arr), -1)
    return batch.to_matrix()


class XGBoostPredictor(Predictor):
    """Predicts with a rebuilt scikit-learn wrapper or a raw Booster."""

    def __init__(self, model: Any, *, model_class: str, signature: Signature) -> None:
        self.native = model
        self._signature = signature
        self._wrapper = model_class != "Booster"
        self.classes = list(signature.classes) if signature.classes is not None else None
        if self._wrapper:
            self._objective = booster_objective(model.get_booster())[0]
            self._proba = signature.task == "classification" and hasattr(model, "predict_proba")
        else:
            self._objective, _ = booster_objective(model)
            self._proba = self._objective in ("binary:logistic", "multi:softprob")

    def predict(self, batch: Batch) -> Result:
        x = features(batch, self._signature)
        if self._wrapper:
            if self._proba:
                proba = np.asarray(self.native.predict_proba(x))
                # what XGBClassifier.predict computes from the same probabilities, without a
                # second pass over the trees
                if self._objective == "binary:logistic":
                    labels = (proba[:, 1] > 0.5).astype(np.int64)
                elif self._objective == "multi:softprob":
                    labels = proba.argmax(axis=1)
                else:
                    labels = np.asarray(self.native.predict(x))
                return Result(batch.n_rows, labels=labels, probabilities=proba,
                              classes=self.classes)
            return Result(batch.n_rows, labels=np.asarray(self.native.predict(x)))
        raw = np.asarray(self.native.inplace_predict(x))
        if self._objective == "binary:logistic":
            proba = np.column_stack([1.0 - raw, raw])
            return Result(batch.n_rows, labels=(raw > 0.5).astype(np.int64),
                          probabilities=proba, classes=self.classes)
        if self._objective == "multi:softprob":
            return Result(batch.n_rows, labels=raw.argmax(axis=1).astype(np.int64),
                          probabilities=raw, classes=self.classes)
        if self._objective == "multi:softmax":
            return Result(batch.n_rows, labels=raw.astype(np.int64), classes=self.classes)
        return Result(batch.n_rows, labels=raw)


class XGBoostFlavor(Flavor):
    name = "xgboost"
    requirement = "xgboost-cpu"

    def handles_missing(self, model: Any) -> bool:
        return True  # every split learns a default direction for missing values

    def handles(self, model: Any) -> bool:
        return comes_from(model, "xgboost") and (
            type(model).__name__ in _WRAPPERS or type(model).__name__ == "Booster"
            or hasattr(model, "get_booster")
        )

    def _model_class(self, model: Any) -> str:
        xgb = require("xgboost", "xgboost")
        if isinstance(model, xgb.Booster):
            return "Booster"
        if isinstance(model, xgb.XGBClassifier):
            return "XGBClassifier"
        if isinstance(model, xgb.XGBRegressor):
            return "XGBRegressor"
        raise UnsupportedModelError(
            f"the XGBoost flavor stores XGBClassifier, XGBRegressor and Booster objects, not "
            f"{type(model).__name__}; save its booster (model.get_booster()) instead"
        )

    def describe(self, model: Any) -> Description:
        version = version_of("xgboost-cpu")
        libraries = {"xgboost": version if version != "unknown" else version_of("xgboost")}
        model_class = self._model_class(model)
        if model_class == "XGBClassifier":
            classes = tuple(int(c) for c in np.asarray(model.classes_).tolist())
            return Description("classification", classes, libraries)
        if model_class == "XGBRegressor":
            return Description("regression", None, libraries)
        objective, num_class = booster_objective(model)
        if objective == "binary:logistic":
            return Description("classification", (0, 1), libraries)
        if objective in _CLASSIFIER_OBJECTIVES:
            return Description("classification", tuple(range(num_class)), libraries)
        if objective.startswith(("reg:", "count:", "survival:")):
            return Description("regression", None, libraries)
        return Description("other", None, libraries)

    def save(self, model: Any, directory: Path, *, signature: Signature,
             trusted: bool) -> dict[str, Any]:
        _check_inputs(signature)
        model_class = self._model_class(model)
        model.save_model(str(directory / "model.ubj"))
        return {"file": "model.ubj", "format": "ubj", "model_class": model_class}

    def load(self, directory: Path, info: dict[str, Any], signature: Signature, *,
             trusted: bool) -> Predictor:
        xgb = require("xgboost", "xgboost")
        model_class = str(info.get("model_class", "Booster"))
        constructors = {"XGBClassifier": xgb.XGBClassifier, "XGBRegressor": xgb.XGBRegressor,
                        "Booster": xgb.Booster}
        if model_class not in constructors:
            raise ModelLoadError(
                f"unknown XGBoost model class {model_class!r} in the manifest; expected one of "
                f"{sorted(constructors)}"
            )
        model = constructors[model_class]()
        try:
            model.load_model(str(directory / str(info["file"])))
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(f"XGBoost could not load the model: {exc}") from None
        return XGBoostPredictor(model, model_class=model_class, signature=signature)
