"""ONNX models, run by ONNX Runtime.

Accepts an ``onnx.ModelProto``, the bytes of one, or a path to a ``.onnx`` file. The signature
can be read from the graph: one input of shape ``[N, k]`` becomes a tensor signature; several
inputs of shape ``[N, 1]`` become a column signature (one column per input, as skl2onnx writes
models converted from DataFrames).

The predictor takes the fast path: a column signature whose graph has one 2-D input is fed one
``float32`` matrix (``batch.to_matrix``), no pandas. A graph that looks like a classifier
(outputs ``label`` and ``probabilities``, as skl2onnx / onnxmltools write them with
``zipmap=False``) answers labels and probabilities; any other graph answers its named outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import ColumnSpec, Signature
from modelport.core.batch import Array, Batch, Result
from modelport.errors import InvalidInputError, ModelLoadError, UnsupportedModelError
from modelport.flavors.base import Description, Flavor, Predictor, comes_from, require, version_of

#: ONNX Runtime intra-op threads per session unless ``flavor_info["intra_op_num_threads"]``
#: says otherwise; one thread gives the lowest single-row latency and leaves cores to workers.
DEFAULT_THREADS = 1

#: ONNX TensorProto element types → signature dtypes.
_ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
               8: "string", 9: "bool", 11: "float64", 12: "uint32", 13: "uint64"}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
              "tensor(string)": np.object_, "tensor(uint32)": np.uint32,
              "tensor(uint64)": np.uint64}
_CLASSIFIER_OPS = ("LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier")


def load_proto(model: Any) -> Any:
    """An ``onnx.ModelProto`` from a ModelProto, bytes or a file path."""
    onnx = require("onnx", "onnx")
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, bytes | bytearray):
            return onnx.load_model_from_string(bytes(model))
        return onnx.load_model(os.fspath(model))
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise ModelLoadError(f"not a readable ONNX model: {exc}") from None
    except Exception as exc:  # protobuf's DecodeError has no stable import path
        raise ModelLoadError(f"not a readable ONNX model: {exc}") from None


def _graph_inputs(proto: Any) -> list[Any]:
    initializers = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def _dims(value_info: Any) -> list[int]:
    """Static dims of a graph input or output; unknown (symbolic) dims are ``-1``."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim]


def signature_from_graph(proto: Any) -> Signature:
    """Inputs read from the graph: tensors, or columns when every input is one ``[N, 1]`` column."""
    specs: list[ColumnSpec] = []
    inputs = _graph_inputs(proto)
    for value in inputs:
        elem = value.type.tensor_type.elem_type
        if elem not in _ELEM_TYPES:
            raise UnsupportedModelError(
                f"ONNX input {value.name!r} has element type {elem}, which modelport cannot "
                "feed; use float, double, integer, bool or string inputs"
            )
        specs.append(ColumnSpec(value.name, _ELEM_TYPES[elem],
                                tuple(_dims(value)[1:])))
    if len(inputs) > 1 and all(s.shape == (1,) for s in specs):
        return Signature(inputs=tuple(ColumnSpec(s.name, s.dtype) for s in specs),
                         kind="columns")
    return Signature(inputs=tuple(specs), kind="tensor")


def classes_from_graph(proto: Any) -> tuple[Any, ...] | None:
    """Class labels stored in a classifier node (``classlabels_int64s`` / ``_strings``)."""
    for node in proto.graph.node:
        if node.op_type not in _CLASSIFIER_OPS:
            continue
        for attr in node.attribute:
            if attr.name == "classlabels_ints" or attr.name == "classlabels_int64s":
                return tuple(int(v) for v in attr.ints)
            if attr.name == "classlabels_strings":
                return tuple(v.decode("utf-8") for v in attr.strings)
    return None


def looks_like_classifier(output_names: list[str]) -> bool:
    return len(output_names) >= 2 and output_names[0] in ("label", "output_label") and \
        output_names[1] in ("probabilities", "output_probability")


