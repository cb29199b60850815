"""The ``modelport.yaml`` manifest: everything known about a bundle, in one small file.

Example::

    format: 1
    name: churn
    flavor: sklearn
    flavor_info: {file: model.skops, serialization: skops, model_input: dataframe}
    signature: {kind: columns, task: classification, inputs: [...], outputs: [...]}
    libraries: {python: 3.11.7, scikit-learn: 1.5.0, numpy: 2.0.0}
    created_at: '2026-11-22T08:40:00+00:00'
    metrics: {auc: 0.93}
    params: {}
    tags: {team: growth}
    reference: reference.json      # optional training-data profile (drift)
    example: example.parquet       # optional example rows (parity checks, docs)
    accelerated: {file: accelerated.onnx, check: accelerated-check.npz, ...}  # optional ONNX form
    files: {model.skops: <sha256>, reference.json: <sha256>, example.parquet: <sha256>}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelport.bundle.hashing import MANIFEST_NAME
from modelport.bundle.signature import Signature
from modelport.errors import IntegrityError, InvalidInputError, NotFoundError

FORMAT_VERSION = 1
#: libyaml's safe loader when available (30-145 ms faster per manifest than the Python one)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Manifest:
    name: str
    flavor: str
    signature: Signature
    flavor_info: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    example: str | None = None
    #: the stored ONNX form (see ``modelport.bundle.accelerated``), or ``{error: why none}``
    accelerated: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "flavor": self.flavor,
            "flavor_info": self.flavor_info,
            "signature": self.signature.to_dict(),
            "libraries": self.libraries,
            "created_at": self.created_at,
            "metrics": self.metrics,
            "params": self.params,
            "tags": self.tags,
            "reference": self.reference,
            "example": self.example,
            "accelerated": self.accelerated,
            "files": self.files,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or "flavor" not in data or "signature" not in data:
            raise InvalidInputError(
                f"{MANIFEST_NAME} is not a modelport manifest (needs 'flavor' and 'signature')"
            )
        if int(data.get("format", 1)) > FORMAT_VERSION:
            raise InvalidInputError(
                f"bundle format {data['format']} is newer than this modelport understands "
                f"({FORMAT_VERSION}); upgrade modelport"
            )
        return cls(
            name=str(data.get("name", "")),
            flavor=str(data["flavor"]),
            signature=Signature.from_dict(data["signature"]),
            flavor_info=dict(data.get("flavor_info") or {}),
            libraries={str(k): str(v) for k, v in (data.get("libraries") or {}).items()},
            created_at=str(data.get("created_at", "")),
            metrics=dict(data.get("metrics") or {}),
            params=dict(data.get("params") or {}),
            tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
            reference=data.get("reference"),
            example=data.get("example"),
            accelerated=dict(data["accelerated"]) if isinstance(
                data.get("accelerated"), dict) else None,
            files={str(k): str(v) for k, v in (data.get("files") or {}).items()},
        )

    def named_paths(self) -> list[tuple[str, str, bool]]:
        """Every path the manifest names: (where, path, is a directory)."""
        out: list[tuple[str, str, bool]] = []
        info = self.flavor_info
        if "file" in info:
            out.append(("flavor_info.file", info["file"], False))
        if "artifacts" in info:
            out.append(("flavor_info.artifacts", info["artifacts"], True))
        for key in ("file", "check"):
            if self.accelerated and key in self.accelerated:
                out.append((f"accelerated.{key}", self.accelerated[key], False))
        for where, value in (("reference", self.reference), ("example", self.example)):
            if value is not None:
                out.append((where, value, False))
        return out

    def check_paths(self, files: Mapping[str, str]) -> None:
        """Refuse a manifest naming a path that is absolute, leaves the bundle, or is not among
        the files whose SHA-256 is recorded (``files``): it would be opened unchecked."""
        for where, rel, directory in self.named_paths():
            if not _plain_relative(rel):
                raise IntegrityError(
                    f"{MANIFEST_NAME}: {where} {str(rel)[:200]!r} is not a relative path inside "
                    "the bundle; refusing this bundle")
            if not directory and rel not in files:  # a directory's files are listed one by one
                raise IntegrityError(
                    f"{MANIFEST_NAME}: {where} {rel!r} has no recorded SHA-256 in 'files'; "
                    "refusing to open a file outside the checked set")

    def dumps(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def write(self, directory: Path) -> None:
        (directory / MANIFEST_NAME).write_text(self.dumps(), encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise NotFoundError(f"no {MANIFEST_NAME} in {directory}; is this a model bundle?")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"{MANIFEST_NAME} is not valid YAML: {exc}") from None
        return cls.from_dict(data)


def _plain_relative(rel: object) -> bool:
    """A relative POSIX path without ``..``, ``.``, empty parts, backslashes, NUL or drive."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return False
    parts = rel.split("/")
    return not (any(p in ("..", ".", "") for p in parts) or ":" in parts[0])
