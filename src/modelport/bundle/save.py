"""``modelport.save``: write a model bundle directory atomically."""

from __future__ import annotations

import os
import platform
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from modelport.bundle.accelerated import attach
from modelport.bundle.hashing import hash_tree
from modelport.bundle.manifest import Manifest
from modelport.bundle.profile import write_reference
from modelport.bundle.signature import ColumnSpec, Signature
from modelport.core.arrow import batch_to_table
from modelport.errors import ConflictError, InvalidInputError, InvalidReferenceError
from modelport.flavors import flavor_for
from modelport.flavors.base import version_of

EXAMPLE_ROWS = 100
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_name(name: str) -> str:
    """Model names: letters, digits, ``.``, ``_``, ``-``; no path tricks, at most 128 chars."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidReferenceError(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/', '..' or spaces)"
        )
    return name


def output_specs(signature: Signature, task: str, classes: tuple[Any, ...] | None
                 ) -> list[ColumnSpec]:
    if task == "classification" and classes is not None:
        label_dtype = "string" if any(isinstance(c, str) for c in classes) else (
            "bool" if all(isinstance(c, bool) for c in classes) else "int64"
            if all(isinstance(c, int) for c in classes) else "float64")
        return [ColumnSpec("label", label_dtype),
                ColumnSpec("probabilities", "float64", (len(classes),))]
    if task == "regression":
        return [ColumnSpec("prediction", "float64")]
    return list(signature.outputs)


def save(
    model: Any,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    signature: Signature | Mapping[str, Any] | None = None,
    example: Any = None,
    reference: Any = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    trusted: bool = False,
    flavor: str | None = None,
    overwrite: bool = False,
    accelerate: bool = True,
    nullable: Sequence[str] | bool | None = None,
) -> Path:
    """Save ``model`` as a bundle directory at ``path`` and return the path.

    The signature is inferred from ``example`` (or given); ``reference`` data is profiled for
    drift detection. ``trusted=True`` allows pickle-based formats (joblib) where the safe format
    cannot represent the model. The directory appears complete or not at all.

    With ``accelerate`` (the default), scikit-learn, XGBoost and LightGBM models with example
    rows are also converted to ONNX and stored with the bundle when the conversion gives the same
    predictions (``modelport.bundle.accelerated``), so servers and batch jobs load the fast form
    without converting again; the manifest records why when there is none.

    ``nullable`` says which inputs accept a missing value (``null`` / NaN, given to the model as
    NaN): by default every numeric input of a model that handles missing values (XGBoost,
    LightGBM, HistGradientBoosting and other scikit-learn estimators whose ``allow_nan`` tag is
    set), plus the columns whose example rows have one; a list of column names adds those;
    ``True`` declares every input, ``False`` none. Missing values elsewhere are refused with a
    message saying how to declare them (``modelport models register DIR --nullable COL``).
    """
    target = Path(path)
    occupied = any(target.iterdir()) if target.is_dir() else target.exists()
    if occupied and not overwrite:
        raise ConflictError(f"{target} already exists; choose another path, or replace it "
                            "('modelport import-mlflow --overwrite'; Python: overwrite=True)")
    flv = flavor_for(model, flavor)
    description = flv.describe(model)
    sig = _nullable(_signature(flv, model, signature, example), nullable,
                    handles_missing=flv.handles_missing(model))
    sig = sig.with_outputs(
        output_specs(sig, description.task, description.classes)
        if not sig.outputs or description.task != "other" else sig.outputs,
        task=description.task if description.task != "other" else sig.task,
        classes=description.classes,
    )
    name = validate_name(name if name is not None else target.name)
    example_batch = sig.coerce(example).slice(0, EXAMPLE_ROWS) if example is not None else None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        info = flv.save(model, tmp, signature=sig, trusted=trusted)
        if example_batch is not None:
            sig = native_output_dtypes(flv, tmp, info, sig, example_batch)
        manifest = Manifest(
            name=name,
            flavor=flv.name,
            signature=sig,
            flavor_info=info,
            libraries={"python": platform.python_version(), "numpy": version_of("numpy"),
                       "modelport": version_of("modelport"), **description.libraries},
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            metrics={str(k): float(v) for k, v in (metrics or {}).items()},
            params=dict(params or {}),
            tags={str(k): str(v) for k, v in (tags or {}).items()},
        )
        if example_batch is not None:
            pq.write_table(batch_to_table(example_batch), tmp / "example.parquet")
            manifest.example = "example.parquet"
            _check_labels_from_proba(flv.name, model, manifest, tmp)
        if accelerate:
            attach(tmp, manifest, trusted=trusted)
        if reference is not None:
            manifest.reference = write_reference(reference, sig, tmp)
        manifest.files = hash_tree(tmp)
        manifest.write(tmp)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def native_output_dtypes(flv: Any, directory: Path, info: dict[str, Any], sig: Signature,
                         example: Any) -> Signature:
    """``sig`` with the dtypes the native model answers in (its ``label`` / ``prediction`` and
    ``probabilities`` on the example rows): an XGBoost regressor answers float32, a
    scikit-learn one float64. Accelerated predictors cast their answers back to these."""
    if sig.task not in ("classification", "regression"):
        return sig
    try:
        result = flv.load(directory, info, sig, trusted=True).predict(example)
    except Exception:  # the recorded defaults stand; loading is checked again at register
        return sig
    found = {"label": result.labels, "prediction": result.labels,
             "probabilities": result.probabilities}
    outputs = []
    for spec in sig.outputs:
        values = found.get(spec.name)
        dtype = _dtype_of(values) if values is not None else None
        outputs.append(ColumnSpec(spec.name, dtype, spec.shape, spec.nullable)
                       if dtype is not None and dtype != spec.dtype else spec)
    return sig.with_outputs(outputs, task=sig.task, classes=sig.classes)


def _dtype_of(values: Any) -> str | None:
    import numpy as np

    dtype = np.asarray(values).dtype
    if dtype.kind in "OUS":
        return "string"
    name = "bool" if dtype.kind == "b" else dtype.name
    return name if name in _NATIVE_DTYPES else None


_NATIVE_DTYPES = {"float64", "float32", "int64", "int32", "int16", "int8", "uint8", "uint16",
                  "uint32", "uint64", "bool"}


def _signature(flv: Any, model: Any, signature: Any, example: Any) -> Signature:
    if isinstance(signature, Signature):
        return signature
    if isinstance(signature, Mapping):
        return Signature.from_dict(signature)
    if example is not None:
        return Signature.infer(example)
    inferred = flv.infer_signature(model) if hasattr(flv, "infer_signature") else None
    if inferred is None:
        raise InvalidInputError(
            "cannot tell what this model takes as input; pass example= (a few rows of training "
            "data) or signature="
        )
    return inferred  # type: ignore[no-any-return]


def _nullable(sig: Signature, nullable: Sequence[str] | bool | None, *,
              handles_missing: bool) -> Signature:
    if nullable is False:
        return replace(sig, inputs=tuple(replace(c, nullable=False) for c in sig.inputs))
    if nullable is True:
        return sig.with_nullable(True)
    if isinstance(nullable, str):
        nullable = [nullable]
    if handles_missing:
        sig = sig.with_nullable([c.name for c in sig.inputs
                                 if c.dtype not in ("bool", "string")])
    return sig.with_nullable(list(nullable or ()))


def _check_labels_from_proba(flavor: str, model: Any, manifest: Manifest, tmp: Path) -> None:
    """Record whether argmax(predict_proba) reproduces predict(), so serving can skip a call."""
    if flavor != "sklearn" or manifest.signature.task != "classification":
        return
    if not hasattr(model, "predict_proba"):
        return
    from modelport.flavors.sklearn import SklearnPredictor

    predictor = SklearnPredictor(model, model_input=manifest.flavor_info["model_input"],
                                 signature=manifest.signature, labels_from_proba=False)
    example = manifest.signature.coerce(pq.read_table(tmp / "example.parquet"))
    x = predictor.features(example)
    import numpy as np

    proba = np.asarray(model.predict_proba(x))
    labels = np.asarray(model.predict(x))
    classes = np.asarray(model.classes_)
    manifest.flavor_info["labels_from_proba"] = bool(
        np.array_equal(classes[proba.argmax(axis=1)], labels)
    )
