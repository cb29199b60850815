"""The Flavor protocol: how one framework's models are saved, loaded and asked to predict.

A flavor is a small object with four methods. To support a new framework, subclass ``Flavor``
and register it in :mod:`modelport.flavors`:

* ``handles(model)`` — is this in-memory object ours? Called by ``modelport.save`` to pick a
  flavor; must not import heavy frameworks unless the object comes from them.
* ``infer_signature(model)`` — optional; inputs read from the model when no example is given.
* ``handles_missing(model)`` — optional; ``True`` when the model takes NaN as "missing".
* ``describe(model)`` — task (classification / regression / other), class labels, and the
  framework's version, used to complete the signature and the manifest.
* ``save(model, directory, ...)`` — write artifact file(s) into ``directory``; return the
  ``flavor_info`` dict stored in the manifest (file names, serialization, input format).
* ``load(directory, info, signature, trusted=...)`` — return a :class:`Predictor`. Called only
  after every file's SHA-256 has been verified.
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modelport.bundle.signature import Signature, Task
from modelport.core.batch import Array, Batch, Result
from modelport.errors import ModelLoadError, UnsupportedModelError, UntrustedArtifactError


@dataclass(frozen=True)
class Description:
    """What a flavor can tell about a model object before it is saved."""

    task: Task
    classes: tuple[Any, ...] | None
    libraries: dict[str, str]


class Predictor(ABC):
    """A loaded model, ready to predict on batches that already match its signature.

    ``native`` is the framework object (a fitted estimator, an ``InferenceSession``, …).
    """

    native: Any
    can_learn: ClassVar[bool] = False

    @abstractmethod
    def predict(self, batch: Batch) -> Result:
        """Predict every row of ``batch``; return labels (and probabilities when available)."""

    def learn(self, batch: Batch, targets: Array) -> None:
        """Update the model incrementally with labelled rows (online flavors only)."""
        raise UnsupportedModelError(f"{type(self).__name__} cannot learn incrementally")


class Flavor(ABC):
    name: ClassVar[str]
    #: Optional dependency that provides the framework, named as pip knows it.
    requirement: ClassVar[str | None] = None

    @abstractmethod
    def handles(self, model: Any) -> bool: ...

    @abstractmethod
    def describe(self, model: Any) -> Description: ...

    def infer_signature(self, model: Any) -> Signature | None:
        """A signature read from the model itself (ONNX graphs have one); ``None`` if unknown."""
        return None

    def handles_missing(self, model: Any) -> bool:
        """Whether the model predicts on rows with missing values (NaN) by design, as tree
        ensembles that learn where missing values go do. ``modelport.save`` then declares its
        numeric inputs nullable, so ``null`` reaches the model as NaN instead of a 400."""
        return False

    @abstractmethod
    def save(
        self, model: Any, directory: Path, *, signature: Signature, trusted: bool
    ) -> dict[str, Any]: ...

    @abstractmethod
    def load(
        self, directory: Path, info: dict[str, Any], signature: Signature, *, trusted: bool
    ) -> Predictor: ...


def comes_from(model: Any, *packages: str) -> bool:
    """True when the object's class (or a base class) is defined in one of ``packages``."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in packages:
            return True
    return False


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def require(module: str, extra: str) -> Any:
    """Import an optional framework, or explain which extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnsupportedModelError(
            f"this model needs {module!r}, which is not installed; "
            f"run: pip install 'modelport[{extra}]'"
        ) from None


def load_skops(path: Path, *, is_safe: Callable[[str], bool], trusted: bool, allowed: str,
               framework: str) -> Any:
    """Load a skops file, refusing types that ``is_safe`` rejects unless the caller trusts it.

    ``allowed`` names the safe families in the refusal ("scikit-learn/NumPy/SciPy");
    ``framework`` names the model in a load failure ("scikit-learn").
    """
    import skops.io

    types = skops.io.get_untrusted_types(file=path)
    unsafe = [t for t in types if not is_safe(t)]
    if unsafe and not trusted:
        raise UntrustedArtifactError(
            f"this model contains types outside {allowed} ({unsafe[:3]}); load it with "
            "trusted=True (CLI: --trusted) only if you trust its source"
        )
    try:
        return skops.io.load(path, trusted=types)
    except Exception as exc:
        raise ModelLoadError(f"{framework} model could not be loaded: {exc}") from None
