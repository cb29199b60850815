"""What the registry answers with: plain, immutable records read from its database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a named model.

    ``files`` maps every file of the bundle (``modelport.yaml`` included) to the SHA-256 recorded
    when the version was registered; downloads are checked against it before anything is
    deserialized. ``tags`` and ``archived`` are the only things that change after registration.
    """

    name: str
    version: int
    flavor: str
    artifact_uri: str
    files: dict[str, str] = field(hash=False)
    manifest: dict[str, Any] = field(hash=False)
    created_at: datetime
    created_by: str
    tags: dict[str, str] = field(hash=False)
    aliases: tuple[str, ...] = ()
    archived: bool = False

    @property
    def ref(self) -> str:
        """The reference that names exactly this version, such as ``churn:3``."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelInfo:
    """A named model: its versions are listed with ``Registry.list_versions``."""

    name: str
    created_at: datetime
    description: str
    archived: bool
    tags: dict[str, str] = field(hash=False)
    latest_version: int | None = None
    version_count: int = 0
    aliases: dict[str, int] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class AuditEntry:
    """One change to the registry: what was done, when, by whom and from which host."""

    id: int
    at: datetime
    actor: str
    host: str
    action: str
    name: str | None
    version: int | None
    details: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Actor:
    """Who makes a change, recorded in the audit log."""

    user: str
    host: str


__all__ = ["Actor", "AuditEntry", "ModelInfo", "ModelVersion"]
