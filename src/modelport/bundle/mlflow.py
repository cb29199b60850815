"""Import an MLflow model directory as a modelport bundle (MLflow itself is needed only for
models that exist only as MLflow ``pyfunc`` models).

An MLflow model is a directory with an ``MLmodel`` YAML file naming its flavors and artifacts::

    flavors:
      sklearn: {pickled_model: model.pkl, serialization_format: cloudpickle, ...}
      python_function: {loader_module: mlflow.sklearn, ...}
    signature:
      inputs: '[{"type": "double", "name": "age", "required": true}, ...]'
      outputs: '[{"type": "long", "required": true}]'
    saved_input_example_info: {artifact_path: input_example.json, type: dataframe,
                               pandas_orient: split}

``import_mlflow`` reads the ``sklearn``, ``xgboost``, ``lightgbm`` or ``onnx`` flavor's artifact
directly, turns MLflow's signature (column or tensor specs) into a modelport signature, keeps the
input example as the bundle's example rows, and writes the bundle with ``modelport.save`` so its
hashes and manifest are those of any other bundle.

Each flavor's ``serialization_format`` decides how its file is read: ``skops`` (what MLflow 3
writes for scikit-learn and for LightGBM's scikit-learn API models) is read with skops, admitting
only the framework's own types, NumPy and SciPy unless ``trusted=True``; ``pickle`` /
``cloudpickle`` files are read only with ``trusted=True``.

A model with only the ``python_function`` flavor (a custom ``mlflow.pyfunc.PythonModel``, or a
framework modelport does not read) is imported when ``mlflow`` is installed: the MLflow model
directory is kept inside the bundle and loaded by MLflow's own loader
(:class:`~modelport.flavors.mlflow_pyfunc.MLflowPyfuncModel`), with MLflow's signature. Such
models are cloudpickled code, so importing and loading them needs ``trusted=True``.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelport.bundle.signature import ColumnSpec, Signature
from modelport.errors import (
    InvalidInputError,
    ModelLoadError,
    NotFoundError,
    UnsupportedModelError,
    UntrustedArtifactError,
)
from modelport.flavors.base import load_skops, require
from modelport.flavors.sklearn import SAFE_PREFIXES as SKLEARN_SAFE

MLMODEL = "MLmodel"
PYFUNC = "python_function"
#: MLflow flavors this importer reads, in order of preference.
FLAVORS = ("sklearn", "xgboost", "lightgbm", "onnx")
#: types a LightGBM scikit-learn model's skops file may rebuild without trusted=True
LIGHTGBM_SAFE = (*SKLEARN_SAFE, "lightgbm.basic.Booster", "lightgbm.sklearn.")
#: MLflow column types → modelport dtypes.
COLUMN_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32",
                "string": "string", "boolean": "bool"}


def import_mlflow(
    mlflow_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    name: str | None = None,
    trusted: bool = False,
    overwrite: bool = False,
    nullable: Sequence[str] | None = None,
) -> Path:
    """Write a modelport bundle at ``dest`` from the MLflow model in ``mlflow_dir``; return it.

    ``trusted=True`` allows reading pickle-based artifacts, which can run code when loaded.
    Inputs MLflow marks ``required: false`` are nullable; ``nullable`` names more (see
    ``modelport.save``).
    """
    from modelport.bundle.save import save

    source = Path(mlflow_dir)
    config = read_mlmodel(source)
    flavors = config.get("flavors") or {}
    flavor = next((f for f in FLAVORS if f in flavors), None)
    if flavor is None and PYFUNC in flavors:
        model: Any = _pyfunc_model(source, sorted(flavors), trusted=trusted)
        flavor = PYFUNC
    elif flavor is None:
        raise UnsupportedModelError(
            f"this MLflow model has flavors {sorted(flavors)}; modelport imports "
            f"{', '.join(FLAVORS)} models, and {PYFUNC} models when mlflow is installed. Save "
            "the model with one of those MLflow flavors"
        )
    else:
        model = _load_native(flavor, flavors[flavor] or {}, source, trusted=trusted)
    signature = signature_from_mlflow(config.get("signature"))
    example = read_input_example(source, config.get("saved_input_example_info"), signature)
    if flavor == PYFUNC and signature is None:
        raise InvalidInputError(
            "this MLflow pyfunc model has no signature, so its inputs are unknown; log it again "
            "with signature= (or input_example=, from which MLflow infers one)")
    if signature is None and example is None and flavor != "onnx":
        raise InvalidInputError(
            "this MLflow model has neither a signature nor an input example, so its inputs are "
            "unknown; log it again with signature= or input_example="
        )
    tags = {f"mlflow_{key}": str(config[key]) for key in ("run_id", "model_uuid",
                                                          "mlflow_version") if config.get(key)}
    tags["imported_from"] = "mlflow"
    kwargs: dict[str, Any] = {"name": name, "signature": signature, "example": example,
                              "tags": tags, "overwrite": overwrite,
                              "nullable": list(nullable or ())}
    try:
        return save(model, dest, **kwargs)
    except UnsupportedModelError:
        if not trusted:
            raise
        # the safe format cannot hold it; the caller already trusts this pickled artifact
        return save(model, dest, trusted=True, **kwargs)


def read_mlmodel(directory: Path) -> dict[str, Any]:
    path = directory / MLMODEL
    if not path.is_file():
        raise NotFoundError(
            f"no {MLMODEL} file in {directory}; point at the MLflow model directory itself "
            "(the one that holds MLmodel and the model file)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{MLMODEL} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{MLMODEL} does not describe an MLflow model")
    return data


def _artifact(directory: Path, conf: dict[str, Any], key: str) -> Path:
    rel = conf.get(key)
    if not isinstance(rel, str) or not rel:
        raise InvalidInputError(f"the MLflow flavor configuration has no {key!r} entry")
    path = (directory / rel).resolve()
    if directory.resolve() not in path.parents:
        raise InvalidInputError(f"the MLflow artifact path {rel!r} leaves the model directory")
    if not path.is_file():
        raise NotFoundError(f"the MLflow model names {rel!r}, which is not in {directory}")
    return path


def _refuse_pickle(what: str, fmt: str) -> UntrustedArtifactError:
    return UntrustedArtifactError(
        f"this MLflow {what} model is stored with {fmt}, which can run arbitrary code when "
        "read; import it with trusted=True (CLI: --trusted) only if you trust its source"
    )


def _pyfunc_model(source: Path, flavors: list[str], *, trusted: bool) -> Any:
    from modelport.flavors.mlflow_pyfunc import MLflowPyfuncModel, mlflow_installed

    if not mlflow_installed():
        raise UnsupportedModelError(
            f"this MLflow model has flavors {flavors}; modelport reads {', '.join(FLAVORS)} "
            f"models itself, and other {PYFUNC} models through MLflow, which is not installed: "
            "run pip install mlflow, then import again")
    if not trusted:
        raise UntrustedArtifactError(
            "this MLflow model is imported as an MLflow pyfunc model, which MLflow loads by "
            "unpickling Python code; import it with --trusted only if you trust its source")
    return MLflowPyfuncModel(source)


def _read_serialized(path: Path, fmt: str, *, what: str, safe: tuple[str, ...],
                     trusted: bool) -> Any:
    """Read a file written with MLflow's ``serialization_format`` ``fmt``."""
    if fmt == "skops":
        return load_skops(path, is_safe=lambda t: t.startswith(safe), trusted=trusted,
                          allowed=f"{what}/NumPy/SciPy", framework=what)
    if fmt not in ("pickle", "cloudpickle"):
        raise UnsupportedModelError(
            f"unknown MLflow {what} serialization_format {fmt!r}; modelport reads skops, "
            "pickle and cloudpickle")
    if not trusted:
        raise _refuse_pickle(what, fmt)
    try:
        return _unpickle(path, fmt)
    except Exception as exc:  # a truncated file, or classes missing here
        raise ModelLoadError(f"the {fmt} file of this MLflow {what} model could not be read: "
                             f"{exc}") from None


