"""Conversion of native models to ONNX, accepted only after a numerical parity check.

``to_onnx(model)`` is what serving, batch scoring and export call::

    predictor, reason = to_onnx(model)
    if predictor is None:
        log.info("serving %s natively: %s", model.ref, reason)
    else:
        result = predictor.predict(batch)        # same Result as model.predict_batch(batch)
        onnx_file.write_bytes(predictor.onnx_bytes)

It converts scikit-learn estimators and pipelines (skl2onnx), XGBoost and LightGBM models
(onnxmltools) with plain probability tensors (``zipmap=False``), runs the graph under ONNX
Runtime, and returns the predictor only when, on the example rows stored in the bundle
(``model.manifest.example``), labels equal the native model's, probabilities agree within
``PROBA_ATOL`` and regression values within ``VALUE_RTOL`` (relative); label types must
match too. Nullable float columns are checked a second time with missing values injected.
Otherwise, or when the bundle has no example rows, it returns ``None`` and a reason a person can
act on. A model that is already ONNX is returned as is. It never raises for a model it cannot
convert (a missing converter package is a reason with the install hint). Conversion takes about
a second for a 100-tree ensemble, so callers do it once per loaded model version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.core.batch import Batch, Result
from modelport.errors import ModelportError
from modelport.flavors.base import require, version_of
from modelport.flavors.onnx import OnnxPredictor

if TYPE_CHECKING:
    from modelport.bundle.model import Model

PROBA_ATOL = 1e-4
VALUE_RTOL = 1e-4
_PATCH_LOCK = threading.Lock()


def to_onnx(model: Model, *, threads: int = 1) -> tuple[OnnxPredictor | None, str]:
    """An ONNX Runtime predictor equivalent to ``model``, or ``None`` and the reason why not.

    ``threads`` is the session's intra-op thread count.
    """
    if model.flavor == "onnx" and isinstance(model.predictor, OnnxPredictor):
        return model.predictor, "the model is already ONNX"
    if model.flavor not in ("sklearn", "xgboost", "lightgbm"):
        return None, f"the {model.flavor} flavor has no ONNX converter"
    example = _example(model)
    if example is None:
        return None, ("the bundle stores no example rows, so the conversion cannot be checked; "
                      "save it with example= to enable ONNX")
    try:
        require("onnxruntime", "onnx")
        require("skl2onnx" if model.flavor == "sklearn" else "onnxmltools", "onnx")
        onnx_bytes, tool, labels_from_proba = _convert(model)
    except ModelportError as exc:
        return None, exc.message
    except Exception as exc:  # converters raise anything from RuntimeError to KeyError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{model.flavor} model could not be converted to ONNX: {first[:300]}"
    try:
        predictor = OnnxPredictor(onnx_bytes, signature=model.signature,
                                  classes=_classes(model), threads=threads,
                                  labels_from_proba=labels_from_proba)
    except ModelportError as exc:
        return None, f"the converted model does not run under ONNX Runtime: {exc.message}"
    checked = [("example rows", example)]
    missing = with_missing_values(example, model.signature)
    if missing is not None:
        try:
            model.predict_batch(missing)
        except ModelportError:
            pass  # the native model itself refuses missing values: nothing to compare
        else:
            checked.append(("example rows with missing values", missing))
    for what, batch in checked:
        try:
            converted = predictor.predict(batch)
        except ModelportError as exc:
            return None, (f"the converted model does not run under ONNX Runtime on the {what}: "
                          f"{exc.message}")
        problem = parity_problem(model.predict_batch(batch), converted)
        if problem:
            return None, (f"the ONNX conversion ({tool}) does not match the native model on the "
                          f"{what}: {problem}")
    return predictor, (f"converted with {tool}; matches the native model on "
                       f"{example.n_rows} {' and '.join(what for what, _ in checked)}")


def with_missing_values(batch: Batch, signature: Signature) -> Batch | None:
    """``batch`` with NaN in every other row of each nullable numeric column, or ``None``.

    Missing values take a different path through tree ensembles (a "missing goes left/right"
    flag per node), so the example rows alone may not exercise it.
    """
    nullable = [s.name for s in signature.inputs
                if s.nullable and s.dtype not in ("bool", "string") and not s.shape]
    if not nullable or signature.kind != "columns":
        return None
    columns = dict(batch.columns)
    for offset, name in enumerate(nullable):
        column = columns[name].astype(np.float64, copy=True)
        column[offset % 2::2] = np.nan
        # float columns keep their dtype; integer ones travel as float64 with NaN
        columns[name] = (column.astype(columns[name].dtype, copy=False)
                         if columns[name].dtype.kind == "f" else column)
    return signature.coerce(columns)


def parity_problem(native: Result, converted: Result) -> str:
    """Empty when ``converted`` matches ``native`` within tolerance; else what differs."""
    if native.probabilities is not None:
        if converted.probabilities is None:
            return "it produces no probabilities"
        a, b = np.asarray(native.probabilities, np.float64), np.asarray(
            converted.probabilities, np.float64)
        if a.shape != b.shape:
            return f"probabilities have shape {list(b.shape)}, expected {list(a.shape)}"
        worst = float(np.max(np.abs(a - b))) if a.size else 0.0
        if worst > PROBA_ATOL:
            return f"probabilities differ by up to {worst:.2e} (allowed {PROBA_ATOL:.0e})"
    if native.labels is None:
        return ""
    if converted.labels is None:
        return "it produces no labels"
    expected, got = np.asarray(native.labels), np.asarray(converted.labels)
    if expected.shape != got.shape:
        return f"labels have shape {list(got.shape)}, expected {list(expected.shape)}"
    if native.probabilities is None and expected.dtype.kind == "f":
        if not np.allclose(got, expected, rtol=VALUE_RTOL, atol=1e-6, equal_nan=True):
            rel = np.abs(got - expected) / np.maximum(np.abs(expected), 1e-12)
            return (f"values differ by up to {float(rel.max()):.2e} relative "
                    f"(allowed {VALUE_RTOL:.0e})")
        return ""
    # types too: a graph answering 1 where the model answers True is not the same model (NumPy
    # scalars, which object arrays of labels hold, count as the Python type they stand for)
    mismatch = [i for i, (x, y) in enumerate(zip(_plain(expected), _plain(got), strict=True))
                if x != y or type(x) is not type(y)]
    if mismatch:
        return (f"labels differ on {len(mismatch)} of {len(expected)} rows "
                f"(first: row {mismatch[0]})")
    return ""


def _plain(values: np.ndarray[Any, Any]) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]


def _example(model: Model) -> Batch | None:
    if model.manifest.example is None or model.path is None:
        return None
    import pyarrow.parquet as pq

    path = model.path / model.manifest.example
    if not path.is_file():
        return None
    return model.signature.coerce(pq.read_table(path))


def _classes(model: Model) -> list[Any] | None:
    classes = model.signature.classes
    return list(classes) if classes is not None else None


def _convert(model: Model) -> tuple[bytes, str, bool]:
    """The serialized ONNX model, the tool's name, and whether labels come from argmax."""
    sig = model.signature
    native = model.predictor.native
    if model.flavor == "sklearn":
        return _convert_sklearn(native, sig), f"skl2onnx {version_of('skl2onnx')}", False
    if sig.kind != "columns" or any(c.dtype in ("string", "bool") for c in sig.inputs):
        raise _Refused("only numeric column inputs can be converted for this flavor")
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial = [("input", FloatTensorType([None, len(sig.inputs)]))]
    tool = f"onnxmltools {version_of('onnxmltools')}"
    if model.flavor == "xgboost":
        from onnxmltools import convert_xgboost

        # onnxmltools parses split names as "f<index>"; a booster trained on a DataFrame names
        # its features, so convert a copy without names (the column order is the signature's).
        booster = native.get_booster() if hasattr(native, "get_booster") else native
        if booster.feature_names is not None:
            if hasattr(native, "get_booster"):
                native = _unnamed_wrapper(native)
            else:
                native = booster.copy()
                native.feature_names = None
                native.feature_types = None
        proto = convert_xgboost(native, initial_types=initial)
        return proto.SerializeToString(), tool, not hasattr(model.predictor.native,
                                                            "predict_proba")
    from onnxmltools import convert_lightgbm

    proto = convert_lightgbm(native, initial_types=initial, zipmap=False)
    return proto.SerializeToString(), tool, sig.task == "classification"


