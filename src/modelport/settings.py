"""``Settings``: one typed configuration object, read from ``MODELPORT_*`` once and passed down.

>>> s = Settings.from_env({"MODELPORT_HOME": "/srv/mp"})
>>> s.registry_url, s.artifacts
('sqlite:////srv/mp/registry.db', '/srv/mp/artifacts')
>>> Settings.from_env({}, home="/tmp/x").cache_dir.as_posix()
'/tmp/x/cache'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import ConfigurationError
from modelport.logformat import DEFAULT_LOG_FORMAT, check_log_format

ENV_PREFIX = "MODELPORT_"


@dataclass(frozen=True)
class Settings:
    """Where modelport keeps its registry, artifacts and caches.

    ``home`` (``MODELPORT_HOME``, default ``./.modelport``) holds the embedded defaults: the
    SQLite registry ``registry.db``, the artifact folder ``artifacts/`` and the download
    ``cache/``. ``registry_url`` (``MODELPORT_REGISTRY_URL``) may name PostgreSQL instead;
    ``artifacts`` (``MODELPORT_ARTIFACTS``) any fsspec URL such as ``s3://bucket/models``, with
    ``storage_options`` (``MODELPORT_STORAGE_OPTIONS``, a JSON object) passed to fsspec.
    """

    home: Path
    registry_url: str
    artifacts: str
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)
    cache_dir: Path = Path(".modelport/cache")
    #: ``plain`` or ``json`` (``MODELPORT_LOG_FORMAT``, ``--log-format``): how long-running
    #: commands (``serve``, ``stream run``) and their workers write log lines
    log_format: str = "plain"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        """Build settings from ``MODELPORT_*`` variables; keyword ``overrides`` win.

        Paths derived from ``home`` (database, artifacts, cache) follow an overridden ``home``
        unless they are set themselves.
        """
        unknown = set(overrides) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) {sorted(unknown)}; known: "
                f"{', '.join(cls.__dataclass_fields__)}"
            )

        def pick(key: str) -> Any:
            if overrides.get(key) is not None:
                return overrides[key]
            value = env.get(ENV_PREFIX + key.upper())
            return value if value else None

        home = Path(pick("home") or ".modelport").expanduser().absolute()
        registry_url = str(pick("registry_url") or f"sqlite:///{home / 'registry.db'}")
        artifacts = str(pick("artifacts") or home / "artifacts")
        cache_dir = Path(pick("cache_dir") or home / "cache").expanduser().absolute()
        return cls(
            home=home,
            registry_url=registry_url,
            artifacts=artifacts,
            storage_options=_storage_options(pick("storage_options")),
            cache_dir=cache_dir,
            log_format=check_log_format(str(pick("log_format") or DEFAULT_LOG_FORMAT)),
        )


def _storage_options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{ENV_PREFIX}STORAGE_OPTIONS is not valid JSON ({exc.msg}); give a JSON object such "
            'as {"endpoint_url": "http://127.0.0.1:9000"}'
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigurationError(
            f"{ENV_PREFIX}STORAGE_OPTIONS must be a JSON object, not {type(parsed).__name__}"
        )
    return parsed


__all__ = ["Settings"]
