"""``modelport log``: query, follow, measure and maintain the prediction log.

    modelport log query "SELECT version, count(*) FROM predictions GROUP BY 1" --model churn
    modelport log tail churn
    modelport log metrics churn --by version --window 1h
    modelport log compact --retention 30d
    modelport log models
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from modelport.cli.common import emit, table, to_plain, writable_output
from modelport.errors import ConfigurationError

_FORMATS = ("table", "csv", "json", "parquet")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("log", help="query, follow and measure the prediction log",
                       description="The prediction log: every logged prediction and its "
                                   "feedback (see README: Prediction log).")
    cmds = p.add_subparsers(dest="log_command", metavar="COMMAND")

    q = cmds.add_parser("query", help="run SQL over predictions, feedback and labeled",
                        description="SQL (DuckDB) over the views predictions, feedback, labeled "
                                    "(predictions joined with their feedback) and "
                                    "unmatched_feedback.")
    q.add_argument("sql", help='e.g. "SELECT version, count(*) FROM predictions GROUP BY 1"')
    _common(q)
    q.add_argument("--format", choices=_FORMATS, default="table",
                   help="output format (default table; parquet needs --output)")
    q.add_argument("--output", metavar="FILE", help="write the result here instead of stdout")
    q.set_defaults(func=_query)

    t = cmds.add_parser("tail", help="follow a model's new predictions (one JSON line each)")
    t.add_argument("model")
    t.add_argument("--store", metavar="URL", help="log store (default: MODELPORT_LOG or delta)")
    t.add_argument("--lines", "-n", type=int, default=10, metavar="N",
                   help="start with the last N predictions (default 10)")
    t.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="how often to look for new predictions (default 1)")
    t.add_argument("--no-follow", action="store_true", help="print the last N and stop")
    t.add_argument("--count", type=int, metavar="N", help="stop after printing N predictions")
    t.set_defaults(func=_tail)

    m = cmds.add_parser("metrics", help="live quality per version and time window",
                        description="Accuracy, precision, recall, ROC AUC and log loss "
                                    "(classifiers) or MAE, RMSE and R² (regressors), plus label "
                                    "coverage, from predictions joined with their feedback.")
    m.add_argument("model")
    _common(m, model=False)
    m.add_argument("--by", default="version",
                   help="group columns, comma-separated: version, endpoint, variant, source, "
                        "date (default version; 'none' for one group)")
    m.add_argument("--window", metavar="DURATION", help="also group by time window (1h, 1d, …)")
    m.add_argument("--task", choices=("auto", "classification", "regression"), default="auto")
    m.add_argument("--format", choices=("table", "csv", "json"), default="table")
    m.set_defaults(func=_metrics)

    c = cmds.add_parser("compact", help="merge small files, apply retention, remove old files")
    c.add_argument("--store", metavar="URL", help="log store (default: MODELPORT_LOG or delta)")
    c.add_argument("--retention", metavar="DURATION",
                   help="delete predictions and feedback older than this (30d, 12h, …)")
    c.add_argument("--vacuum-hours", type=float, default=1.0, metavar="HOURS",
                   help="keep files replaced within this many hours for readers still on "
                        "them (default 1)")
    c.set_defaults(func=_compact)

    ls = cmds.add_parser("models", help="models with logged predictions, and how many")
    ls.add_argument("--store", metavar="URL", help="log store (default: MODELPORT_LOG or delta)")
    ls.set_defaults(func=_models)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _common(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    p.add_argument("--store", metavar="URL", help="log store (default: MODELPORT_LOG or delta)")
    if model:
        p.add_argument("--model", help="only this model's predictions (needed when models log "
                                       "different prediction types)")
    p.add_argument("--since", metavar="TIME", help="predictions from this time (ISO 8601, or "
                                                   "a duration ago: 24h)")
    p.add_argument("--until", metavar="TIME", help="predictions before this time")


def _store(args: argparse.Namespace) -> Any:
    from modelport.log import default_store

    return default_store(args.store)


def parse_time(text: str | None, flag: str) -> datetime | None:
    """An ISO 8601 time, or a duration (``24h``) meaning that long ago."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        pass
    from modelport.log.delta import parse_duration

    try:
        seconds = parse_duration(text)
    except ConfigurationError:
        raise ConfigurationError(
            f"{flag} {text!r} is neither an ISO 8601 time (2026-12-04T17:00:00Z) nor a "
            "duration (24h, 7d); fix it and rerun the modelport log command") from None
    return datetime.fromtimestamp(time.time() - seconds, UTC)