def _unnamed_wrapper(model: Any) -> Any:
    """A copy of an XGBoost scikit-learn wrapper whose booster has no feature names."""
    import copy

    clone = copy.deepcopy(model)
    booster = clone.get_booster()
    booster.feature_names = None
    booster.feature_types = None
    clone._Booster = booster
    if hasattr(clone, "feature_names_in_"):
        del clone.feature_names_in_
    return clone


class _Refused(ModelportError):
    """A model this converter does not take; the message is the reason."""


def _convert_sklearn(estimator: Any, sig: Signature) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    if sig.kind == "tensor":
        if len(sig.inputs) != 1:
            raise _Refused("models with several input tensors cannot be converted")
        width = int(np.prod(sig.inputs[0].shape)) if sig.inputs[0].shape else 1
        attempts = [[("input", FloatTensorType([None, width]))]]
    else:
        numeric = all(c.dtype not in ("string", "bool") for c in sig.inputs)
        types = {"string": StringTensorType, "bool": BooleanTensorType,
                 "float64": DoubleTensorType}
        per_column = [
            (c.name, (types.get(c.dtype) or (Int64TensorType if c.dtype.startswith(
                ("int", "uint")) else FloatTensorType))([None, 1]))
            for c in sig.inputs]
        float_columns = [(c.name, StringTensorType([None, 1]) if c.dtype == "string"
                          else FloatTensorType([None, 1])) for c in sig.inputs]
        attempts = []
        if numeric:
            attempts.append([("input", FloatTensorType([None, len(sig.inputs)]))])
        attempts += [float_columns, per_column]
    from sklearn.base import is_classifier

    options = {"zipmap": False} if is_classifier(estimator) else None
    errors: list[str] = []
    for initial in attempts:
        try:
            with _bool_attributes_as_ints():
                proto = convert_sklearn(estimator, initial_types=initial, options=options)
            return proto.SerializeToString()  # type: ignore[no-any-return]
        except Exception as exc:  # skl2onnx raises anything; try the next input layout
            errors.append(str(exc).strip().splitlines()[0] if str(exc).strip()
                          else type(exc).__name__)
    raise _Refused(f"skl2onnx cannot convert {type(estimator).__name__}: {errors[0][:300]}")


