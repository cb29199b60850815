"""``LogConfig``: where predictions are logged, how often, and each model's log policy.

Built once (from flags, ``MODELPORT_LOG*`` or a YAML file) and passed down. A YAML file::

    stores: [delta]              # delta (under MODELPORT_HOME/log), a path, s3://bucket/log,
                                 # postgresql://…, kafka://host:9092/topic (several: all written)
    flush_rows: 10000            # flush when this many rows are waiting …
    flush_seconds: 5             # … or this long after the last flush
    max_pending_rows: 200000     # bounded memory: rows beyond this are dropped and counted
    hash_salt: "s3cret"          # salt of hashed columns (MODELPORT_LOG_HASH_SALT)
    default: {sample_rate: 1.0}
    models:
      churn:
        sample_rate: 0.25        # log one prediction in four
        include: [tenure, plan, customer_id, email]   # input allowlist (default: all)
        drop: [notes]            # never stored
        hash: [email]            # stored as a salted SHA-256 hex digest
        entity_key: customer_id  # carried as entity_key, to join labels by business key
      fraud: {enabled: false}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelport.errors import ConfigurationError

_POLICY_KEYS = {"enabled", "sample_rate", "include", "drop", "hash", "entity_key"}
_CONFIG_KEYS = {"stores", "flush_rows", "flush_seconds", "max_pending_rows", "hash_salt",
                "default", "models"}


@dataclass(frozen=True)
class ModelLogPolicy:
    """What is logged of one model's predictions."""

    enabled: bool = True
    #: share of predictions logged, 0..1 (rows are drawn independently)
    sample_rate: float = 1.0
    #: input columns kept (``None``: all)
    include: tuple[str, ...] | None = None
    #: input columns never stored
    drop: tuple[str, ...] = ()
    #: input columns stored as salted SHA-256 hex digests (personal data)
    hash: tuple[str, ...] = ()
    #: input column (or, when no input has that name, the row keys) carried as ``entity_key``
    entity_key: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ConfigurationError(
                f"log sample_rate must be between 0 and 1, not {self.sample_rate}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> ModelLogPolicy:
        unknown = set(data) - _POLICY_KEYS
        if unknown:
            raise ConfigurationError(
                f"unknown log policy key(s) {sorted(unknown)} in {where}; known: "
                f"{sorted(_POLICY_KEYS)}")
        include = data.get("include")
        try:
            return cls(
                enabled=bool(data.get("enabled", True)),
                sample_rate=float(data.get("sample_rate", 1.0)),
                include=tuple(_names(include, where)) if include is not None else None,
                drop=tuple(_names(data.get("drop") or (), where)),
                hash=tuple(_names(data.get("hash") or (), where)),
                entity_key=str(data["entity_key"]) if data.get("entity_key") else None,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"bad log policy in {where}: {exc}") from None


@dataclass(frozen=True)
class LogConfig:
    """Stores, flush cadence, memory bound and per-model policies of the prediction log."""

    stores: tuple[str, ...] = ("delta",)
    flush_rows: int = 10_000
    flush_seconds: float = 5.0
    max_pending_rows: int = 200_000
    hash_salt: str = ""
    default: ModelLogPolicy = ModelLogPolicy()
    models: Mapping[str, ModelLogPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flush_rows < 1 or self.flush_seconds <= 0 or self.max_pending_rows < 1:
            raise ConfigurationError(
                "log flush_rows and max_pending_rows must be at least 1 and flush_seconds above 0")
        if not self.stores:
            raise ConfigurationError("the prediction log needs at least one store")

    def policy(self, model: str) -> ModelLogPolicy:
        return self.models.get(model, self.default)

    def with_policy(self, model: str, policy: ModelLogPolicy) -> LogConfig:
        return replace(self, models={**self.models, model: policy})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "the log config") -> LogConfig:
        unknown = set(data) - _CONFIG_KEYS
        if unknown:
            raise ConfigurationError(
                f"unknown log setting(s) {sorted(unknown)} in {where}; known: "
                f"{sorted(_CONFIG_KEYS)}")
        stores = data.get("stores", ("delta",))
        if isinstance(stores, str):
            stores = [s for s in stores.split(",") if s.strip()]
        models = data.get("models") or {}
        if not isinstance(models, Mapping):
            raise ConfigurationError(f"'models' in {where} must map model names to policies")
        try:
            return cls(
                stores=tuple(str(s).strip() for s in stores),
                flush_rows=int(data.get("flush_rows", 10_000)),
                flush_seconds=float(data.get("flush_seconds", 5.0)),
                max_pending_rows=int(data.get("max_pending_rows", 200_000)),
                hash_salt=str(data.get("hash_salt", "")),
                default=ModelLogPolicy.from_mapping(data.get("default") or {}, where),
                models={str(k): ModelLogPolicy.from_mapping(v or {}, f"{where} (model {k})")
                        for k, v in models.items()},
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"bad log setting in {where}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> LogConfig:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigurationError(f"cannot read log config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"log config {path} is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"log config {path} must be a YAML mapping")
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, stores: Sequence[str] | None = None,
                 config_file: str | None = None) -> LogConfig:
        """``MODELPORT_LOG_CONFIG`` (a YAML file), then ``MODELPORT_LOG`` (comma-separated
        stores) and ``MODELPORT_LOG_HASH_SALT``; explicit arguments win."""
        path = config_file or env.get("MODELPORT_LOG_CONFIG")
        config = cls.from_file(path) if path else cls()
        given = list(stores) if stores else [s for s in env.get("MODELPORT_LOG", "").split(",")
                                             if s.strip()]
        if given:
            config = replace(config, stores=tuple(s.strip() for s in given))
        salt = env.get("MODELPORT_LOG_HASH_SALT")
        if salt and not config.hash_salt:
            config = replace(config, hash_salt=salt)
        return config


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence):
        raise ConfigurationError(f"expected a list of column names in {where}, got {value!r}")
    return [str(v) for v in value]


__all__ = ["LogConfig", "ModelLogPolicy"]
