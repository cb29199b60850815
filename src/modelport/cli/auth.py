"""``modelport auth``: API keys for ``modelport serve --auth``.

``create-key --scope predict --name checkout-service`` prints the key once (only its SHA-256 is
stored); ``revoke ID_OR_NAME`` and ``list`` manage them. Keys live in the registry database, or
in ``--keys-file FILE`` for servers started with ``serve --auth --keys-file FILE``. Creating and
revoking keys is written to the registry's audit log.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from modelport.cli.common import emit, registry_from, table
from modelport.serving.routes import KEY_SCOPES

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.serving.auth import KeyStore


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("auth", help="API keys for the server (create, revoke, list)",
                       description="Manage the API keys 'modelport serve --auth' accepts.")
    cmds = p.add_subparsers(dest="auth_command", metavar="ACTION")
    create = cmds.add_parser("create-key", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True,
                        help="who uses the key (shown in the audit log), e.g. checkout-service")
    create.add_argument("--scope", action="append", required=True, choices=KEY_SCOPES,
                        help="what the key may do (repeatable); admin may do everything")
    create.add_argument("--requests-per-s", type=float, metavar="N",
                        help="rate limit for this key (default: the server's)")
    create.add_argument("--rows-per-day", type=int, metavar="N",
                        help="predicted rows per UTC day for this key (default: the server's)")
    create.set_defaults(func=_create)
    revoke = cmds.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("key", metavar="ID_OR_NAME")
    revoke.set_defaults(func=_revoke)
    listing = cmds.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(func=_list)
    for parser in (create, revoke, listing):
        parser.add_argument("--keys-file", metavar="FILE",
                            help="keep keys in this JSON file instead of the registry database")
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _store(args: argparse.Namespace) -> tuple[KeyStore, Registry | None]:
    from modelport.serving.auth import FileKeyStore, SqlKeyStore

    if args.keys_file:
        return FileKeyStore(args.keys_file), None
    registry = registry_from(args)
    return SqlKeyStore(registry.engine()), registry


def _audit(registry: Registry | None, action: str, details: dict[str, Any]) -> None:
    if registry is not None:
        registry.record_audit(action, details)


def _create(args: argparse.Namespace) -> int:
    from modelport.serving.auth import KeyLimits, new_key

    for flag, value in (("--requests-per-s", args.requests_per_s),
                        ("--rows-per-day", args.rows_per_day)):
        if value is not None and value <= 0:
            from modelport.errors import ConfigurationError

            raise ConfigurationError(f"{flag} must be positive, got {value}")
    store, registry = _store(args)
    try:
        token, key = new_key(args.name, args.scope,
                             limits=KeyLimits(args.requests_per_s, args.rows_per_day),
                             created_by=_user())
        store.add(key)
        _audit(registry, "auth.create_key", {"id": key.id, "name": key.name,
                                             "scopes": sorted(key.scopes)})
    finally:
        if registry is not None:
            registry.close()
    emit(args, {"key": token, **key.public()}, token)
    if not getattr(args, "json", False):
        print(f"created key {key.id} ({key.name}, scopes: {', '.join(sorted(key.scopes))}); "
              "it is shown only now: store it as a secret", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store, registry = _store(args)
    try:
        key = store.revoke(args.key)
        _audit(registry, "auth.revoke_key", {"id": key.id, "name": key.name})
    finally:
        if registry is not None:
            registry.close()
    emit(args, key.public(), f"revoked key {key.id} ({key.name}); running servers stop "
                             "accepting it within their auth.refresh_s (5 s by default)")
    return 0


def _list(args: argparse.Namespace) -> int:
    store, registry = _store(args)
    try:
        keys = [k.public() for k in store.load() if args.all or k.active]
        used = _rows_today(registry)
    finally:
        if registry is not None:
            registry.close()
    for key in keys:
        key["rows_today"] = used.get(key["id"], 0)
    rows = [dict(row, scopes=",".join(row["scopes"]),
                 state="revoked" if row["revoked_at"] else "active",
                 limits=_limits_text(row["limits"])) for row in keys]
    emit(args, keys, table(rows, ["id", "name", "scopes", "state", "limits", "rows_today",
                                  "created_at"]))
    return 0


def _rows_today(registry: Registry | None) -> dict[str, int]:
    """Rows each key predicted today (UTC) on every server of the registry, as the servers
    last wrote them (every ``auth.refresh_s``); none for a keys file."""
    if registry is None:
        return {}
    from datetime import UTC, datetime

    from modelport.serving.limits import SqlUsageStore

    return SqlUsageStore(registry.engine()).totals(datetime.now(UTC).toordinal())


def _limits_text(limits: dict[str, Any]) -> str:
    parts = []
    if limits.get("requests_per_s") is not None:
        parts.append(f"{limits['requests_per_s']:g}/s")
    if limits.get("rows_per_day") is not None:
        parts.append(f"{limits['rows_per_day']} rows/day")
    return ", ".join(parts) or "server default"


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


__all__ = ["register"]