def _query(args: argparse.Namespace) -> int:
    from modelport.log.views import query

    if args.format == "parquet" and not args.output:
        raise ConfigurationError("--format parquet writes a file: add --output FILE")
    if args.output:
        writable_output(args.output)
    result = query(args.sql, _store(args), model=args.model,
                   since=parse_time(args.since, "--since"), until=parse_time(args.until, "--until"))
    write_table(result, args.format, args.output)
    return 0


def write_table(result: Any, fmt: str, output: str | None) -> None:
    """``result`` (Arrow) as a text table, CSV, JSON lines or Parquet, to ``output`` or stdout."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        assert output is not None
        pq.write_table(result, output)
        return
    if fmt == "csv":
        text = _csv(result, pcsv)
    elif fmt == "json":
        import json

        text = "".join(json.dumps(to_plain(row)) + "\n" for row in result.to_pylist())
    else:
        text = table(result.to_pylist(), result.column_names) + "\n"
    if output:
        with open(output, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


def _csv(result: Any, pcsv: Any) -> str:
    import io

    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column in result.columns:  # nested values (inputs, lists) as JSON text
        if pa.types.is_nested(column.type):
            import json

            column = pa.array([None if v is None else json.dumps(to_plain(v))
                               for v in column.to_pylist()], pa.string())
        elif pa.types.is_timestamp(column.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S.%fZ")
        columns.append(column)
    sink = io.BytesIO()
    pcsv.write_csv(pa.table(columns, names=result.column_names), sink)
    return sink.getvalue().decode()


def _tail(args: argparse.Namespace) -> int:
    import json

    from modelport.log.views import connect

    store = _store(args)
    seen: set[str] = set()
    last: Any = None
    printed = 0
    first = True
    while True:
        con = connect(store, model=args.model)
        try:
            where = "" if last is None else f"WHERE predicted_at >= TIMESTAMPTZ '{last}'"
            limit = f"LIMIT {max(args.lines, 0)}" if first else ""
            rows = con.sql(f"SELECT * FROM (SELECT * FROM predictions {where} ORDER BY "
                           f"predicted_at DESC, prediction_id DESC {limit}) "
                           "ORDER BY predicted_at, prediction_id").to_arrow_table().to_pylist()
        finally:
            con.close()
        first = False
        for row in rows:
            if row["prediction_id"] in seen:
                continue
            seen.add(row["prediction_id"])
            sys.stdout.write(json.dumps(to_plain(row)) + "\n")
            printed += 1
            if args.count is not None and printed >= args.count:
                sys.stdout.flush()
                return 0
        sys.stdout.flush()
        if rows:
            last = rows[-1]["predicted_at"].isoformat()
            seen = {r["prediction_id"] for r in rows
                    if r["predicted_at"].isoformat() == last}
        if args.no_follow:
            return 0
        time.sleep(args.interval)


def _metrics(args: argparse.Namespace) -> int:
    from modelport.log.delta import parse_duration
    from modelport.log.quality import quality

    by = [] if args.by.strip() in ("", "none") else [b.strip() for b in args.by.split(",")]
    window = parse_duration(args.window) if args.window else None
    result = quality(_store(args), args.model, by=by, window_s=window, task=args.task,
                     since=parse_time(args.since, "--since"),
                     until=parse_time(args.until, "--until"))
    if getattr(args, "json", False):
        emit(args, result.to_pylist())
        return 0
    rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            for row in result.to_pylist()]
    if args.format == "table":
        sys.stdout.write(table(rows, result.column_names) + "\n")
    else:
        write_table(result, args.format, None)
    return 0


def _compact(args: argparse.Namespace) -> int:
    from modelport.log.delta import parse_duration

    store = _store(args)
    if not hasattr(store, "compact"):
        raise ConfigurationError(f"{store.name} has no compaction; modelport log compact works "
                                 "on the Delta store (--store delta)")
    retention = parse_duration(args.retention) if args.retention else None
    report = store.compact(retention=retention, vacuum_hours=args.vacuum_hours)
    emit(args, report, table(report, ["table", "deleted_rows", "files_removed", "files_added",
                                      "files_vacuumed"]) if report else "nothing to compact")
    return 0


def _models(args: argparse.Namespace) -> int:
    from modelport.log.views import connect

    store = _store(args)
    rows = []
    for model in store.models():
        con = connect(store, model=model, dedupe=False)
        try:
            count, first, last = con.execute(
                "SELECT count(*), min(predicted_at)::VARCHAR, max(predicted_at)::VARCHAR "
                "FROM predictions").fetchone()
        finally:
            con.close()
        rows.append({"model": model, "predictions": count, "first": first, "last": last})
    emit(args, rows, table(rows, ["model", "predictions", "first", "last"]))
    return 0
