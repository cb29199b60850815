"""A bundle's stored ONNX form: converted and checked once when saved, re-checked at each load.

``modelport.save`` converts scikit-learn, XGBoost and LightGBM models to ONNX with
:func:`~modelport.flavors.convert.to_onnx` (accepted only when it matches the native model on
the example rows) and keeps the graph beside the native artifact, with the native model's own
answers on those rows::

    accelerated.onnx            the graph (plain probability tensors, no ZipMap)
    accelerated-check.npz       native labels / probabilities on the example rows, and on the
                                same rows with missing values when the native model takes them
    modelport.yaml              accelerated: {file, check, tool, reason, labels_from_proba,
                                              onnxruntime}   — or {error: why there is none}

Loading it with :func:`load_stored` needs ONNX Runtime only: neither the framework nor the
converter is imported (for scikit-learn through skops that alone takes seconds, more than
scoring a million rows). The graph is run on the example rows again and compared with the stored
native answers, so a different ONNX Runtime that changes results is caught without the native
model. Both files are covered by the bundle's SHA-256 list like every other file.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.core.batch import Batch, Result
from modelport.errors import ModelportError

if TYPE_CHECKING:
    from modelport.bundle.manifest import Manifest
    from modelport.flavors.onnx import OnnxPredictor

log = logging.getLogger("modelport.bundle")

ONNX_FILE = "accelerated.onnx"
CHECK_FILE = "accelerated-check.npz"
CONVERTIBLE = ("sklearn", "xgboost", "lightgbm")
#: the rows each stored answer set was computed on
_SETS = {"example": "example rows", "missing": "example rows with missing values"}


def attach(directory: Path, manifest: Manifest, *, trusted: bool) -> None:
    """Convert the model just saved in ``directory``; store its ONNX form, or why there is none.

    Sets ``manifest.accelerated``. Never raises for a model that cannot be converted: the bundle
    is complete without the ONNX form and servers then run the native model.
    """
    if manifest.flavor not in CONVERTIBLE:
        return
    if manifest.example is None:
        manifest.accelerated = {"error": "the bundle stores no example rows to check an ONNX "
                                         "conversion against; save it with example="}
        return
    from modelport.bundle.model import Model
    from modelport.flavors import get_flavor
    from modelport.flavors.base import version_of
    from modelport.flavors.convert import to_onnx

    predictor = get_flavor(manifest.flavor).load(directory, manifest.flavor_info,
                                                 manifest.signature, trusted=trusted)
    model = Model(manifest, predictor, path=directory)
    converted, reason = to_onnx(model)
    if converted is None:
        manifest.accelerated = {"error": reason}
        log.info("model %s stays native: %s", manifest.name, reason)
        return
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for key, batch in _check_sets(directory, manifest):
        try:
            _put(arrays, key, model.predict_batch(batch))
        except ModelportError:
            if key == "example":
                raise
            # the native model refuses missing values, and to_onnx compared nothing there
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    (directory / CHECK_FILE).write_bytes(buffer.getvalue())
    (directory / ONNX_FILE).write_bytes(converted.onnx_bytes)
    manifest.accelerated = {
        "file": ONNX_FILE, "check": CHECK_FILE, "reason": reason,
        "labels_from_proba": converted.labels_from_proba,
        "onnxruntime": version_of("onnxruntime"),
    }


def load_stored(manifest: Manifest, directory: Path, *, threads: int = 1
                ) -> tuple[OnnxPredictor | None, str]:
    """The bundle's stored ONNX form, checked again on its example rows; else ``None`` and why.

    The caller has verified the files' hashes (``load_bundle`` / ``verify_tree``).
    """
    info = manifest.accelerated or {}
    if "file" not in info:
        return None, str(info.get("error") or "the bundle stores no ONNX form")
    from modelport.flavors.base import version_of
    from modelport.flavors.convert import parity_problem
    from modelport.flavors.onnx import OnnxPredictor

    try:
        classes = manifest.signature.classes
        predictor = OnnxPredictor(directory / str(info["file"]), signature=manifest.signature,
                                  classes=list(classes) if classes is not None else None,
                                  threads=threads,
                                  labels_from_proba=bool(info.get("labels_from_proba")))
        with np.load(directory / str(info["check"]), allow_pickle=False) as stored:
            expected = {name: stored[name] for name in stored.files}
        checked: list[str] = []
        for key, batch in _check_sets(directory, manifest):
            if f"{key}_n" not in expected:
                continue
            problem = parity_problem(_get(expected, key), predictor.predict(batch))
            if problem:
                return None, (f"the stored ONNX form no longer matches the native model's "
                              f"answers on the {_SETS[key]} under onnxruntime "
                              f"{version_of('onnxruntime')}: {problem}")
            checked.append(_SETS[key])
    except ModelportError as exc:
        return None, f"the stored ONNX form cannot be used: {exc.message}"
    except (OSError, ValueError, KeyError) as exc:
        return None, f"the stored ONNX form cannot be read: {exc}"
    n_rows = int(expected["example_n"])
    return predictor, (f"stored ONNX form ({info.get('reason', 'converted at save')}); "
                       f"re-checked on {n_rows} {' and '.join(checked)}")


def has_stored(manifest: Manifest) -> bool:
    return "file" in (manifest.accelerated or {})


def _check_sets(directory: Path, manifest: Manifest) -> list[tuple[str, Batch]]:
    import pyarrow.parquet as pq

    from modelport.flavors.convert import with_missing_values

    assert manifest.example is not None
    # ParquetFile, not read_table: that goes through pyarrow.dataset, which imports pandas
    # (half a second — more than the rest of loading)
    example = manifest.signature.coerce(pq.ParquetFile(directory / manifest.example).read())
    sets = [("example", example)]
    missing = with_missing_values(example, manifest.signature)
    if missing is not None:
        sets.append(("missing", missing))
    return sets


def _put(arrays: dict[str, np.ndarray[Any, Any]], key: str, result: Result) -> None:
    arrays[f"{key}_n"] = np.asarray(result.n_rows)
    if result.labels is not None:
        labels = np.asarray(result.labels)
        if labels.dtype == object:  # strings: a fixed-width array loads without pickle
            labels = np.asarray(labels.tolist())
        arrays[f"{key}_labels"] = labels
    if result.probabilities is not None:
        arrays[f"{key}_probabilities"] = np.asarray(result.probabilities)


def _get(arrays: dict[str, np.ndarray[Any, Any]], key: str) -> Result:
    labels = arrays.get(f"{key}_labels")
    if labels is not None and labels.dtype.kind == "U":
        labels = labels.astype(object)
    return Result(n_rows=int(arrays[f"{key}_n"]), labels=labels,
                  probabilities=arrays.get(f"{key}_probabilities"))
