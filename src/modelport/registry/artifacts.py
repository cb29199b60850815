"""``ArtifactStore``: bundle files in any fsspec store (a local folder, ``s3://``, ...).

Each registration uploads under a fresh prefix ``<root>/<name>/<uuid>/`` that nobody knows
about until the version row is committed, so a half-uploaded bundle is never visible.
Downloads land in a temporary folder and are renamed into the cache only when complete and
verified.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport.bundle.hashing import verify_tree
from modelport.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidReferenceError,
    ModelportError,
    StorageError,
)

_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


def check_relpath(rel: str) -> str:
    """A bundle file path: relative, POSIX, no ``..``, no NUL — safe to join under a prefix."""
    parts = rel.split("/") if isinstance(rel, str) else [""]
    if (not isinstance(rel, str) or "\x00" in rel or "\\" in rel
            or any(p in ("..", ".", "") for p in parts) or ":" in parts[0]):
        raise InvalidReferenceError(
            f"bundle file path {rel!r} is not a plain relative path; refusing to store it"
        )
    return rel


class ArtifactStore:
    """Bundle files under ``root``: a local path, ``file://`` or any fsspec URL.

    ``storage_options`` go to fsspec (for S3-compatible stores: ``endpoint_url``, ``key``,
    ``secret``, ...). Nothing is touched until the first upload or download.
    """

    def __init__(self, root: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.root = root
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None
        self._base = ""

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def owns(self, uri: str) -> bool:
        """Whether ``uri`` lives in a store of this kind (same protocol), so it can be read."""
        if self.is_local:
            return "://" not in uri or uri.startswith("file://")
        return uri.split("://", 1)[0] == self.root.split("://", 1)[0]

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            import fsspec

            if self.is_local:
                from fsspec.implementations.local import LocalFileSystem

                path = self.root.removeprefix("file://")
                self._fs = LocalFileSystem(auto_mkdir=True)
                self._base = Path(path).expanduser().absolute().as_posix()
            else:
                try:
                    self._fs, self._base = fsspec.core.url_to_fs(
                        self.root, **self.storage_options)
                except (ImportError, ValueError) as exc:
                    raise ConfigurationError(
                        f"cannot open the artifact store {self.root!r}: {exc}; for s3:// run "
                        "pip install 'modelport[s3]'"
                    ) from None
            self._base = self._base.rstrip("/")
        return self._fs, self._base

    def uri(self, key: str) -> str:
        """The URI recorded for ``key`` (a local absolute path, or ``protocol://...``)."""
        fs, base = self._filesystem()
        path = f"{base}/{key}"
        return path if self.is_local else fs.unstrip_protocol(path)

    def _path(self, uri: str) -> str:
        fs, _ = self._filesystem()
        return uri if self.is_local else fs._strip_protocol(uri)

    def upload(self, source: Path, files: Mapping[str, str], name: str,
               extra: Mapping[str, bytes] | None = None) -> str:
        """Copy ``files`` (relative paths under ``source``) and ``extra`` blobs to a new prefix.

        Returns the prefix URI. On failure the partial upload is removed (best effort).
        """
        fs, _ = self._filesystem()
        uri = self.uri(f"{name}/{uuid.uuid4().hex}")
        prefix = self._path(uri)
        try:
            with self._translated("upload to", uri, missing_is_error=True):
                for rel in files:
                    fs.put_file(str(source / check_relpath(rel)), f"{prefix}/{rel}")
                for rel, data in (extra or {}).items():
                    fs.pipe_file(f"{prefix}/{check_relpath(rel)}", data)
        except BaseException:
            self.delete(uri)
            raise
        return uri

    def download(self, uri: str, files: Mapping[str, str], target: Path, *, what: str) -> Path:
        """Download ``files`` into ``target`` (created atomically) and verify their hashes.

        An existing ``target`` is verified and reused; a damaged one is replaced. Raises
        ``IntegrityError`` naming the first missing or mismatching file.
        """
        if target.is_dir():
            try:
                verify_tree(target, files, what=what)
                return target
            except IntegrityError:
                shutil.rmtree(target, ignore_errors=True)
        fs, _ = self._filesystem()
        prefix = self._path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for rel in files:
                local = tmp / check_relpath(rel)
                local.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with self._translated("download from", uri):
                        fs.get_file(f"{prefix}/{rel}", str(local))
                except FileNotFoundError:
                    raise IntegrityError(
                        f"{what}: file {rel!r} is missing from the artifact store; the artifact "
                        "is incomplete"
                    ) from None
            verify_tree(tmp, files, what=what)
            try:
                os.replace(tmp, target)
            except OSError:  # another process finished the same download first
                shutil.rmtree(tmp, ignore_errors=True)
                verify_tree(target, files, what=what)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def uploads(self) -> dict[str, datetime]:
        """Every upload prefix URI in the store, with the time of its newest file."""
        fs, base = self._filesystem()
        with self._translated("list", self.root):
            try:
                found = fs.find(base, detail=True)
            except FileNotFoundError:
                return {}
        newest: dict[str, datetime] = {}
        for path, info in found.items():
            parts = path[len(base):].strip("/").split("/")
            if len(parts) < 3 or not _UPLOAD_ID.fullmatch(parts[1]):
                continue
            uri = self.uri(f"{parts[0]}/{parts[1]}")
            when = _modified(info)
            if uri not in newest or when > newest[uri]:
                newest[uri] = when
        return newest

    def delete(self, uri: str) -> None:
        """Remove everything under ``uri`` (best effort: used to clean up failed uploads)."""
        fs, _ = self._filesystem()
        with contextlib.suppress(Exception):  # cleanup must not hide the original error
            fs.rm(self._path(uri), recursive=True)

    @contextmanager
    def _translated(self, action: str, uri: str, *,
                    missing_is_error: bool = False) -> Iterator[None]:
        """fsspec / botocore errors become ``StorageError``.

        ``FileNotFoundError`` passes through for downloads (the caller names the missing file);
        on upload it means the bucket or folder itself is missing.
        """
        try:
            yield
        except ModelportError:
            raise
        except FileNotFoundError as exc:
            if not missing_is_error:
                raise
            raise StorageError(
                f"cannot {action} the artifact store at {uri}: {exc}; does the bucket or folder "
                "exist? (MODELPORT_ARTIFACTS)"
            ) from None
        except PermissionError as exc:
            raise StorageError(
                f"permission denied to {action} the artifact store at {uri}: {exc}; check the "
                "credentials in MODELPORT_STORAGE_OPTIONS"
            ) from None
        except Exception as exc:
            raise StorageError(
                f"could not {action} the artifact store at {uri}: {type(exc).__name__}: {exc}; "
                "check MODELPORT_ARTIFACTS and MODELPORT_STORAGE_OPTIONS (endpoint_url, key, "
                "secret)"
            ) from None


def _modified(info: Mapping[str, Any]) -> datetime:
    """Modification time from an fsspec ``info`` dict (local: ``mtime``; S3: ``LastModified``)."""
    value = info.get("LastModified", info.get("mtime", info.get("last_modified")))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)  # unknown age: treat as new, so it is never pruned early


__all__ = ["ArtifactStore", "check_relpath"]
