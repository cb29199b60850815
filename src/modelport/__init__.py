"""modelport: take a trained model out of the notebook and into production.

>>> import tempfile, modelport
>>> from sklearn.datasets import load_iris
>>> from sklearn.tree import DecisionTreeClassifier
>>> X, y = load_iris(return_X_y=True, as_frame=True)
>>> path = modelport.save(DecisionTreeClassifier(random_state=0).fit(X, y),
...                       tempfile.mkdtemp() + "/iris", example=X.head())
>>> modelport.load(str(path)).predict(X.head(2)).tolist()
[0, 0]
"""

from __future__ import annotations

from modelport.bundle.model import Model
from modelport.bundle.save import save
from modelport.bundle.signature import ColumnSpec, Signature
from modelport.core.batch import Batch, Result
from modelport.errors import ModelportError

__version__ = "0.1.0"


def load(path_or_ref: str, *, trusted: bool = False, registry: object | None = None) -> Model:
    """Load a bundle directory, or a registry reference (``name``, ``name:3``, ``name@alias``)."""
    from pathlib import Path

    from modelport.bundle.model import load_bundle

    path = Path(path_or_ref)
    if path.is_dir():
        return load_bundle(path, trusted=trusted)
    from modelport.registry import Registry

    reg = registry if isinstance(registry, Registry) else Registry()
    return reg.load(path_or_ref, trusted=trusted)


def feedback(prediction_id: str | None = None, **fields: object) -> int:
    """Record the truth about a logged prediction: ``modelport.feedback(pid, label="yes")``
    (or ``value=``, ``reward=``; ``entity_key=`` + ``at=``/``window=`` without an id). See
    :func:`modelport.log.feedback`."""
    from modelport.log import feedback as store_feedback

    return store_feedback(prediction_id, **fields)  # type: ignore[arg-type]


def __getattr__(name: str) -> object:
    if name == "Registry":  # imported lazily: SQLAlchemy is only needed for the registry
        from modelport.registry import Registry

        return Registry
    if name == "log":  # the prediction log (imports pyarrow datasets and DuckDB when read)
        import importlib

        return importlib.import_module("modelport.log")
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")


__all__ = [
    "Batch",
    "ColumnSpec",
    "Model",
    "ModelportError",
    "Registry",
    "Result",
    "Signature",
    "__version__",
    "feedback",
    "load",
    "save",
]
