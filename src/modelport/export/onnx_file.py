"""``modelport export REF --format onnx``: one standalone ONNX file, checked against the model.

The graph is the bundle's stored ONNX form when it has one (converted and checked when the
bundle was saved), else the model is converted now (:func:`modelport.flavors.convert.to_onnx`).
Classifiers always come with plain probability tensors (no ZipMap), which every ONNX runtime,
onnxruntime-web included, can read. Then, on request:

* ``opset`` — the default-domain opset is converted with ``onnx.version_converter``;
* ``dtype="float64"`` — a scikit-learn model is converted again with double-precision inputs
  (skl2onnx computes in double where the operators allow); other flavors compute in float32 and
  are refused with the reason;
* ``batch_size`` — the first dimension of every input and output is fixed (default: dynamic).

The signature and provenance go into the model's ``metadata_props`` (``modelport.signature`` as
JSON, ``modelport.model``, ``modelport.version``, ``modelport.made_by``,
``modelport.labels_from_proba``). The final bytes are run under ONNX Runtime on the bundle's
example rows and compared with the native model: labels equal, probabilities within
``PROBA_ATOL``, values within ``VALUE_RTOL``; anything else is refused with what differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelport.errors import ConfigurationError, UnsupportedModelError

if TYPE_CHECKING:
    from modelport.bundle.model import Model
    from modelport.core.batch import Batch, Result
    from modelport.export.source import ExportSource

FloatType = Literal["float32", "float64"]
#: lowest default-domain opset offered (onnxruntime-web and current runtimes read 13+)
MIN_OPSET = 13


@dataclass(frozen=True)
class OnnxOptions:
    """How to shape the exported graph."""

    #: default-domain (``ai.onnx``) opset; ``None`` keeps the converter's
    opset: int | None = None
    #: element type of floating inputs
    dtype: FloatType = "float32"
    #: fixed batch size, or ``None`` for a dynamic first dimension
    batch_size: int | None = None

    def check(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ConfigurationError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.opset is not None and self.opset < MIN_OPSET:
            raise ConfigurationError(f"--opset must be at least {MIN_OPSET}, got {self.opset}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigurationError(f"--batch-size must be positive, got {self.batch_size}")


@dataclass
class ParityReport:
    """How the exported graph compares with the native model on the bundle's example rows."""

    rows: int
    labels_equal: bool
    label_mismatches: int
    max_probability_diff: float | None
    max_value_rel_diff: float | None
    probability_tolerance: float
    value_tolerance: float
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "passed": self.passed, "labels_equal": self.labels_equal,
                "label_mismatches": self.label_mismatches,
                "max_probability_diff": self.max_probability_diff,
                "max_value_rel_diff": self.max_value_rel_diff,
                "probability_tolerance": self.probability_tolerance,
                "value_tolerance": self.value_tolerance, "problem": self.problem or None}


@dataclass
class OnnxExport:
    """The exported graph and what is known about it."""

    onnx_bytes: bytes
    parity: ParityReport
    origin: str
    opset: int
    dtype: FloatType
    batch_size: int | None
    labels_from_proba: bool
    metadata: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {"origin": self.origin, "opset": self.opset, "dtype": self.dtype,
                "batch_size": self.batch_size, "bytes": len(self.onnx_bytes),
                "labels_from_proba": self.labels_from_proba, "parity": self.parity.to_dict(),
                "metadata": {k: v for k, v in self.metadata.items()
                             if k != "modelport.signature"}}


def export_onnx(source: ExportSource, options: OnnxOptions | None = None) -> OnnxExport:
    """The model as one checked ONNX graph, or :class:`UnsupportedModelError` saying why not."""
    options = options or OnnxOptions()
    options.check()
    model = source.model
    onnx_bytes, origin, labels_from_proba = _base_graph(source, options.dtype)
    import onnx

    proto = onnx.load_model_from_string(onnx_bytes)
    _dedupe_opsets(proto)
    if options.opset is not None and _opset(proto) != options.opset:
        proto = _convert_opset(proto, options.opset, source.provenance.ref)
        origin += f"; opset converted to {options.opset}"
    if options.batch_size is not None:
        _fix_batch(proto, options.batch_size)
    metadata = {
        "modelport.signature": json.dumps(model.signature.to_dict(), default=_plain),
        "modelport.model": model.name,
        "modelport.version": str(model.version) if model.version is not None else "",
        "modelport.flavor": model.flavor,
        "modelport.labels_from_proba": "true" if labels_from_proba else "false",
        "modelport.made_by": source.provenance.line(),
    }
    _set_metadata(proto, metadata)
    if model.version is not None:
        proto.model_version = int(model.version)
    proto.doc_string = f"{model.name}: {source.provenance.line()}"
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise UnsupportedModelError(
            f"model {source.provenance.ref} cannot be exported to ONNX: the graph does not pass "
            f"the ONNX checker ({str(exc).splitlines()[0][:200]})") from None
    final = proto.SerializeToString()
    parity = check_parity(model, final, labels_from_proba=labels_from_proba,
                          batch_size=options.batch_size)
    if not parity.passed:
        raise UnsupportedModelError(
            f"model {source.provenance.ref} cannot be exported to ONNX: the exported graph does "
            f"not match the native model on {parity.rows} example rows ({parity.problem})")
    return OnnxExport(final, parity, origin, _opset(proto), options.dtype, options.batch_size,
                      labels_from_proba, metadata)