def _unpickle(path: Path, fmt: str) -> Any:
    with path.open("rb") as fh:
        if fmt == "cloudpickle":
            try:
                import cloudpickle
            except ImportError:
                return pickle.load(fh)  # cloudpickle output is ordinary pickle data
            return cloudpickle.load(fh)
        return pickle.load(fh)


def _load_native(flavor: str, conf: dict[str, Any], directory: Path, *, trusted: bool) -> Any:
    if flavor == "sklearn":
        path = _artifact(directory, conf, "pickled_model")
        fmt = str(conf.get("serialization_format", "cloudpickle"))
        return _read_serialized(path, fmt, what="scikit-learn", safe=SKLEARN_SAFE,
                                trusted=trusted)
    if flavor == "xgboost":
        xgb = require("xgboost", "xgboost")
        path = _artifact(directory, conf, "data")
        model_class = str(conf.get("model_class", "xgboost.core.Booster")).rsplit(".", 1)[-1]
        constructors = {"Booster": xgb.Booster, "XGBClassifier": xgb.XGBClassifier,
                        "XGBRegressor": xgb.XGBRegressor}
        if model_class not in constructors:
            raise UnsupportedModelError(
                f"MLflow XGBoost model class {conf.get('model_class')!r} is not supported; "
                f"modelport imports {sorted(constructors)}"
            )
        model = constructors[model_class]()
        # from bytes: XGBoost guesses the format from the content (".xgb" is UBJSON or JSON)
        try:
            model.load_model(bytearray(path.read_bytes()))
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(f"XGBoost could not read {path.name}: {exc}") from None
        return model
    if flavor == "lightgbm":
        lgb = require("lightgbm", "lightgbm")
        path = _artifact(directory, conf, "data")
        if str(conf.get("model_class", "lightgbm.basic.Booster")) == "lightgbm.basic.Booster":
            try:
                return lgb.Booster(model_file=str(path))
            except lgb.basic.LightGBMError as exc:
                raise ModelLoadError(f"LightGBM could not read {path.name}: {exc}") from None
        # the scikit-learn API (LGBMClassifier, ...): skops from MLflow 3 on, cloudpickle before
        fmt = str(conf.get("serialization_format", "cloudpickle"))
        return _read_serialized(path, fmt, what="LightGBM", safe=LIGHTGBM_SAFE, trusted=trusted)
    path = _artifact(directory, conf, "data")
    return path.read_bytes()


