"""Writing generated files: a folder that appears complete or not at all, never over old work.

``write_tree(files, folder, force=...)`` writes every file into a temporary sibling folder and
renames it into place, so a crash leaves no half-written output. An existing folder is refused
unless ``force`` (the CLI's ``--force``), which replaces it as a whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from modelport.errors import ConflictError

#: a generated file: text, or bytes for binary payloads
FileContent = str | bytes


def check_free(folder: Path, *, force: bool, command: str) -> None:
    """Refuse an existing ``folder`` unless ``force``; ``command`` names the CLI to rerun."""
    if folder.exists() and not force:
        raise ConflictError(
            f"output {str(folder)!r} already exists; choose another --output, or rerun "
            f"'{command}' with --force to replace it")


def write_tree(files: Mapping[str, FileContent], folder: Path, *, force: bool, command: str,
               executable: frozenset[str] = frozenset()) -> Path:
    """Write ``files`` (relative path → content) as ``folder``, atomically."""
    check_free(folder, force=force, command=command)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for rel, content in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            os.chmod(path, 0o755 if rel in executable else 0o644)
        os.chmod(staging, 0o755)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def write_file(content: bytes, path: Path, *, force: bool, command: str) -> Path:
    """Write one file atomically (temporary file + rename), refusing to overwrite unless
    ``force``."""
    check_free(path, force=force, command=command)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_stream(files: Mapping[str, FileContent]) -> str:
    """Every text file one after the other, each under a ``# ---- path`` line (``--print``)."""
    parts = []
    for rel, content in files.items():
        if isinstance(content, bytes):
            parts.append(f"# ---- {rel} ({len(content)} bytes, binary: not shown)\n")
        else:
            parts.append(f"# ---- {rel}\n{content}" + ("" if content.endswith("\n") else "\n"))
    return "".join(parts)
