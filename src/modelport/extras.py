"""Which optional extra a URL needs: ``redis://`` needs ``modelport[redis]``, and so on.

Commands check the URLs they are given before doing any work, so a missing driver is one line
naming the ``pip install`` to run, not an ``ImportError`` from deep inside a job.

>>> needed_extra("redis://127.0.0.1:6379/0")
('redis', 'redis')
>>> needed_extra("postgresql+psycopg://user@host/db")
('psycopg', 'postgres')
>>> needed_extra("data/*.parquet") is None
True
"""

from __future__ import annotations

import importlib

from modelport.errors import ConfigurationError

#: URL scheme -> (module to import, extra that installs it); README: "Extras per URL scheme"
SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "redis": ("redis", "redis"),
    "rediss": ("redis", "redis"),
    "postgresql": ("psycopg", "postgres"),
    "postgres": ("psycopg", "postgres"),
    "mysql": ("pymysql", "mysql"),
    "mariadb": ("pymysql", "mysql"),
    "kafka": ("confluent_kafka", "kafka"),
}

#: SQLAlchemy driver names (``postgresql+psycopg2://``) -> module
_DRIVERS = {"psycopg": "psycopg", "psycopg2": "psycopg2", "pymysql": "pymysql",
            "mysqldb": "MySQLdb", "mysqlconnector": "mysql.connector"}


def needed_extra(url: str) -> tuple[str, str] | None:
    """``(module, extra)`` that ``url`` needs, or ``None`` for local paths and plain schemes."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return None
    base, _, driver = scheme.lower().partition("+")
    if base not in SCHEMES:
        return None
    module, extra = SCHEMES[base]
    return (_DRIVERS.get(driver, driver) if driver else module), extra


def require_drivers(*urls: tuple[str | None, str]) -> None:
    """Check ``(url, flag)`` pairs; a missing driver is a ``ConfigurationError`` that names the
    flag, the URL's scheme and the ``pip install`` that brings the driver."""
    for url, flag in urls:
        if not url:
            continue
        needed = needed_extra(url)
        if needed is None:
            continue
        module, extra = needed
        try:
            importlib.import_module(module)
        except ImportError:
            scheme = url.partition("://")[0]
            raise ConfigurationError(
                f"{flag} {scheme}:// needs the {module!r} package, which is not installed; "
                f"run: pip install 'modelport[{extra}]'") from None


__all__ = ["SCHEMES", "needed_extra", "require_drivers"]
