"""``modelport feedback``: bring labels, values and rewards into the prediction log.

    modelport feedback load labels.parquet --model churn
    modelport feedback load --input postgresql://host/db --table churn_labels --model churn
    modelport feedback consume --source kafka://127.0.0.1:9092/labels --model churn
    modelport feedback consume --source redis://127.0.0.1:6379/labels
    modelport feedback send 9f3c… --label yes --model churn

Items are checked against the model (``--model``, from the registry) before anything is stored:
a file or table with a wrong row stores nothing and names the row and field. A consumed message
that is not a valid item is skipped, counted and logged (with its offset) so the stream goes on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from modelport.cli.common import emit, settings_from
from modelport.errors import ConfigurationError, InvalidInputError, NotFoundError

log = logging.getLogger("modelport.log")
_HINT = "fix it and rerun 'modelport feedback {cmd}'"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("feedback", help="load or consume labels / rewards for logged predictions")
    cmds = p.add_subparsers(dest="feedback_command", metavar="COMMAND")

    ld = cmds.add_parser("load", help="store feedback from a file or a SQL table",
                         description="Columns named like the feedback fields: prediction_id or "
                                     "entity_key (+ at, window), label / value / reward, model.")
    ld.add_argument("file", nargs="?", help="a .parquet, .csv, .json or .jsonl file")
    ld.add_argument("--input", metavar="URL", help="a database URL (postgresql://…) instead")
    ld.add_argument("--table", help="table to read from --input")
    ld.add_argument("--query", help="SQL to read from --input (instead of --table)")
    _common(ld)
    ld.set_defaults(func=_load)

    co = cmds.add_parser("consume", help="store feedback from a Kafka topic or Redis stream",
                         description="Each message: one feedback object or a list of them.")
    co.add_argument("--source", required=True, metavar="URL",
                    help="kafka://host:port/topic or redis://host:port/stream")
    co.add_argument("--group", default="modelport-feedback",
                    help="consumer group (default modelport-feedback)")
    co.add_argument("--batch", type=int, default=500, metavar="N",
                    help="store up to N items per commit (default 500)")
    co.add_argument("--idle-exit", type=float, metavar="SECONDS",
                    help="stop after this long without messages (default: run until SIGTERM)")
    co.add_argument("--max-messages", type=int, metavar="N", help="stop after N messages")
    _common(co)
    co.set_defaults(func=_consume)

    se = cmds.add_parser("send", help="store one feedback item")
    se.add_argument("prediction_id", nargs="?")
    se.add_argument("--entity-key")
    se.add_argument("--at", help="the outcome's time, for --entity-key (ISO 8601)")
    se.add_argument("--window", help="how far back the prediction may be (2h, 7d)")
    se.add_argument("--label")
    se.add_argument("--value", type=float)
    se.add_argument("--reward", type=float)
    _common(se)
    se.set_defaults(func=_send)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="the model the feedback is about (labels are checked "
                                   "against its classes)")
    p.add_argument("--store", metavar="URL", help="log store (default: MODELPORT_LOG or delta)")


def _signature_of(args: argparse.Namespace) -> Any:
    """A function model name -> Signature (from the registry; None when there is none)."""
    from modelport.bundle.signature import Signature
    from modelport.cli.common import missing_registry

    settings = settings_from(args)
    if missing_registry(settings) is not None:
        return None
    from modelport.registry import Registry

    registry = Registry.from_settings(settings)
    cache: dict[str, Any] = {}

    def signature_of(model: str) -> Any:
        if model not in cache:
            try:
                manifest = registry.resolve(_endpoint_primary(registry, model) or model).manifest
            except NotFoundError:
                raise InvalidInputError(
                    f"model {model!r} is not in the registry; check --model / the model "
                    "field", field="model") from None
            cache[model] = Signature.from_dict(manifest["signature"])
        return cache[model]

    return signature_of


def _endpoint_primary(registry: Any, name: str) -> str | None:
    """The primary variant's reference when ``name`` is an endpoint (feedback naming it)."""
    from modelport.rollout.store import EndpointStore

    store = EndpointStore(registry)
    if "@" in name or ":" in name or not store.exists(name):
        return None
    spec = store.get(name).spec
    return spec.variants[spec.stable]


def _reward_check(args: argparse.Namespace, cmd: str) -> Any:
    """``check(items, field_of)``: refuses rewards outside the range of the bandit endpoint
    they reward (``modelport.rollout.rewards``); ``None`` when there is nothing to check."""
    from modelport.rollout.rewards import registry_guard

    return registry_guard(settings_from(args), store=_store(args),
                          fix=f", and rerun 'modelport feedback {cmd}'")


def _store(args: argparse.Namespace) -> Any:
    from modelport.log import default_store

    return default_store(args.store)


