"""What every export and package starts from: one model version, loaded and described.

``ExportSource.open(ref, registry)`` resolves a registry reference (``churn``, ``churn:3``,
``churn@production``) or a bundle directory into the loaded :class:`~modelport.bundle.model.Model`,
its bundle folder and :class:`Provenance` — the line every generated file carries, saying which
modelport and which model version made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import NotFoundError

if TYPE_CHECKING:
    from modelport.bundle.model import Model
    from modelport.registry import Registry


def modelport_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelport")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


@dataclass(frozen=True)
class Provenance:
    """Which model version, made by which modelport, when."""

    model: str
    version: int | None
    modelport: str
    made_at: str

    @classmethod
    def of(cls, name: str, version: int | None) -> Provenance:
        made = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return cls(name, version, modelport_version(), made)

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}" if self.version is not None else self.model

    def line(self) -> str:
        """``made by modelport 0.1.0 from model churn version 3 at 2026-12-04T17:00:00Z``."""
        version = f"version {self.version}" if self.version is not None else "(unregistered bundle)"
        return (f"made by modelport {self.modelport} from model {self.model} {version} "
                f"at {self.made_at}")

    def labels(self) -> dict[str, str]:
        """Kubernetes / OCI label values (strings, no spaces)."""
        return {"model": self.model, "model-version": str(self.version or 0),
                "modelport-version": self.modelport}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "modelport": self.modelport,
                "made_at": self.made_at}


@dataclass
class ExportSource:
    """A loaded model version and the bundle folder it came from."""

    model: Model
    bundle_dir: Path
    provenance: Provenance

    @classmethod
    def open(cls, ref: str, registry: Registry | None = None, *,
             trusted: bool = False) -> ExportSource:
        """Load ``ref`` (a registry reference, or a bundle directory) with its files verified."""
        from modelport.bundle.model import load_bundle

        path = Path(ref)
        if (path / "modelport.yaml").is_file():
            model = load_bundle(path, trusted=trusted)
            return cls(model, path, Provenance.of(model.name, None))
        if registry is None:
            from modelport.registry import Registry

            registry = Registry()
        if path.is_dir():
            raise NotFoundError(f"{ref!r} is a folder but not a model bundle (no modelport.yaml)")
        model = registry.load(ref, trusted=trusted)
        assert model.path is not None
        return cls(model, model.path, Provenance.of(model.name, model.version))

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int | None:
        return self.model.version
