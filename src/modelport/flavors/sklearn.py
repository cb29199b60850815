"""scikit-learn estimators and Pipelines.

Stored with skops by default: loading refuses any type outside scikit-learn / NumPy / SciPy
unless the caller trusts the artifact. joblib (pickle) is used only with ``trusted=True`` at
save time, and such a bundle loads only with ``trusted=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.core.batch import Batch, Result
from modelport.errors import UnsupportedModelError, UntrustedArtifactError
from modelport.flavors.base import (
    Description,
    Flavor,
    Predictor,
    comes_from,
    load_skops,
    version_of,
)

#: Module prefixes whose types skops may rebuild without the caller's explicit trust.
SAFE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "collections.", "builtins.", "_operator.",
                 "operator.", "math.", "joblib.numpy_pickle", "modelport.")


class SklearnPredictor(Predictor):
    def __init__(self, model: Any, *, model_input: str, signature: Signature,
                 labels_from_proba: bool) -> None:
        self.native = model
        self._dataframe = model_input == "dataframe"
        self._tensor = signature.kind == "tensor"
        self._proba = hasattr(model, "predict_proba") and signature.task == "classification"
        self._labels_from_proba = labels_from_proba
        self.classes = list(getattr(model, "classes_", [])) or None

    def features(self, batch: Batch) -> Any:
        if self._dataframe:
            return batch.to_frame()
        if self._tensor:
            arr = batch.column(batch.names[0])
            return arr.reshape(len(arr), -1)
        return batch.to_matrix()

    def predict(self, batch: Batch) -> Result:
        x = self.features(batch)
        if self._proba:
            proba = np.asarray(self.native.predict_proba(x))
            if self._labels_from_proba and self.classes is not None:
                labels = np.asarray(self.classes, dtype=object if isinstance(
                    self.classes[0], str) else None)[proba.argmax(axis=1)]
            else:
                labels = np.asarray(self.native.predict(x))
            return Result(batch.n_rows, labels=labels, probabilities=proba,
                          classes=self.classes)
        return Result(batch.n_rows, labels=np.asarray(self.native.predict(x)))


#: estimators that learn a direction for missing values and whose ONNX form keeps it
_HANDLE_MISSING = {"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"}


class SklearnFlavor(Flavor):
    name = "sklearn"
    requirement = "scikit-learn"

    def handles(self, model: Any) -> bool:
        return comes_from(model, "sklearn") or (
            hasattr(model, "fit") and hasattr(model, "predict") and hasattr(model, "get_params")
            and not comes_from(model, "xgboost", "lightgbm", "river")
        )

    def handles_missing(self, model: Any) -> bool:
        """HistGradientBoosting learns where missing values go; so does a pipeline whose steps
        pass NaN on (scikit-learn's ``allow_nan`` tag) up to such a model or to an imputer.

        Forests and trees also accept NaN since scikit-learn 1.4, but their ONNX form routes
        it differently, so they are not declared nullable by default (``nullable=`` does it).
        """
        steps = getattr(model, "steps", None)
        if steps is None:
            return type(model).__name__ in _HANDLE_MISSING
        for _, step in steps:
            if step is None or step == "passthrough":
                continue
            if type(step).__module__.startswith("sklearn.impute") or self.handles_missing(step):
                return True
            try:
                passes_nan = bool(step.__sklearn_tags__().input_tags.allow_nan)
            except AttributeError:  # not a scikit-learn estimator, or one older than 1.6
                return False
            if not passes_nan:
                return False
        return False

    def describe(self, model: Any) -> Description:
        from sklearn.base import is_classifier, is_regressor

        classes = getattr(model, "classes_", None)
        if is_classifier(model):
            task = "classification"
        elif is_regressor(model):
            task = "regression"
        else:
            task = "other"
        return Description(
            task=task,  # type: ignore[arg-type]
            classes=tuple(c.item() if isinstance(c, np.generic) else c for c in classes)
            if classes is not None else None,
            libraries={"scikit-learn": version_of("scikit-learn"),
                       "skops": version_of("skops")},
        )

    def save(self, model: Any, directory: Path, *, signature: Signature,
             trusted: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model_input": "dataframe" if hasattr(model, "feature_names_in_") else "ndarray",
        }
        if trusted:
            import joblib

            joblib.dump(model, directory / "model.joblib")
            info.update(file="model.joblib", serialization="joblib")
        else:
            import skops.io

            try:
                skops.io.dump(model, directory / "model.skops")
            except Exception as exc:  # skops raises plain TypeErrors for objects it can't walk
                raise UnsupportedModelError(
                    f"this estimator cannot be stored in the safe skops format ({exc}); "
                    "if you trust it, save with trusted=True (CLI: --trusted) to use joblib"
                ) from None
            info.update(file="model.skops", serialization="skops")
        return info

    def load(self, directory: Path, info: dict[str, Any], signature: Signature, *,
             trusted: bool) -> Predictor:
        path = directory / str(info["file"])
        if info.get("serialization") == "joblib":
            if not trusted:
                raise UntrustedArtifactError(
                    "this model is stored with joblib (pickle), which can run arbitrary code "
                    "when loaded; load it with trusted=True (CLI: --trusted) only if you trust "
                    "its source"
                )
            import joblib

            model = joblib.load(path)
        else:
            model = load_skops(path, is_safe=lambda t: t.startswith(SAFE_PREFIXES),
                               trusted=trusted, allowed="scikit-learn/NumPy/SciPy",
                               framework="scikit-learn")
        return SklearnPredictor(
            model,
            model_input=str(info.get("model_input", "ndarray")),
            signature=signature,
            labels_from_proba=bool(info.get("labels_from_proba", False)),
        )
