"""``modelport package REF --target python``: the model as a wheel an application depends on.

``pip install churn_model-3-py3-none-any.whl``, then::

    import churn_model
    churn_model.predict({"tenure": 3, "plan": "basic"})      # same JSON as POST /predict/churn
    churn_model.predict([{...}, {...}])                       # {"model", "version", "predictions"}

The wheel holds the parity-checked ONNX graph (:func:`~modelport.export.onnx_file.export_onnx`),
the whole bundle it came from (``bundle/``: manifest, native artifact, example rows) and a small
runtime that needs only ``numpy`` and ``onnxruntime`` — no scikit-learn, no modelport. Model and
code ship as one versioned artifact: the wheel's version is the model version.

On import the package checks the SHA-256 of every payload file against the digests written into
its ``__init__.py`` when it was built, and refuses to import (``<package>.IntegrityError``, an
``ImportError``) when one differs or is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidReferenceError
from modelport.export.onnx_file import OnnxExport, OnnxOptions, export_onnx
from modelport.export.web import feeds

if TYPE_CHECKING:
    from modelport.export.source import ExportSource

#: the versions the embedded runtime was tested with (lower bounds of its requirements)
RUNTIME_REQUIRES = ("numpy>=1.26", "onnxruntime>=1.17")


@dataclass
class BuiltWheel:
    """The wheel's file name and bytes, and the export inside it."""

    filename: str
    data: bytes
    package: str
    onnx: OnnxExport

    def report(self) -> dict[str, Any]:
        return {"wheel": self.filename, "package": self.package, "bytes": len(self.data),
                "requires": list(RUNTIME_REQUIRES), "onnx": self.onnx.report()}


def package_name(model_name: str, override: str | None = None) -> str:
    """``churn`` → ``churn_model``: a Python identifier (PEP 8 module name) for the model."""
    name = override or re.sub(r"[^0-9a-zA-Z]+", "_", model_name).strip("_").lower() + "_model"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name.endswith("__"):
        raise InvalidReferenceError(
            f"{name!r} is not a valid Python package name (lowercase letters, digits and '_', "
            "starting with a letter); pass one with 'modelport package REF --target python "
            "--package-name NAME'")
    return name


def build_wheel(source: ExportSource, *, package: str | None = None,
                options: OnnxOptions | None = None) -> BuiltWheel:
    """The wheel for ``source``'s model (nothing is written to disk)."""
    import tempfile

    from wheel.wheelfile import WheelFile

    exported = export_onnx(source, options)
    name = package_name(source.name, package)
    version = str(source.version) if source.version is not None else "0"
    model = source.model
    info = {
        "model": model.name, "version": model.version, "made_by": source.provenance.line(),
        "signature": model.signature.to_dict(),
        "feeds": feeds(exported.onnx_bytes, list(model.signature.inputs), model.signature.kind),
        "classifier": _is_classifier(exported.onnx_bytes),
        "labels_from_proba": exported.labels_from_proba,
        "parity": exported.parity.to_dict(),
    }
    payload: dict[str, bytes] = {
        "model.onnx": exported.onnx_bytes,
        "info.json": json.dumps(info, indent=1, default=_plain).encode(),
    }
    for path in sorted(source.bundle_dir.rglob("*")):
        if path.is_file():
            payload[f"bundle/{path.relative_to(source.bundle_dir).as_posix()}"] = \
                path.read_bytes()
    digests = {rel: hashlib.sha256(data).hexdigest() for rel, data in payload.items()}
    files = {f"{name}/{rel}": data for rel, data in payload.items()}
    files[f"{name}/_runtime.py"] = (
        f"# {source.provenance.line()}\n" + _asset("wheel_runtime.py")).encode()
    files[f"{name}/__init__.py"] = _init(name, source, digests).encode()
    files[f"{name}/py.typed"] = b""
    dist = f"{name}-{version}"
    files[f"{dist}.dist-info/METADATA"] = _metadata(name, version, source).encode()
    files[f"{dist}.dist-info/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: modelport {source.provenance.modelport}\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n").encode()
    filename = f"{dist}-py3-none-any.whl"
    with tempfile.TemporaryDirectory(prefix="modelport-wheel-") as tmp:
        # WheelFile parses name and version from the path, and writes WHEEL and RECORD
        with WheelFile(Path(tmp) / filename, "w") as wheel:
            for rel, data in files.items():
                wheel.writestr(rel, data)
        data = (Path(tmp) / filename).read_bytes()
    return BuiltWheel(filename, data, name, exported)


def _init(name: str, source: ExportSource, digests: dict[str, str]) -> str:
    model = source.model
    listing = json.dumps(digests, indent=4, sort_keys=True)
    return f'''"""{model.name} version {model.version}: an embedded modelport model.

{source.provenance.line()}.

    import {name}
    {name}.predict([{{...}}])   # same answer as modelport serve's POST /predict/{model.name}

Needs only numpy and onnxruntime. Every payload file is checked against its SHA-256 below when
this package is imported; a changed or missing file refuses the import.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: SHA-256 of every payload file, recorded when the wheel was built
DIGESTS = {listing}


class IntegrityError(ImportError):
    """A payload file of this package is not the one it was built with."""


def _verify() -> None:
    here = Path(__file__).resolve().parent
    for rel, expected in DIGESTS.items():
        path = here / rel
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            raise IntegrityError(
                f"{name}: payload file {{rel}} is missing; reinstall the wheel") from None
        if digest != expected:
            raise IntegrityError(
                f"{name}: payload file {{rel}} does not match its recorded SHA-256 (expected "
                f"{{expected[:12]}}…, got {{digest[:12]}}…); refusing to load a tampered model")


_verify()

from {name}._runtime import INFO, MODEL, SIGNATURE, VERSION, InputError, predict  # noqa: E402

__version__ = "{model.version or 0}"
__all__ = ["INFO", "MODEL", "SIGNATURE", "VERSION", "InputError", "IntegrityError", "predict"]
'''


def _metadata(name: str, version: str, source: ExportSource) -> str:
    requires = "".join(f"Requires-Dist: {r}\n" for r in RUNTIME_REQUIRES)
    return (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Summary: {source.model.name} version {source.version} as an embedded model "
            f"({source.provenance.line()})\nRequires-Python: >=3.10\n{requires}")


def _is_classifier(onnx_bytes: bytes) -> bool:
    import onnx

    from modelport.flavors.onnx import looks_like_classifier

    proto = onnx.load_model_from_string(onnx_bytes)
    return looks_like_classifier([o.name for o in proto.graph.output])


def _asset(name: str) -> str:
    return (resources.files("modelport.export") / "assets" / name).read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_wheel(built: BuiltWheel, folder: Path) -> Path:
    """Write the wheel into ``folder`` (created if needed); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / built.filename
    path.write_bytes(built.data)
    return path
