"""``Registry``: named models with numbered immutable versions, aliases, tags and an audit log.

>>> import tempfile
>>> from modelport.registry import Registry
>>> reg = Registry(f"sqlite:///{tempfile.mkdtemp()}/registry.db", tempfile.mkdtemp())
>>> reg.list_models()
[]
>>> reg.close()
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from modelport.bundle.hashing import MANIFEST_NAME, sha256_bytes, verify_tree
from modelport.bundle.manifest import Manifest
from modelport.bundle.model import Model, load_bundle
from modelport.errors import InvalidReferenceError, NotFoundError
from modelport.registry.artifacts import ArtifactStore, check_relpath
from modelport.registry.metadata import Clock, MetadataStore
from modelport.registry.records import Actor, AuditEntry, ModelInfo, ModelVersion
from modelport.registry.refs import (
    LATEST,
    MAX_VERSION,
    check_alias,
    check_name,
    check_tag,
    check_version_number,
    parse_ref,
)
from modelport.settings import Settings

if TYPE_CHECKING:
    from modelport.registry.signing import SignatureVerifier

RefLike = str | ModelVersion


@dataclass(frozen=True)
class _Bundle:
    """A bundle directory read and checked for registering: what would be stored."""

    source: Path
    manifest: Manifest
    name: str
    tags: dict[str, str]
    payload: dict[str, str]
    manifest_bytes: bytes
    files: dict[str, str]


class Registry:
    """Models by name: register bundles, resolve references, fetch and load verified artifacts.

    ``url`` is the metadata database (``sqlite:///path`` or ``postgresql://user@host/db``),
    ``artifacts`` where bundle files go (a local folder, ``file://``, ``s3://bucket/prefix`` with
    ``storage_options``). Anything not given comes from ``settings`` (default: the
    ``MODELPORT_*`` environment, embedded under ``./.modelport``). The constructor only stores;
    the database is opened, and its schema upgraded, on first use.

    References: ``name`` (the highest non-archived version), ``name:3``, ``name@production``.
    """

    def __init__(
        self,
        url: str | None = None,
        artifacts: str | os.PathLike[str] | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        actor: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        settings = settings or Settings.from_env()
        self.settings = settings
        self.url = url or settings.registry_url
        self.artifacts = str(artifacts) if artifacts is not None else settings.artifacts
        self.storage_options = dict(
            storage_options if storage_options is not None else settings.storage_options)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else settings.cache_dir
        self._actor = actor
        self._meta = MetadataStore(self.url, clock=clock)
        self._store = ArtifactStore(self.artifacts, storage_options=self.storage_options)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Registry:
        return cls(settings=settings, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------

    def engine(self) -> Engine:
        """The opened database engine, for components that keep their own tables there."""
        return self._meta.open()

    def close(self) -> None:
        self._meta.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        from modelport.registry.metadata import safe_url

        return f"Registry({safe_url(self.url)!r}, artifacts={self.artifacts!r})"

    # -- registering -----------------------------------------------------------------------

    def register(
        self,
        bundle_dir: str | os.PathLike[str],
        name: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        actor: str | None = None,
        nullable: Sequence[str] | None = None,
        if_changed: bool = False,
        sign_with: str | os.PathLike[str] | None = None,
        version: int | None = None,
    ) -> ModelVersion:
        """Publish a bundle directory as the next version of ``name`` (default: its manifest's).

        Every file is checked against the manifest's SHA-256 first, then uploaded under a fresh
        prefix; the version becomes visible only when its database row commits. ``nullable``
        declares more input columns nullable in the registered manifest (the bundle directory
        is not changed). With ``if_changed``, a bundle identical to an existing version of the
        model (every file, manifest included) is not registered again: that version is
        returned (see :meth:`identical_version`). ``sign_with``: an Ed25519 private key (PEM)
        signing the version's files (:mod:`modelport.registry.signing`). ``version``: publish
        as exactly this number (e.g. to mirror a version from another registry, as container
        images do), refused with :class:`~modelport.errors.ConflictError` when the model
        already has it; later registrations without it continue above the highest number.
        """
        if version is not None:
            check_version_number(version)
        bundle = self._prepare(bundle_dir, name, tags, nullable)
        if sign_with is not None:
            from modelport.registry.signing import SIGNATURE_TAG, sign

            bundle.tags[SIGNATURE_TAG] = sign(bundle.name, bundle.files, Path(sign_with))
        if if_changed:
            same = self._identical(bundle.name, bundle.files)
            if same is not None:
                return same
        uri = self._store.upload(bundle.source, bundle.payload, bundle.name,
                                 extra={MANIFEST_NAME: bundle.manifest_bytes})
        try:
            return self._meta.add_version(
                bundle.name, artifact_uri=uri, flavor=bundle.manifest.flavor,
                manifest=bundle.manifest.to_dict(), files=bundle.files, tags=bundle.tags,
                description=description, actor=self._who(actor), version=version)
        except BaseException:
            self._store.delete(uri)
            raise

    def identical_version(
        self,
        bundle_dir: str | os.PathLike[str],
        name: str | None = None,
        *,
        nullable: Sequence[str] | None = None,
    ) -> ModelVersion | None:
        """The existing version of the model whose files (manifest included) are exactly what
        registering ``bundle_dir`` would store, or ``None``."""
        bundle = self._prepare(bundle_dir, name, None, nullable)
        return self._identical(bundle.name, bundle.files)

    def _identical(self, name: str, files: Mapping[str, str]) -> ModelVersion | None:
        try:
            versions = self._meta.list_versions(name, include_archived=True)
        except NotFoundError:
            return None
        return next((v for v in reversed(versions) if dict(v.files) == dict(files)), None)

    def _prepare(self, bundle_dir: str | os.PathLike[str], name: str | None,
                 tags: Mapping[str, str] | None, nullable: Sequence[str] | None) -> _Bundle:
        source = Path(bundle_dir)
        manifest = Manifest.read(source)
        name = check_name(name if name is not None else (manifest.name or source.name))
        version_tags = {**manifest.tags, **{str(k): str(v) for k, v in (tags or {}).items()}}
        for key, value in version_tags.items():
            check_tag(key, value)
        payload = {check_relpath(rel): digest for rel, digest in manifest.files.items()
                   if rel != MANIFEST_NAME}
        verify_tree(source, payload, what=f"bundle {source.name}")
        manifest.check_paths(payload)
        declared = manifest.signature.with_nullable(list(nullable)) if nullable else None
        if manifest.name == name and (declared is None or declared == manifest.signature):
            manifest_bytes = (source / MANIFEST_NAME).read_bytes()
        else:
            manifest.name = name
            if declared is not None:
                manifest.signature = declared
            manifest_bytes = manifest.dumps().encode("utf-8")
        files = {**payload, MANIFEST_NAME: sha256_bytes(manifest_bytes)}
        return _Bundle(source, manifest, name, version_tags, payload, manifest_bytes, files)

    def register_model(
        self,
        model: Any,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        actor: str | None = None,
        **save_kwargs: Any,
    ) -> ModelVersion:
        """Save ``model`` with ``modelport.save(..., **save_kwargs)`` and register the bundle."""
        from modelport.bundle.save import save

        name = check_name(name)
        with tempfile.TemporaryDirectory(prefix="modelport-register-") as tmp:
            bundle = save(model, Path(tmp) / name, name=name, **save_kwargs)
            return self.register(bundle, name, tags=tags, description=description, actor=actor)

    # -- reading ---------------------------------------------------------------------------

    def list_models(self, *, include_archived: bool = False) -> list[ModelInfo]:
        return self._meta.list_models(include_archived=include_archived)

    def get_model(self, name: str) -> ModelInfo:
        return self._meta.get_model(check_name(name))

    def list_versions(self, name: str, *, include_archived: bool = False) -> list[ModelVersion]:
        return self._meta.list_versions(check_name(name), include_archived=include_archived)

    def resolve(self, ref: RefLike) -> ModelVersion:
        """The version a reference names (``name``, ``name:3``, ``name@alias``)."""
        if isinstance(ref, ModelVersion):
            return ref
        return self._meta.resolve(parse_ref(ref))

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` for the model (``latest`` is implicit and not listed)."""
        return self._meta.aliases(check_name(name))

    def audit(self, name: str | None = None, *, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` changes, newest first; only those of ``name`` if given."""
        return self._meta.audit(check_name(name) if name is not None else None, limit=limit)

    def record_audit(self, action: str, details: dict[str, Any], *,
                     actor: str | None = None) -> None:
        """Append an audit entry for an action taken outside the registry (e.g. a server's
        admin route: ``actor`` is then the caller's key name)."""
        self._meta.record(self._who(actor), action, details)

    def state_token(self) -> str:
        """Changes whenever anything in the registry changes; one cheap query to poll."""
        return self._meta.state_token()

    # -- changing --------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int | str | None = None, *,
                  actor: str | None = None) -> ModelVersion:
        """Point ``alias`` at a version (moving it if it exists) and return that version.

        ``version`` is a number or another alias of the same model
        (``set_alias("churn", "production", "staging")``); ``name`` may instead carry it
        (``set_alias("churn:3", "production")``).
        """
        alias = check_alias(alias, settable=True)
        target_name, number = self._target(name, version)
        if number is None:
            raise InvalidReferenceError(
                f"alias {alias!r} needs a version to point at: 'modelport alias set "
                f"{target_name} {alias} VERSION' (Python: set_alias({target_name!r}, {alias!r}, "
                "3))")
        self._meta.set_alias(target_name, alias, number, actor=self._who(actor))
        return self._meta.resolve(parse_ref(f"{target_name}@{alias}"))

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        self._meta.delete_alias(check_name(name), check_alias(alias, settable=True),
                                actor=self._who(actor))

    def set_tag(self, ref: str, key: str, value: str, *, version: int | None = None,
                actor: str | None = None) -> None:
        """Tag a version (``"churn:3"`` or ``version=3``), or the model (a bare name)."""
        check_tag(key, value)
        name, number = self._target(ref, version)
        self._meta.set_tag(name, number, key, value, actor=self._who(actor))

    def update_tags(self, ref: str, changes: Mapping[str, str | None], *,
                    version: int | None = None, actor: str | None = None) -> None:
        """Set tags (``{key: value}``) and delete them (``{key: None}``) in one change: every
        key is checked first, and a deletion of a missing tag changes nothing at all."""
        for key, value in changes.items():
            check_tag(key, value)
        name, number = self._target(ref, version)
        self._meta.set_tags(name, number, dict(changes), actor=self._who(actor))

    def delete_tag(self, ref: str, key: str, *, version: int | None = None,
                   actor: str | None = None) -> None:
        check_tag(key)
        name, number = self._target(ref, version)
        self._meta.set_tag(name, number, key, None, actor=self._who(actor))

    def archive(self, ref: str, version: int | None = None, *,
                actor: str | None = None) -> None:
        """Archive a version (``"churn:3"`` or ``version=3``), or the whole model (bare name).

        Archived versions keep their artifacts and still load when named explicitly
        (``churn:3``), but no alias can point to them and ``churn`` skips them.
        """
        name, number = self._target(ref, version)
        self._meta.set_archived(name, number, True, actor=self._who(actor))

    def unarchive(self, ref: str, version: int | None = None, *,
                  actor: str | None = None) -> None:
        name, number = self._target(ref, version)
        self._meta.set_archived(name, number, False, actor=self._who(actor))

    # -- artifacts -------------------------------------------------------------------------

    def fetch(self, ref: RefLike) -> Path:
        """A local directory holding the version's bundle, every file verified.

        Files are checked against the SHA-256 recorded in the registry database (not the
        downloaded manifest) on every call; a tampered or incomplete artifact raises
        ``IntegrityError`` naming the file.
        """
        mv = self.resolve(ref)
        digest = hashlib.sha256(json.dumps(mv.files, sort_keys=True).encode()).hexdigest()
        target = self.cache_dir / mv.name / f"{mv.version}-{digest[:12]}"
        store = self._store if self._store.owns(mv.artifact_uri) else ArtifactStore(
            mv.artifact_uri, storage_options=self.storage_options)
        return store.download(mv.artifact_uri, mv.files, target, what=f"model {mv.ref}")

    def load(self, ref: RefLike, *, trusted: bool = False, lazy: bool = False,
             verifier: SignatureVerifier | None = None) -> Model:
        """Fetch, verify, then deserialize: a ``Model`` ready to predict.

        ``lazy``: deserialize the native artifact only when first needed (see ``load_bundle``).
        ``verifier``: check the version's signature first (:mod:`modelport.registry.signing`).
        """
        mv = self.resolve(ref)
        if verifier is not None:
            verifier.check(mv)
        path = self.fetch(mv)
        return load_bundle(path, trusted=trusted, expected_files=mv.files, version=mv.version,
                           lazy=lazy)

    def prune_uploads(self, *, older_than: timedelta = timedelta(hours=1),
                      actor: str | None = None) -> list[str]:
        """Delete uploads no version refers to (left by registrations that crashed).

        Only uploads whose newest file is older than ``older_than`` are removed, so a
        registration still in flight (uploaded, not yet committed) is left alone. Returns the
        deleted URIs; the deletion is recorded in the audit log. The artifact root must belong
        to this registry alone: uploads of another registry sharing it would look orphaned.
        """
        cutoff = datetime.now(UTC) - older_than
        uploads = self._store.uploads()
        referenced = self._meta.artifact_uris()
        stale = sorted(uri for uri, when in uploads.items()
                       if uri not in referenced and when < cutoff)
        for uri in stale:
            self._store.delete(uri)
        if stale:
            self._meta.record(self._who(actor), "prune_uploads", {"deleted": stale})
        return stale

    # -- helpers ---------------------------------------------------------------------------

    def _who(self, actor: str | None) -> Actor:
        user = actor or self._actor
        if not user:
            try:
                user = getpass.getuser()
            except (OSError, KeyError):
                user = "unknown"
        return Actor(user=user, host=socket.gethostname())

    def _target(self, ref: str, version: int | str | None) -> tuple[str, int | None]:
        """(name, version or None) from a bare name plus ``version``, or a full reference."""
        if isinstance(ref, str) and (":" in ref or "@" in ref):
            if version is not None:
                raise InvalidReferenceError(
                    f"{ref!r} already names a version; do not pass version= as well")
            mv = self.resolve(ref)
            return mv.name, mv.version
        name = check_name(ref)
        if version is None or isinstance(version, int):
            if isinstance(version, int) and (isinstance(version, bool)
                                             or not 1 <= version <= MAX_VERSION):
                raise InvalidReferenceError(
                    f"version must be a positive integer up to {MAX_VERSION}, not {version!r}")
            return name, version
        if version.isascii() and version.isdigit():
            return self._target(name, int(version) if len(version) <= 10 else MAX_VERSION + 1)
        if version == LATEST:
            return name, self.resolve(name).version
        return name, self.resolve(f"{name}@{check_alias(version)}").version


__all__ = ["Registry"]
