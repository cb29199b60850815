"""Helpers every command shares: settings and registry from flags, and printing."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConfigurationError, NotFoundError

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    from modelport.settings import Settings

    overrides: dict[str, Any] = {}
    if getattr(args, "registry", None):
        overrides["registry_url"] = args.registry
    if getattr(args, "artifacts", None):
        overrides["artifacts"] = args.artifacts
    if getattr(args, "log_format", None):
        overrides["log_format"] = args.log_format
    return Settings.from_env(**overrides)


def registry_from(args: argparse.Namespace) -> Registry:
    from modelport.registry import Registry

    return Registry.from_settings(settings_from(args))


def missing_registry(settings: Settings) -> Path | None:
    """The SQLite file of an embedded registry that does not exist yet, else ``None``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.registry_url)
    except ArgumentError:
        return None  # the registry reports a malformed URL itself
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).expanduser().absolute()
    return None if path.exists() else path


def no_registry_message(path: Path) -> str:
    return (f"no registry at {path} (MODELPORT_HOME is {path.parent}); register a model with "
            "'modelport models register BUNDLE_DIR', or point --registry / MODELPORT_HOME at "
            "an existing registry")


def read_registry(args: argparse.Namespace) -> Registry:
    """The registry, for commands that only read it: a registry that does not exist is a
    ``NotFoundError`` saying where it was looked for, and nothing is created on disk."""
    from modelport.registry import Registry

    settings = settings_from(args)
    missing = missing_registry(settings)
    if missing is not None:
        raise NotFoundError(no_registry_message(missing))
    return Registry.from_settings(settings)


def to_plain(value: Any) -> Any:
    """JSON-safe plain Python for NumPy scalars/arrays, paths, times and nested containers."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value


def emit(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text`` (or a readable rendering)."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(to_plain(data), indent=None, sort_keys=False) + "\n")
    elif text is not None:
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    else:
        sys.stdout.write(json.dumps(to_plain(data), indent=2) + "\n")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width text table."""
    if not rows:
        return "(none)"
    cells = [[str(to_plain(r.get(c, ""))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def add_log_format(p: argparse.ArgumentParser) -> None:
    """``--log-format plain|json``, the same flag and default on every long-running command."""
    from modelport.logformat import LOG_FORMATS

    p.add_argument("--log-format", choices=LOG_FORMATS, metavar="plain|json",
                   help="log lines as readable text (default; MODELPORT_LOG_FORMAT) or as one "
                        "JSON object each")


def add_extra_columns(p: argparse.ArgumentParser, *, default: str | None = "ignore") -> None:
    """``--extra-columns refuse|ignore|passthrough``: the same flag and default on serve, batch,
    stream and predict (see ``Signature.coerce``)."""
    p.add_argument("--extra-columns", choices=("refuse", "ignore", "passthrough"),
                   default=default, metavar="refuse|ignore|passthrough",
                   help="input columns the model does not take: ignore them (default), refuse "
                        "the row, or copy them into the output")


def existing_file(path: str, what: str = "file") -> Path:
    p = Path(path)
    if not p.exists():
        raise ConfigurationError(f"{what} {path!r} does not exist")
    return p


def writable_output(path: str, flag: str = "--output", *, folder_ok: bool = False) -> Path:
    """``path`` if a file (or with ``folder_ok`` a folder) can be written there, checked before
    any work is done (by creating and removing a probe file beside it): a missing folder, one
    without write permission or on a read-only file system is a ``ConfigurationError`` naming
    ``flag``."""
    target = Path(path)
    folder = target.parent
    if target.is_dir() and not folder_ok:
        raise ConfigurationError(f"{flag} {path!r} is a folder; name a file in it")
    if folder_ok:  # outputs that are folders create their parents: check the nearest that exists
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(
            f"cannot write {path!r}: {str(folder)!r} is a file, not a folder; choose another "
            f"{flag}")
    if not folder.is_dir():
        raise ConfigurationError(
            f"cannot write {path!r}: the folder {str(folder)!r} does not exist; create it "
            f"(mkdir -p {folder}) or choose another {flag}")
    probe = folder / f".{target.name}.probe"
    try:
        probe.open("wb").close()
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write {path!r}: {exc.strerror or exc}; choose another {flag}") from None
    return target
