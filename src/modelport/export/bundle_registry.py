"""``BundleRegistry``: one bundle folder answering as a read-only registry of one version.

Packaged servers that carry their model (a Lambda function) have no registry database to ask;
the inference service needs only ``resolve`` and ``load`` of one version, which this answers
from the folder, under the model's own name and version number::

    registry = BundleRegistry(Path("model"), name="churn", version=3)
    registry.resolve("churn").ref        # 'churn:3'

Every file is checked against the manifest's SHA-256 list when the model loads.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport.bundle.manifest import Manifest
from modelport.bundle.model import Model, load_bundle
from modelport.errors import NotFoundError
from modelport.registry.records import ModelVersion
from modelport.registry.refs import parse_ref

log = logging.getLogger("modelport.export")


class BundleRegistry:
    """A registry of exactly one model version, read from a bundle folder."""

    def __init__(self, directory: Path, *, name: str, version: int) -> None:
        self.directory = directory
        self.name = name
        self.version = version
        self.url = directory.as_uri()

    def resolve(self, ref: Any) -> ModelVersion:
        parsed = parse_ref(str(ref))
        if parsed.name != self.name or (parsed.version not in (None, self.version)):
            raise NotFoundError(f"this package serves {self.name}:{self.version} only, not {ref}")
        manifest = Manifest.read(self.directory)
        return ModelVersion(
            name=self.name, version=self.version, flavor=manifest.flavor,
            artifact_uri=self.directory.as_uri(), files=dict(manifest.files),
            manifest=manifest.to_dict(), created_at=datetime.now(UTC), created_by="package",
            tags={})

    def load(self, ref: Any, *, trusted: bool = False, lazy: bool = False,
             verifier: Any = None) -> Model:
        """As :meth:`Registry.load <modelport.registry.Registry.load>`: the version's
        signature is checked by ``verifier`` when one is given, then every file's SHA-256."""
        version = self.resolve(ref)
        if verifier is not None:
            verifier.check(version)
        return load_bundle(self.directory, trusted=trusted, version=self.version, lazy=lazy)

    def engine(self) -> Any:
        """No database: endpoints (traffic policies over versions) need a registry."""
        raise NotFoundError("a packaged model serves one version and has no endpoints")

    def state_token(self) -> str:
        return f"{self.name}:{self.version}"

    def record_audit(self, action: str, details: dict[str, Any], *,
                     actor: str | None = None) -> None:
        log.info("admin action %s by %s: %s (not recorded: packaged model)", action, actor,
                 details)

    def close(self) -> None:
        """Nothing to release."""
