"""API keys: created, stored hashed, checked in constant time, revoked.

A key is ``mp_<id>_<secret>``: a 12-hex-digit id (for lookup, shown by ``modelport auth list``)
and 256 random bits (``secrets.token_urlsafe(32)``). Only the SHA-256 of the secret is stored (a
slow password hash buys nothing for 256 random bits), and a presented secret is compared with
``hmac.compare_digest``. Keys live in the registry database (table ``modelport_api_keys``) or,
for simple setups, in a JSON file (``--keys-file``); both are :class:`KeyStore`\\ s.

>>> token, key = new_key("checkout", ("predict",))
>>> token.startswith("mp_" + key.id + "_"), len(token) > 50
(True, True)
>>> table = KeyTable([key])
>>> table.verify(token).name
'checkout'
>>> table.verify(token[:-1] + ("A" if token[-1] != "A" else "B"))
Traceback (most recent call last):
...
modelport.errors.AuthenticationError: the API key is not valid (revoked, expired or mistyped)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelport.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    StorageError,
)
from modelport.serving.routes import KEY_SCOPES

PREFIX = "mp_"
_ID_HEX = 12
_PREFIX = PREFIX.encode()
_SECRET_AT = len(PREFIX) + _ID_HEX + 1  # where the secret starts in a token


@dataclass(frozen=True)
class KeyLimits:
    """Per-key limits; ``None`` takes the server's default (``auth.default_limits``)."""

    #: sustained requests per second (a token bucket holding one second's worth, at least 1)
    requests_per_s: float | None = None
    #: rows predicted per UTC day
    rows_per_day: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("requests_per_s", self.requests_per_s),
                                  ("rows_per_day", self.rows_per_day)) if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> KeyLimits:
        data = data or {}
        rps = data.get("requests_per_s")
        rows = data.get("rows_per_day")
        return cls(None if rps is None else float(rps), None if rows is None else int(rows))


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: never the secret, only its SHA-256."""

    id: str
    name: str
    scopes: frozenset[str]
    digest: str
    created_at: datetime
    created_by: str = ""
    revoked_at: datetime | None = None
    limits: KeyLimits = field(default_factory=KeyLimits)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What ``modelport auth list`` shows."""
        return {"id": self.id, "name": self.name, "scopes": sorted(self.scopes),
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "limits": self.limits.to_dict()}


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the key's (or token subject's) name and scopes."""

    name: str
    scopes: frozenset[str]
    key_id: str = ""
    limits: KeyLimits = field(default_factory=KeyLimits)


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    out = frozenset(scopes)
    unknown = sorted(out - set(KEY_SCOPES))
    if unknown or not out:
        raise ConfigurationError(
            f"unknown scope(s) {unknown}; give --scope one or more of {', '.join(KEY_SCOPES)}"
            if unknown else f"a key needs at least one --scope ({', '.join(KEY_SCOPES)})")
    return out


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(name: str, scopes: Iterable[str], *, limits: KeyLimits | None = None,
            created_by: str = "", now: datetime | None = None) -> tuple[str, ApiKey]:
    """A fresh key: the token to hand out once, and the record to store."""
    if not name or len(name) > 128 or not name.isprintable():
        raise ConfigurationError("a key needs a --name of 1-128 printable characters")
    key_id = secrets.token_hex(_ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(id=key_id, name=name, scopes=check_scopes(scopes), digest=_digest(secret),
                 created_at=now or datetime.now(UTC), created_by=created_by,
                 limits=limits or KeyLimits())
    return f"{PREFIX}{key_id}_{secret}", key


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else ``None``."""
    if not token.startswith(PREFIX) or len(token) < len(PREFIX) + _ID_HEX + 2:
        return None
    key_id, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or len(key_id) != _ID_HEX or not secret:
        return None
    return key_id, secret