def check_parity(model: Model, onnx_bytes: bytes, *, labels_from_proba: bool,
                 batch_size: int | None = None) -> ParityReport:
    """Compare ``onnx_bytes`` under ONNX Runtime with ``model`` on the bundle's example rows."""
    from modelport.flavors.convert import PROBA_ATOL, VALUE_RTOL, parity_problem
    from modelport.flavors.onnx import OnnxPredictor

    example = example_rows(model)
    classes = model.signature.classes
    predictor = OnnxPredictor(onnx_bytes, signature=model.signature,
                              classes=list(classes) if classes is not None else None,
                              labels_from_proba=labels_from_proba)
    native = model.predict_batch(example)
    converted = _predict_in_chunks(predictor, example, batch_size)
    if native.outputs and converted.labels is None and converted.probabilities is None:
        problem, output_diff = _outputs_problem(native, converted, VALUE_RTOL)
        return ParityReport(example.n_rows, True, 0, None, output_diff, PROBA_ATOL, VALUE_RTOL,
                            problem)
    problem = parity_problem(native, converted)
    mismatches = 0
    if native.labels is not None and converted.labels is not None and \
            len(native.labels) == len(converted.labels):
        mismatches = int(sum(_as_plain(a) != _as_plain(b) for a, b in
                             zip(native.labels.tolist(), converted.labels.tolist(), strict=True)))
    proba_diff = None
    if native.probabilities is not None and converted.probabilities is not None and \
            np.shape(native.probabilities) == np.shape(converted.probabilities):
        proba_diff = float(np.max(np.abs(np.asarray(native.probabilities, np.float64)
                                         - np.asarray(converted.probabilities, np.float64))))
    value_diff: float | None = None
    if native.probabilities is None and native.labels is not None and \
            np.asarray(native.labels).dtype.kind == "f" and converted.labels is not None:
        a = np.asarray(native.labels, np.float64)
        b = np.asarray(converted.labels, np.float64)
        value_diff = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12))) if a.size else 0.0
    return ParityReport(example.n_rows, mismatches == 0 and "labels" not in problem, mismatches,
                        proba_diff, value_diff, PROBA_ATOL, VALUE_RTOL, problem)


def _outputs_problem(native: Result, converted: Result, rtol: float) -> tuple[str, float]:
    """Named outputs compared value by value (models without labels: tensors in, tensors out)."""
    worst = 0.0
    for name, expected in native.outputs.items():
        got = converted.outputs.get(name)
        if got is None:
            return f"it has no output {name!r} (it has {sorted(converted.outputs)})", worst
        a = np.asarray(expected, np.float64)
        b = np.asarray(got, np.float64)
        if a.size != b.size:
            return f"output {name!r} has {b.size} values, expected {a.size}", worst
        a, b = a.reshape(-1), b.reshape(-1)
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-3))))
        if not np.allclose(b, a, rtol=rtol, atol=1e-5, equal_nan=True):
            return f"output {name!r} differs by up to {worst:.2e} relative", worst
    return "", worst


def example_rows(model: Model) -> Batch:
    """The bundle's example rows, coerced by its signature; refused when it has none."""
    import pyarrow.parquet as pq

    if model.manifest.example is None or model.path is None or \
            not (model.path / model.manifest.example).is_file():
        raise UnsupportedModelError(
            f"model {model.ref} stores no example rows, so an export cannot be checked against "
            "it; save the model again with modelport.save(..., example=rows) and register it")
    return model.signature.coerce(pq.ParquetFile(model.path / model.manifest.example).read())


# ---------------------------------------------------------------------------- graph sources
def _base_graph(source: ExportSource, dtype: FloatType) -> tuple[bytes, str, bool]:
    """The starting graph, where it came from, and whether labels come from argmax."""
    from modelport.bundle.accelerated import has_stored
    from modelport.flavors.onnx import OnnxPredictor

    model = source.model
    ref = source.provenance.ref
    if model.flavor == "onnx" and isinstance(model.predictor, OnnxPredictor):
        if dtype == "float64":
            raise UnsupportedModelError(
                f"model {ref} is an ONNX model; its input types are its own (drop --dtype)")
        return model.predictor.onnx_bytes, "the bundle's ONNX model", False
    if dtype == "float64":
        return _double_sklearn(model, ref)
    if model.flavor == "torch":
        return (_torch_graph(model, ref), "exported from TorchScript with torch.onnx",
                False)
    info = model.manifest.accelerated or {}
    if has_stored(model.manifest):
        data = (source.bundle_dir / str(info["file"])).read_bytes()
        return data, "the bundle's stored ONNX form", bool(info.get("labels_from_proba"))
    from modelport.flavors.convert import to_onnx

    predictor, reason = to_onnx(model)
    if predictor is None:
        raise UnsupportedModelError(f"model {ref} cannot be exported to ONNX: {reason}")
    return predictor.onnx_bytes, f"converted now ({reason})", predictor.labels_from_proba


