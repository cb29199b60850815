"""SHA-256 of bundle files, and verification before anything is deserialized."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from modelport.errors import IntegrityError

MANIFEST_NAME = "modelport.yaml"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_tree(directory: Path) -> dict[str, str]:
    """SHA-256 of every file below ``directory`` except the manifest, keyed by POSIX path."""
    out: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME:
            out[path.relative_to(directory).as_posix()] = sha256_file(path)
    return out


def verify_tree(directory: Path, expected: Mapping[str, str], *, what: str) -> None:
    """Raise ``IntegrityError`` unless ``directory`` holds exactly ``expected`` files and hashes.

    Called before any artifact is opened by a framework, so a tampered file is never
    deserialized.
    """
    for rel, digest in expected.items():
        path = directory / rel
        if not path.is_file():
            raise IntegrityError(f"{what}: file {rel!r} is missing; the artifact is incomplete")
        actual = sha256_file(path)
        if actual != digest:
            raise IntegrityError(
                f"{what}: file {rel!r} does not match its recorded SHA-256 "
                f"(expected {digest[:12]}…, found {actual[:12]}…); refusing to load it"
            )