def _load(args: argparse.Namespace) -> int:
    from modelport.log.feedback_items import items_from_rows, to_table

    rows = _rows(args)
    signature_of = _signature_of(args)
    if signature_of is not None:  # text cells (CSV) of a number / boolean label: the class type
        for row in rows:
            model = row.get("model") or args.model
            if isinstance(row.get("label"), str) and isinstance(model, str):
                row["label"] = _typed_label(row["label"], signature_of(model))
    try:
        items = items_from_rows(rows, signature_of=signature_of, default_model=args.model)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{exc}; nothing was stored; {_HINT.format(cmd='load')}",
                                field=exc.field) from None
    if not items:
        raise ConfigurationError("no feedback rows found; nothing was stored")
    check = _reward_check(args, "load") if any(i.reward is not None for i in items) else None
    if check is not None:
        check(items, lambda i: f"row {i}: reward")
    _store(args).append_feedback(to_table(items, source="file" if args.file else "sql"))
    emit(args, {"stored": len(items)}, f"stored {len(items)} feedback items")
    return 0


def _rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    import pandas as pd

    if bool(args.file) == bool(args.input):
        raise ConfigurationError("give a feedback FILE or --input URL (one of them)")
    if args.input:
        if not (args.table or args.query):
            raise ConfigurationError("--input needs --table NAME or --query SQL")
        import sqlalchemy as sa

        url = args.input.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = sa.create_engine(url)
        try:
            with engine.connect() as con:
                sql = args.query or f'SELECT * FROM "{args.table}"'
                frame = pd.read_sql(sa.text(sql), con)
        except sa.exc.SQLAlchemyError as exc:
            first = str(exc.orig if hasattr(exc, "orig") else exc).strip().splitlines()[0]
            raise ConfigurationError(f"cannot read feedback from --input: {first}") from None
        finally:
            engine.dispose()
    else:
        path = Path(args.file)
        if not path.is_file():
            raise ConfigurationError(f"feedback file {args.file!r} does not exist")
        suffix = path.suffix.lower()
        try:
            if suffix == ".parquet":
                frame = pd.read_parquet(path)
            elif suffix == ".csv":
                frame = pd.read_csv(path, dtype={"prediction_id": str, "entity_key": str})
            elif suffix in (".json", ".jsonl", ".ndjson"):
                frame = pd.read_json(path, lines=suffix != ".json",
                                     dtype={"prediction_id": str, "entity_key": str})
            else:
                raise ConfigurationError(
                    f"{args.file}: unknown file type; use .parquet, .csv, .json or .jsonl")
        except (ValueError, OSError) as exc:
            raise ConfigurationError(f"cannot read {args.file}: {exc}") from None
    records: list[dict[str, Any]] = frame.to_dict(orient="records")
    return [{k: _plain(v) for k, v in r.items()} for r in records]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value


def _send(args: argparse.Namespace) -> int:
    from modelport.log.feedback_items import parse_item, to_table

    raw = {k: v for k, v in {
        "prediction_id": args.prediction_id, "entity_key": args.entity_key, "at": args.at,
        "window": args.window, "label": args.label, "value": args.value,
        "reward": args.reward}.items() if v is not None}
    signature_of = _signature_of(args)
    if args.label is not None and args.model and signature_of is not None:
        raw["label"] = _typed_label(args.label, signature_of(args.model))
    try:
        item = parse_item(raw, "", signature_of, args.model)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{exc}; {_HINT.format(cmd='send')}", field=exc.field) from None
    check = _reward_check(args, "send") if item.reward is not None else None
    if check is not None:
        check([item], lambda i: "--reward")
    _store(args).append_feedback(to_table([item], source="cli"))
    emit(args, {"stored": 1}, "stored 1 feedback item")
    return 0


def _typed_label(text: str, signature: Any) -> Any:
    """A label given on the command line, as the model's class type when it is not text."""
    classes = getattr(signature, "classes", None) or ()
    for cls in classes:
        if str(cls) == text or (isinstance(cls, bool) and text.lower() == str(cls).lower()):
            return cls
    numeric = classes and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                              for c in classes)
    if signature is not None and (signature.task == "regression" or numeric):
        for kind in (int, float):  # a number on the command line is a number label
            try:
                return kind(text)
            except ValueError:
                continue
    return text


# ---------------------------------------------------------------------------- consume
def _consume(args: argparse.Namespace) -> int:
    scheme = args.source.split("://", 1)[0].lower()
    if scheme == "kafka":
        from modelport.log.feedback_source import KafkaFeedback

        source: Any = KafkaFeedback.from_url(args.source, group=args.group)
    elif scheme in ("redis", "rediss"):
        from modelport.log.feedback_source import RedisFeedback

        source = RedisFeedback.from_url(args.source, group=args.group)
    else:
        raise ConfigurationError(
            f"--source {args.source!r}: use kafka://host:port/topic or redis://host:port/stream")
    from modelport.log.feedback_source import consume
    from modelport.rollout.rewards import item_field

    check = _reward_check(args, "consume")
    report = consume(source, _store(args), signature_of=_signature_of(args),
                     default_model=args.model,
                     check=(lambda items, single: check(items, item_field(single)))
                     if check is not None else None, batch=args.batch, idle_exit=args.idle_exit,
                     max_messages=args.max_messages)
    emit(args, report, f"stored {report['stored']} feedback items from {report['messages']} "
                       f"messages ({report['invalid']} invalid, skipped)")
    return 0


__all__ = ["register"]