class OnnxPredictor(Predictor):
    """An ONNX Runtime session fed from a ``Batch``.

    ``model`` is the serialized model (bytes) or a file path; ``classes`` overrides the class
    labels read from the graph (used when converting a native model, whose classes are known).
    ``onnx_bytes`` keeps the serialized model, for export.
    """

    def __init__(self, model: bytes | str | Path, *, signature: Signature,
                 classes: list[Any] | None = None, threads: int = DEFAULT_THREADS,
                 labels_from_proba: bool = False) -> None:
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # shape-inference notices would go to stderr per call
        try:
            self.native = ort.InferenceSession(
                model if isinstance(model, bytes) else os.fspath(model), options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped Fail / InvalidGraph
            raise ModelLoadError(f"ONNX Runtime could not load the model: {exc}") from None
        self.onnx_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
        self._signature = signature
        self._inputs = [(i.name, _ORT_TYPES.get(i.type, np.float32), len(i.shape))
                        for i in self.native.get_inputs()]
        self._outputs = [o.name for o in self.native.get_outputs()]
        self._classify = looks_like_classifier(self._outputs)
        self.classes = classes if classes is not None else (
            list(signature.classes) if signature.classes is not None else None)
        #: labels as ``classes[argmax(probabilities)]`` (graphs whose label output is an index)
        self._class_array = (np.asarray(self.classes, dtype=object if any(
            isinstance(c, str) for c in self.classes) else None)
            if labels_from_proba and self.classes is not None else None)
        #: graphs store boolean class labels as 0/1 integers; answer booleans like the model
        self._bool_labels = bool(self.classes) and all(
            isinstance(c, bool | np.bool_) for c in self.classes or ())
        #: the native model's output dtypes (recorded in the signature): answers are cast to
        #: them, so an accelerated model answers in the same types as the native one
        self._native = _native_dtypes(signature)
        self._matrix = (signature.kind == "columns" and len(self._inputs) == 1
                        and len(signature.inputs) >= 1 and self._inputs[0][2] == 2)
        #: graph input name -> batch column; by name, else by position when counts agree
        self._sources = {name: name for name, _, _ in self._inputs}
        if not self._matrix:
            missing = [name for name, _, _ in self._inputs if name not in signature.input_names]
            if missing and len(self._inputs) == len(signature.inputs):
                self._sources = {name: spec.name for (name, _, _), spec
                                 in zip(self._inputs, signature.inputs, strict=True)}
            elif missing:
                raise ModelLoadError(
                    f"the ONNX graph takes inputs {missing} that the signature does not declare; "
                    f"the signature has {signature.input_names}"
                )

    def feeds(self, batch: Batch) -> dict[str, Array]:
        if self._matrix:
            name, dtype, _ = self._inputs[0]
            return {name: batch.to_matrix(dtype)}
        out: dict[str, Array] = {}
        for name, dtype, rank in self._inputs:
            arr = batch.column(self._sources[name])
            if dtype is np.object_:
                arr = arr.astype(object, copy=False)
            else:
                arr = arr.astype(dtype, copy=False)
            if arr.ndim < rank:
                arr = arr.reshape((*arr.shape, *([1] * (rank - arr.ndim))))
            elif arr.ndim > rank == 2:
                arr = arr.reshape(len(arr), -1)  # (n, 8, 8) images into a (n, 64) graph
            out[name] = arr
        return out

    @property
    def labels_from_proba(self) -> bool:
        """Whether labels are ``classes[argmax(probabilities)]`` rather than the graph's own."""
        return self._class_array is not None

    def predict(self, batch: Batch) -> Result:
        result = self._predict(batch)
        labels_to, proba_to = self._native
        labels, proba = result.labels, result.probabilities
        if labels_to is not None and labels is not None and labels.dtype != labels_to \
                and labels.dtype.kind in "biuf":
            result.labels = labels.astype(labels_to)
        if proba_to is not None and proba is not None and proba.dtype != proba_to:
            result.probabilities = proba.astype(proba_to)
        return result

    def _predict(self, batch: Batch) -> Result:
        try:
            values = self.native.run(None, self.feeds(batch))
        except Exception as exc:  # onnxruntime's errors are untyped
            raise InvalidInputError(f"ONNX Runtime rejected the input: {exc}") from None
        outputs = dict(zip(self._outputs, values, strict=True))
        if self._classify:
            raw = outputs[self._outputs[1]]
            classes = self.classes
            if isinstance(raw, list):  # ZipMap output: one {class: probability} map per row
                keys = list(raw[0]) if raw else list(classes or ())
                classes = classes if classes is not None else keys
                raw = np.array([[row[k] for k in classes] for row in raw], dtype=np.float32)
            proba = np.asarray(raw).reshape(batch.n_rows, -1)
            labels = (self._class_array[proba.argmax(axis=1)] if self._class_array is not None
                      else np.asarray(outputs[self._outputs[0]]).reshape(-1))
            if self._bool_labels and labels.dtype.kind in "iu":
                labels = labels.astype(bool)
            return Result(batch.n_rows, labels=labels, probabilities=proba, classes=classes)
        if self._signature.task == "regression":
            return Result(batch.n_rows, labels=np.asarray(values[0]).reshape(batch.n_rows))
        return Result(batch.n_rows, outputs={k: np.asarray(v) for k, v in outputs.items()})


def _native_dtypes(signature: Signature) -> tuple[np.dtype[Any] | None, np.dtype[Any] | None]:
    """The dtypes of the primary output and of the probabilities the signature records (numeric
    ones only: labels of text stay as the graph gives them)."""
    specs = {o.name: o for o in signature.outputs if not o.shape or o.name == "probabilities"}
    label = specs.get("label") or specs.get("prediction")
    labels_to = np.dtype(label.dtype) if label is not None and label.dtype != "string" \
        and not label.shape else None
    proba = specs.get("probabilities")
    proba_to = np.dtype(proba.dtype) if proba is not None and proba.dtype.startswith("float") \
        else None
    return labels_to, proba_to


class OnnxFlavor(Flavor):
    name = "onnx"
    requirement = "onnxruntime"

    def handles(self, model: Any) -> bool:
        if comes_from(model, "onnx"):
            return type(model).__name__ == "ModelProto"
        if isinstance(model, str | os.PathLike):
            return os.fspath(model).endswith(".onnx")
        return isinstance(model, bytes | bytearray)

    def describe(self, model: Any) -> Description:
        proto = load_proto(model)
        libraries = {"onnx": version_of("onnx"), "onnxruntime": version_of("onnxruntime")}
        outputs = [o.name for o in proto.graph.output]
        if looks_like_classifier(outputs):
            return Description("classification", classes_from_graph(proto), libraries)
        return Description("other", None, libraries)

    def infer_signature(self, model: Any) -> Signature | None:
        proto = load_proto(model)
        sig = signature_from_graph(proto)
        outputs = []
        for value in proto.graph.output:
            elem = value.type.tensor_type.elem_type
            if elem in _ELEM_TYPES:
                outputs.append(ColumnSpec(value.name, _ELEM_TYPES[elem],
                                          tuple(_dims(value)[1:])))
        return sig.with_outputs(outputs, task=sig.task, classes=None)

    def save(self, model: Any, directory: Path, *, signature: Signature,
             trusted: bool) -> dict[str, Any]:
        proto = load_proto(model)
        (directory / "model.onnx").write_bytes(proto.SerializeToString())
        return {"file": "model.onnx", "intra_op_num_threads": DEFAULT_THREADS}

    def load(self, directory: Path, info: dict[str, Any], signature: Signature, *,
             trusted: bool) -> Predictor:
        return OnnxPredictor(
            (directory / str(info["file"])).read_bytes(), signature=signature,
            threads=int(info.get("intra_op_num_threads", DEFAULT_THREADS)),
        )