def signature_from_mlflow(block: Any) -> Signature | None:
    """A modelport signature from MLmodel's ``signature`` (``inputs`` is a JSON string)."""
    if not isinstance(block, dict) or not block.get("inputs"):
        return None
    raw = block["inputs"]
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"the MLflow signature's inputs are not valid JSON: {exc}") \
            from None
    if not isinstance(specs, list) or not specs:
        return None
    if all(s.get("type") == "tensor" for s in specs):
        tensors = []
        for i, spec in enumerate(specs):
            tensor = spec.get("tensor-spec") or {}
            dtype = str(tensor.get("dtype", "float64"))
            shape = [int(d) for d in tensor.get("shape", [-1])]
            name = spec.get("name") or ("input" if len(specs) == 1 else f"input_{i}")
            tensors.append(ColumnSpec.from_dict({"name": name, "dtype": _numpy_dtype(dtype),
                                                 "shape": shape[1:]}))
        return Signature(inputs=tuple(tensors), kind="tensor")
    columns = []
    for i, spec in enumerate(specs):
        kind = spec.get("type")
        if kind not in COLUMN_TYPES:
            raise UnsupportedModelError(
                f"MLflow input {spec.get('name', i)!r} has type {kind!r}; modelport imports "
                f"columns of type {sorted(COLUMN_TYPES)}"
            )
        columns.append(ColumnSpec(str(spec.get("name", i)), COLUMN_TYPES[kind],
                                  nullable=spec.get("required") is False))
    return Signature(inputs=tuple(columns), kind="columns")


def _numpy_dtype(dtype: str) -> str:
    aliases = {"float": "float64", "double": "float64", "int": "int64", "object": "string",
               "str": "string", "bool_": "bool"}
    return aliases.get(dtype, dtype)


def read_input_example(directory: Path, info: Any, signature: Signature | None) -> Any:
    """The saved input example as a DataFrame, an array or named arrays; ``None`` if absent."""
    if not isinstance(info, dict) or not info.get("artifact_path"):
        return None
    path = directory / str(info["artifact_path"])
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"the MLflow input example is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "params" in data and "inputs" in data and \
            info.get("type") != "ndarray":
        data = data["inputs"]  # an example saved together with inference params
    kind = info.get("type", "dataframe")
    if kind == "dataframe":
        import pandas as pd

        if isinstance(data, dict) and "data" in data:
            columns = data.get("columns") or (
                signature.input_names if signature is not None else None)
            return pd.DataFrame(data["data"], columns=columns)
        return pd.DataFrame(data)
    if kind == "ndarray":
        import numpy as np

        inputs = data.get("inputs", data) if isinstance(data, dict) else data
        if isinstance(inputs, dict):
            return {str(k): np.asarray(v) for k, v in inputs.items()}
        return np.asarray(inputs)
    return None  # sparse matrices and free-form JSON examples are not kept