def _double_sklearn(model: Model, ref: str) -> tuple[bytes, str, bool]:
    if model.flavor != "sklearn":
        raise UnsupportedModelError(
            f"model {ref} cannot be exported with float64 inputs: only scikit-learn models "
            f"convert in double precision ({model.flavor} models compute in float32); "
            "export it with --dtype float32")
    sig = model.signature
    if sig.kind != "columns" or any(c.dtype in ("string", "bool") for c in sig.inputs):
        raise UnsupportedModelError(
            f"model {ref} cannot be exported with float64 inputs: only models whose inputs are "
            "all numeric columns can; export it with --dtype float32")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType
    from sklearn.base import is_classifier

    from modelport.flavors.base import version_of
    from modelport.flavors.convert import _bool_attributes_as_ints

    estimator = model.predictor.native
    options = {"zipmap": False} if is_classifier(estimator) else None
    try:
        with _bool_attributes_as_ints():
            proto = convert_sklearn(estimator, initial_types=[
                ("input", DoubleTensorType([None, len(sig.inputs)]))], options=options)
    except Exception as exc:  # skl2onnx raises anything
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedModelError(
            f"model {ref} cannot be exported with float64 inputs: skl2onnx cannot convert "
            f"{type(estimator).__name__} in double precision ({first[:200]}); "
            "export it with --dtype float32") from None
    return (proto.SerializeToString(),
            f"converted now in double precision with skl2onnx {version_of('skl2onnx')}", False)


def _torch_graph(model: Model, ref: str) -> bytes:
    """A TorchScript module exported with ``torch.onnx`` (columns as one float matrix)."""
    import io
    import warnings

    import torch

    sig = model.signature
    module = model.predictor.native
    shapes: list[tuple[int, ...]]
    if sig.kind == "columns":
        shapes = [(2, len(sig.inputs))]
        names = ["input"]
    else:
        shapes = [(2, *(s if s > 0 else 1 for s in spec.shape)) for spec in sig.inputs]
        names = [spec.name for spec in sig.inputs]
    dtype = next((p.dtype for p in module.parameters() if p.dtype.is_floating_point),
                 torch.float32)
    args = tuple(torch.zeros(shape, dtype=dtype) for shape in shapes)
    # the graph's outputs take the names the native model's answers have (output, output_0, …)
    outputs = list(model.predict_batch(example_rows(model)).outputs)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buffer,  # type: ignore[arg-type]
                              input_names=names, output_names=outputs, dynamo=False,
                              dynamic_axes={name: {0: "N"} for name in [*names, *outputs]})
    except Exception as exc:  # torch.onnx raises anything
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedModelError(
            f"model {ref} cannot be exported to ONNX: torch.onnx could not export the "
            f"TorchScript module ({first[:200]})") from None
    return buffer.getvalue()


# ---------------------------------------------------------------------------- graph edits
def _opset(proto: Any) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _dedupe_opsets(proto: Any) -> None:
    """One entry per domain (the highest): some converters list the default domain twice,
    and the version converter would then change only one of them."""
    best: dict[str, int] = {}
    for entry in proto.opset_import:
        best[entry.domain] = max(best.get(entry.domain, 0), int(entry.version))
    if len(best) != len(proto.opset_import):
        del proto.opset_import[:]
        for domain, version in best.items():
            entry = proto.opset_import.add()
            entry.domain, entry.version = domain, version


def _convert_opset(proto: Any, opset: int, ref: str) -> Any:
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, opset)
    except Exception as exc:  # the converter raises RuntimeError / ValidationError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedModelError(
            f"model {ref} cannot be exported at opset {opset}: {first[:200]}; "
            f"try another --opset (the graph uses {_opset(proto)})") from None


def _fix_batch(proto: Any, batch_size: int) -> None:
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = batch_size


def _set_metadata(proto: Any, values: dict[str, str]) -> None:
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _predict_in_chunks(predictor: Any, batch: Batch, batch_size: int | None) -> Result:
    """Run ``batch`` in chunks of exactly ``batch_size`` rows (the last one padded by repeating
    rows), as a graph with a fixed batch dimension needs."""
    from modelport.core.batch import Batch, Result

    if batch_size is None:
        result: Result = predictor.predict(batch)
        return result
    n = batch.n_rows
    labels: list[Any] = []
    probas: list[Any] = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size) % n
        part = predictor.predict(Batch.from_columns(
            {name: column[rows] for name, column in batch.columns.items()}))
        keep = min(batch_size, n - start)
        if part.labels is not None:
            labels.append(np.asarray(part.labels)[:keep])
        if part.probabilities is not None:
            probas.append(np.asarray(part.probabilities)[:keep])
    return Result(n, labels=np.concatenate(labels) if labels else None,
                  probabilities=np.concatenate(probas) if probas else None,
                  classes=getattr(predictor, "classes", None))


def _as_plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
