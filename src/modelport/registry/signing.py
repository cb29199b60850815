"""Artifact signatures: a version signed at registration, verified before it is loaded.

The signature (Ed25519) covers the model's name and the SHA-256 of every file of the version
(manifest included) — the digests the registry database records and every load checks the bytes
against — so a signed version cannot be swapped for other files, and a signature cannot be
moved to another model. It is kept in the version's tag ``modelport.signature``
(``ed25519:<key id>:<base64>``).

Keys are ordinary PEM files (``openssl genpkey -algorithm ed25519 -out signing.pem`` and
``openssl pkey -in signing.pem -pubout -out signing.pub.pem``)::

    modelport models register ./bundle --sign-key signing.pem
    modelport serve churn --verify-key signing.pub.pem --require-signatures
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from modelport.errors import ConfigurationError, IntegrityError
from modelport.registry.records import ModelVersion

log = logging.getLogger("modelport.registry")

SIGNATURE_TAG = "modelport.signature"


def signed_bytes(name: str, files: Mapping[str, str]) -> bytes:
    """What a signature covers: the name and every file's digest, canonical JSON."""
    return json.dumps({"name": name, "files": dict(sorted(files.items()))}, sort_keys=True,
                      separators=(",", ":")).encode()


def _key_id(public_bytes: bytes) -> str:
    return hashlib.sha256(public_bytes).hexdigest()[:16]


def sign(name: str, files: Mapping[str, str], private_key: str | Path) -> str:
    """The tag value signing ``files`` of model ``name`` with the Ed25519 key in a PEM file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(private_key).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"--sign-key {str(private_key)!r} is not a readable unencrypted PEM private key "
            f"({exc}); make one with 'openssl genpkey -algorithm ed25519 -out signing.pem'"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"--sign-key {str(private_key)!r}: use an Ed25519 key")
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    signature = key.sign(signed_bytes(name, files))
    return f"ed25519:{_key_id(public)}:{base64.b64encode(signature).decode()}"


class SignatureVerifier:
    """Checks a version's signature against trusted public keys before it is loaded.

    ``required``: refuse unsigned versions too (strict mode); otherwise an unsigned version
    loads with a warning, and a version with a bad signature is always refused.
    """

    def __init__(self, public_keys: Iterable[str | Path], *, required: bool = False) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self.required = required
        self._keys: dict[str, Ed25519PublicKey] = {}
        for path in public_keys:
            try:
                key = serialization.load_pem_public_key(Path(path).read_bytes())
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"--verify-key {str(path)!r} is not a readable PEM public key ({exc})"
                ) from None
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigurationError(f"--verify-key {str(path)!r}: use an Ed25519 key")
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self._keys[_key_id(raw)] = key
        if required and not self._keys:
            raise ConfigurationError("--require-signatures needs at least one --verify-key")

    def check(self, version: ModelVersion) -> None:
        """Raise ``IntegrityError`` unless ``version`` may be loaded."""
        from cryptography.exceptions import InvalidSignature

        what = f"{version.name}:{version.version}"
        tag = version.tags.get(SIGNATURE_TAG)
        if tag is None:
            if self.required:
                raise IntegrityError(
                    f"{what} is not signed and this server requires signatures; register it "
                    "with 'modelport models register BUNDLE --sign-key KEY'")
            log.warning("%s is not signed; loading it anyway (no --require-signatures)", what)
            return
        kind, _, rest = tag.partition(":")
        key_id, _, encoded = rest.partition(":")
        key = self._keys.get(key_id)
        if kind != "ed25519" or key is None:
            raise IntegrityError(
                f"{what} is signed by a key this server does not trust (key id {key_id[:16]!r});"
                " add its public key with --verify-key")
        try:
            key.verify(base64.b64decode(encoded, validate=True),
                       signed_bytes(version.name, version.files))
        except (InvalidSignature, ValueError):
            raise IntegrityError(
                f"{what}: its signature does not match its files; refusing to load it"
            ) from None


__all__ = ["SIGNATURE_TAG", "SignatureVerifier", "sign", "signed_bytes"]
