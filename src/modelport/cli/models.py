"""``modelport models …`` and ``modelport alias …``: the registry from the command line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from modelport.cli.common import (
    emit,
    existing_file,
    missing_registry,
    no_registry_message,
    read_registry,
    registry_from,
    settings_from,
    table,
)
from modelport.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from modelport.registry import ModelVersion


def register(sub: argparse._SubParsersAction[Any]) -> None:
    models = sub.add_parser("models", help="register, list and inspect models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = msub.add_parser("register", help="register a bundle directory as a new version")
    p.add_argument("path", help="bundle directory written by modelport.save")
    p.add_argument("--name", help="model name (default: the bundle's name)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--nullable", action="append", default=[], metavar="COLUMN",
                   help="declare this input column nullable (repeatable, or A,B): a null there "
                        "reaches the model as NaN, for models that handle missing values")
    p.add_argument("--if-changed", action="store_true",
                   help="when the bundle is identical to an existing version, register nothing "
                        "and answer that version")
    p.add_argument("--sign-key", metavar="PEM",
                   help="sign the version with this Ed25519 private key (servers started with "
                        "--verify-key check it before loading)")
    p.add_argument("--version", type=_version, metavar="N",
                   help="register as exactly version N (e.g. the version it has in another "
                        "registry); refused when the model already has version N")
    p.set_defaults(func=_register)

    p = msub.add_parser("list", help="list models, or the versions of one model")
    p.add_argument("name", nargs="?", help="list this model's versions")
    p.add_argument("--all", action="store_true", help="include archived versions")
    p.set_defaults(func=_list)

    p = msub.add_parser("show", help="show one version: NAME, NAME:VERSION or NAME@ALIAS")
    p.add_argument("ref")
    p.set_defaults(func=_show)

    for action, helptext in (("archive", "hide a version from 'latest' and aliases"),
                             ("unarchive", "bring an archived version back")):
        p = msub.add_parser(action, help=helptext)
        p.add_argument("ref", help="NAME:VERSION")
        p.set_defaults(func=_archive, archive=action == "archive")

    p = msub.add_parser("tag", help="set (KEY=VALUE) or remove (KEY) tags on a version")
    p.add_argument("ref", help="NAME:VERSION or NAME@ALIAS")
    p.add_argument("tags", nargs="+", metavar="KEY[=VALUE]")
    p.set_defaults(func=_tag)

    p = msub.add_parser("audit", help="the audit log (every change, who and when)")
    p.add_argument("name", nargs="?")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_audit)

    alias = sub.add_parser("alias", help="point a name like 'production' at a version")
    asub = alias.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    p = asub.add_parser("set", help="set or move an alias: NAME ALIAS VERSION")
    p.add_argument("name")
    p.add_argument("alias")
    p.add_argument("version", type=_version)
    p.set_defaults(func=_alias_set)
    p = asub.add_parser("rm", help="delete an alias: NAME ALIAS")
    p.add_argument("name")
    p.add_argument("alias")
    p.set_defaults(func=_alias_rm)
    p = asub.add_parser("list", help="aliases of a model")
    p.add_argument("name")
    p.set_defaults(func=_alias_list)


def _version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"version must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"version must be 1 or more, got {value}")
    return value


def _pairs(items: list[str], *, need_value: bool) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (need_value and not sep):
            raise InvalidInputError(f"expected KEY=VALUE, got {item!r}")
        out[key] = value if sep else None
    return out


def version_summary(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "flavor": v.flavor,
        "aliases": list(v.aliases),
        "created_at": v.created_at.isoformat(timespec="seconds"),
        "created_by": v.created_by,
        "archived": v.archived,
        "tags": dict(v.tags),
    }


def _register(args: argparse.Namespace) -> int:
    path = existing_file(args.path, "bundle directory")
    tags = {k: v or "" for k, v in _pairs(args.tag, need_value=True).items()}
    nullable = [c.strip() for text in args.nullable for c in text.split(",") if c.strip()]
    registry = registry_from(args)
    same = registry.identical_version(path, args.name, nullable=nullable or None)
    if same is not None and args.if_changed:
        emit(args, {**version_summary(same), "registered": False},
             f"{same.name} version {same.version} is identical to {path}; nothing registered")
        return 0
    version = registry.register(path, name=args.name, tags=tags or None,
                                nullable=nullable or None, sign_with=args.sign_key,
                                version=args.version)
    text = f"registered {version.name} version {version.version}"
    if same is not None:
        text += (f" (identical to version {same.version}; --if-changed registers nothing "
                 "when the bundle is unchanged)")
    emit(args, {**version_summary(version), "registered": True,
                "identical_to": same.version if same is not None else None}, text)
    return 0


def _list(args: argparse.Namespace) -> int:
    missing = missing_registry(settings_from(args))
    if missing is not None:  # say where we looked, and create nothing there
        if args.name:
            raise NotFoundError(no_registry_message(missing))
        emit(args, [], f"(none): {no_registry_message(missing)}")
        return 0
    reg = read_registry(args)
    if args.name:
        rows = [version_summary(v) for v in reg.list_versions(args.name,
                                                              include_archived=args.all)]
        for row in rows:
            row["aliases"] = ",".join(row["aliases"])
        emit(args, rows, table(rows, ["version", "flavor", "aliases", "created_at",
                                      "archived"]))
        return 0
    models = reg.list_models()
    rows = [{"name": m.name, "versions": m.version_count, "latest": m.latest_version,
             "aliases": ",".join(f"{a}={v}" for a, v in sorted(m.aliases.items()))}
            for m in models]
    text = table(rows, ["name", "versions", "latest", "aliases"])
    if not rows:
        from modelport.registry.metadata import safe_url

        text += f": no models registered in {safe_url(reg.url)}"
    emit(args, rows, text)
    return 0


def _show(args: argparse.Namespace) -> int:
    version = read_registry(args).resolve(args.ref)
    info = version_summary(version)
    manifest = version.manifest or {}
    sig = manifest.get("signature", {})
    info.update(
        signature=sig,
        metrics=manifest.get("metrics", {}),
        params=manifest.get("params", {}),
        libraries=manifest.get("libraries", {}),
        accelerated=manifest.get("accelerated"),
        files=version.files,
    )
    lines = [f"{version.name}:{version.version}  flavor={version.flavor}  "
             f"aliases={','.join(info['aliases']) or '-'}",
             f"created {info['created_at']} by {info['created_by']}",
             f"task: {sig.get('task', '?')}"
             + (f"  classes: {sig.get('classes')}" if sig.get("classes") is not None else ""),
             "inputs:"]
    lines += [f"  {c['name']}: {c['dtype']}{c.get('shape', '') or ''}"
              for c in sig.get("inputs", [])]
    if info["metrics"]:
        lines.append("metrics: " + ", ".join(f"{k}={v}" for k, v in info["metrics"].items()))
    if info["tags"]:
        lines.append("tags: " + ", ".join(f"{k}={v}" for k, v in info["tags"].items()))
    accelerated = info["accelerated"] or {}
    if "file" in accelerated:
        lines.append(f"ONNX form: stored ({accelerated.get('reason', '')})")
    elif accelerated.get("error"):
        lines.append(f"ONNX form: none ({accelerated['error']})")
    emit(args, info, "\n".join(lines))
    return 0


def _archive(args: argparse.Namespace) -> int:
    reg = registry_from(args)
    version = reg.resolve(args.ref)
    if args.archive:
        reg.archive(version.name, version.version)
    else:
        reg.unarchive(version.name, version.version)
    word = "archived" if args.archive else "unarchived"
    emit(args, {"name": version.name, "version": version.version, "status": word},
         f"{word} {version.name}:{version.version}")
    return 0


def _tag(args: argparse.Namespace) -> int:
    changes = _pairs(args.tags, need_value=False)  # every argument checked before any change
    reg = registry_from(args)
    version = reg.resolve(args.ref)
    reg.update_tags(f"{version.name}:{version.version}", changes)
    updated = reg.resolve(f"{version.name}:{version.version}")
    emit(args, version_summary(updated),
         f"{updated.name}:{updated.version} tags: {dict(updated.tags or {})}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    entries = read_registry(args).audit(args.name, limit=args.limit)
    rows = [{"at": e.at.isoformat(timespec="seconds"), "actor": e.actor, "host": e.host,
             "action": e.action, "model": e.name, "version": e.version, "details": e.details}
            for e in entries]
    emit(args, rows, table(rows, ["at", "actor", "host", "action", "model", "version"]))
    return 0


def _alias_set(args: argparse.Namespace) -> int:
    reg = registry_from(args)
    reg.set_alias(args.name, args.alias, args.version)
    emit(args, {"name": args.name, "alias": args.alias, "version": args.version},
         f"{args.name}@{args.alias} -> version {args.version}")
    return 0


def _alias_rm(args: argparse.Namespace) -> int:
    registry_from(args).delete_alias(args.name, args.alias)
    emit(args, {"name": args.name, "alias": args.alias, "deleted": True},
         f"deleted alias {args.name}@{args.alias}")
    return 0


def _alias_list(args: argparse.Namespace) -> int:
    aliases = read_registry(args).aliases(args.name)
    rows = [{"alias": a, "version": v} for a, v in sorted(aliases.items())]
    emit(args, rows, table(rows, ["alias", "version"]))
    return 0