@contextmanager
def _bool_attributes_as_ints() -> Iterator[None]:
    """Cast boolean list attributes to ints while skl2onnx builds nodes.

    skl2onnx 1.20 passes NumPy booleans in ``nodes_missing_value_tracks_true`` (HistGradient-
    Boosting trees); protobuf 7 refuses booleans in an ``ints`` field ("Expected an int, got a
    boolean"), so the export fails. Casting them to 0/1 is what older protobufs did implicitly.
    """
    from skl2onnx.common._container import ModelComponentContainer

    original = ModelComponentContainer.add_node

    def add_node(self: Any, op_type: Any, inputs: Any, outputs: Any, op_domain: str = "",
                 op_version: Any = None, name: Any = None, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, np.ndarray) and value.dtype == np.bool_:
                attrs[key] = value.astype(np.int64)
            elif isinstance(value, list | tuple) and value and any(
                    isinstance(v, bool | np.bool_) for v in value):
                attrs[key] = [int(v) if isinstance(v, bool | np.bool_) else v for v in value]
        return original(self, op_type, inputs, outputs, op_domain=op_domain,
                        op_version=op_version, name=name, **attrs)

    with _PATCH_LOCK:
        ModelComponentContainer.add_node = add_node
        try:
            yield
        finally:
            ModelComponentContainer.add_node = original
