"""``ConvertedModelCache``: ONNX forms of bundles, kept so that scheduled runs convert once.

Converting a 100-tree ensemble and checking its parity costs seconds (importing the converter
alone takes about two) — more than scoring a million rows under ONNX Runtime. A batch job that
runs every hour on the same model version would pay it every time. The cache keys a converted
model by the SHA-256 of every file of its bundle and the versions of the converter and the
runtime, so a different artifact or library never reuses a conversion checked against another.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.model import Model
from modelport.flavors.base import version_of

_TOOLS = ("onnxruntime", "skl2onnx", "onnxmltools", "scikit-learn", "xgboost-cpu", "lightgbm")


class ConvertedModelCache:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def key(self, model: Model) -> str:
        import modelport

        identity = {"files": dict(sorted(model.manifest.files.items())),
                    "flavor": model.flavor, "modelport": modelport.__version__,
                    "tools": {t: version_of(t) for t in _TOOLS}}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def load(self, model: Model) -> tuple[Any, str] | None:
        """The cached ONNX predictor for ``model`` and why it is trusted, or ``None``."""
        from modelport.errors import ModelportError
        from modelport.flavors.onnx import OnnxPredictor

        key = self.key(model)
        graph, meta_file = self.directory / f"{key}.onnx", self.directory / f"{key}.json"
        try:
            meta = json.loads(meta_file.read_text())
            data = graph.read_bytes()
        except (OSError, ValueError):
            return None
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            return None
        try:
            predictor = OnnxPredictor(data, signature=model.signature, classes=meta["classes"],
                                      labels_from_proba=bool(meta["labels_from_proba"]))
        except ModelportError:
            return None
        return predictor, f"{meta['reason']} (conversion cached)"

    def load_bundle(self, directory: str | os.PathLike[str], *,
                    expected_files: dict[str, str] | None = None,
                    version: int | None = None) -> tuple[Model, str] | None:
        """The bundle as a model whose predictor is its cached ONNX form, or ``None``.

        Every file's SHA-256 is verified as ``load_bundle`` would, but the native artifact is
        never deserialized: with a cached conversion, importing the framework (seconds for
        scikit-learn through skops) is not needed at all.
        """
        from modelport.bundle.hashing import verify_tree
        from modelport.bundle.manifest import Manifest

        path = Path(directory)
        manifest = Manifest.read(path)
        stub = Model(manifest, predictor=None, path=path, version=version)
        if not (self.directory / f"{self.key(stub)}.json").exists():
            return None
        files = dict(expected_files) if expected_files is not None else manifest.files
        verify_tree(path, files, what=f"model {manifest.name or path.name}")
        hit = self.load(stub)
        if hit is None:
            return None
        predictor, reason = hit
        return Model(manifest, predictor, path=path, version=version), reason

    def save(self, model: Model, predictor: Any, reason: str) -> None:
        key = self.key(model)
        data: bytes = predictor.onnx_bytes
        classes = None if predictor.classes is None else [
            c.item() if isinstance(c, np.generic) else c for c in predictor.classes]
        meta = {"sha256": hashlib.sha256(data).hexdigest(), "classes": classes,
                "labels_from_proba": predictor.labels_from_proba,
                "reason": reason, "model": model.ref}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for name, content in ((f"{key}.onnx", data),
                                  (f"{key}.json", json.dumps(meta).encode())):
                tmp = self.directory / f".{name}.{os.getpid()}.tmp"
                tmp.write_bytes(content)
                tmp.replace(self.directory / name)
        except OSError:
            return  # a cache that cannot be written only costs the next run a conversion