class KeyTable:
    """The active keys in memory, by id; :meth:`verify` is the per-request check."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys: dict[bytes, tuple[bytes, Principal]] = {
            k.id.encode(): (bytes.fromhex(k.digest), Principal(k.name, k.scopes, k.id, k.limits))
            for k in keys if k.active}

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, token: str | bytes) -> Principal:
        """The key's principal; ``AuthenticationError`` for anything else. The secret's digest
        is compared in constant time; an unknown id costs the same hash and comparison."""
        raw = token if isinstance(token, bytes) else token.encode()
        # mp_ + 12 hex id + _ + secret, read by position (the per-request path)
        entry = self._keys.get(raw[3:_SECRET_AT - 1]) if (
            raw[:3] == _PREFIX and raw[_SECRET_AT - 1:_SECRET_AT] == b"_") else None
        digest = hashlib.sha256(raw[_SECRET_AT:]).digest()
        if not hmac.compare_digest(digest, entry[0] if entry is not None else bytes(32)) \
                or entry is None:
            raise AuthenticationError("the API key is not valid (revoked, expired or mistyped)")
        return entry[1]


class KeyStore(Protocol):
    """Where keys are kept. ``load`` is called at start and then every few seconds."""

    def load(self) -> list[ApiKey]: ...
    def add(self, key: ApiKey) -> None: ...
    def revoke(self, ident: str, *, now: datetime | None = None) -> ApiKey: ...


def _find(keys: Sequence[ApiKey], ident: str) -> ApiKey:
    """The active key whose id or name is ``ident`` (a name must be unambiguous)."""
    by_id = [k for k in keys if k.id == ident]
    if by_id:
        return by_id[0]
    by_name = [k for k in keys if k.name == ident and k.active]
    if not by_name:
        raise NotFoundError(f"no active API key with id or name {ident!r}; see "
                            "'modelport auth list'")
    if len(by_name) > 1:
        raise ConflictError(f"{len(by_name)} active keys are named {ident!r}; revoke by id "
                            "(see 'modelport auth list')")
    return by_name[0]


# ------------------------------------------------------------------------------ file store
class FileKeyStore:
    """Keys in a JSON file (hashed), for setups without a registry database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[ApiKey]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"the keys file {str(self.path)!r} cannot be read ({exc}); create keys with "
                "'modelport auth create-key --keys-file FILE'") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ConfigurationError(f"the keys file {str(self.path)!r} has no 'keys' list")
        return [_from_row(row) for row in data["keys"]]

    def add(self, key: ApiKey) -> None:
        self._save([*self.load(), key])

    def revoke(self, ident: str, *, now: datetime | None = None) -> ApiKey:
        keys = self.load()
        found = _find(keys, ident)
        revoked = replace(found, revoked_at=now or datetime.now(UTC))
        self._save([revoked if k.id == found.id else k for k in keys])
        return revoked

    def _save(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"keys": [_to_row(k) for k in keys]}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


def _to_row(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "scopes": sorted(key.scopes), "digest": key.digest,
            "created_at": key.created_at.isoformat(), "created_by": key.created_by,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            "limits": key.limits.to_dict()}


def _from_row(row: Any) -> ApiKey:
    def when(value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(str(value))

    try:
        created = when(row["created_at"])
        return ApiKey(id=str(row["id"]), name=str(row["name"]), scopes=frozenset(row["scopes"]),
                      digest=str(row["digest"]), created_at=created or datetime.now(UTC),
                      created_by=str(row.get("created_by") or ""),
                      revoked_at=when(row.get("revoked_at")),
                      limits=KeyLimits.from_dict(row.get("limits")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"a stored API key is malformed ({exc})") from None


# ------------------------------------------------------------------------------ SQL store
class SqlKeyStore:
    """Keys in the registry database (``modelport_api_keys``, created by a migration)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def _table(self) -> sa.Table:
        from modelport.registry.schema import api_keys

        return api_keys

    def load(self) -> list[ApiKey]:
        t = self._table
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(t)).mappings().all()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"reading API keys from the registry failed: {exc}") from None
        return [_from_row(dict(row)) for row in rows]

    def add(self, key: ApiKey) -> None:
        row = _to_row(key)
        row["created_at"] = key.created_at
        row["revoked_at"] = key.revoked_at
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self._table).values(**row))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"storing the API key failed: {exc}") from None

    def revoke(self, ident: str, *, now: datetime | None = None) -> ApiKey:
        found = _find(self.load(), ident)
        when = now or datetime.now(UTC)
        t = self._table
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.update(t).where(t.c.id == found.id).values(revoked_at=when))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"revoking the API key failed: {exc}") from None
        return replace(found, revoked_at=when)


__all__ = [
    "ApiKey",
    "FileKeyStore",
    "KeyLimits",
    "KeyStore",
    "KeyTable",
    "Principal",
    "SqlKeyStore",
    "check_scopes",
    "new_key",
    "split_token",
]
