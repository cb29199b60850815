"""``modelport batch run|schedule|unschedule|jobs|history`` and ``modelport scheduler``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from modelport.cli.common import (
    add_extra_columns,
    emit,
    missing_registry,
    no_registry_message,
    read_registry,
    settings_from,
    table,
    writable_output,
)
from modelport.errors import ConfigurationError, NotFoundError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    batch = sub.add_parser("batch", help="score files or SQL tables into Parquet, SQL or Redis")
    bsub = batch.add_subparsers(dest="batch_command", metavar="ACTION", required=True)

    p = bsub.add_parser("run", help="score an input into an output, all-or-nothing")
    _job_arguments(p)
    p.add_argument("--run-id", help="name this run (default: derived from model, input, output)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="print no progress")
    p.add_argument("--endpoint", metavar="NAME",
                   help="score through this endpoint's traffic policy (REF is then omitted): "
                        "rows are split by --routing-key as online requests with that key are")
    p.add_argument("--routing-key", metavar="COLUMN",
                   help="column holding the routing key (default: the endpoint's key)")
    p.add_argument("--shadow", metavar="REF",
                   help="also score every row with REF and write an agreement report")
    p.add_argument("--shadow-report", metavar="FILE",
                   help="where the agreement report goes (default: OUTPUT.shadow.json)")
    p.set_defaults(func=_run)

    p = bsub.add_parser("schedule", help="run a batch job on a cron schedule")
    _job_arguments(p)
    p.add_argument("--cron", required=True, help="cron rule in UTC, e.g. '0 * * * *' (hourly)")
    p.add_argument("--name", help="job name (default: MODEL-batch)")
    p.add_argument("--catchup", action="store_true",
                   help="run every missed slot after downtime (default: only the latest)")
    p.add_argument("--replace", action="store_true", help="change an existing job")
    p.set_defaults(func=_schedule)

    p = bsub.add_parser("unschedule", help="remove a scheduled job (its history stays)")
    p.add_argument("name")
    p.set_defaults(func=_unschedule)

    p = bsub.add_parser("jobs", help="list scheduled jobs")
    p.set_defaults(func=_jobs)

    p = bsub.add_parser("history", help="runs of scheduled jobs: status, rows, duration, error")
    p.add_argument("name", nargs="?", help="only this job")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_history)

    p = sub.add_parser("scheduler", help="run scheduled batch jobs when they are due")
    p.add_argument("--once", action="store_true", help="run what is due now, then exit")
    p.add_argument("--poll", type=float, default=30.0, metavar="SECONDS",
                   help="how often to look for due jobs (default 30)")
    p.set_defaults(func=_scheduler)


def _job_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", nargs="?",
                   help="NAME, NAME:VERSION, NAME@ALIAS or a bundle directory")
    p.add_argument("--input", "-i", required=True, metavar="URI",
                   help="file, folder or glob (local or s3://…; Parquet, CSV, JSON lines), or a "
                        "database URL with --query")
    p.add_argument("--output", "-o", required=True, metavar="URI",
                   help="Parquet folder (local or s3://…), a .csv file, database URL with "
                        "--table, or redis://host:port/db")
    p.add_argument("--query", help="SQL query giving the rows to score (database input)")
    p.add_argument("--input-format", choices=["parquet", "csv", "json"],
                   help="input format when file names do not tell")
    p.add_argument("--table", help="output table (database output)")
    p.add_argument("--state-schema", metavar="SCHEMA",
                   help="database schema for the two bookkeeping tables of a SQL output "
                        "(modelport_batch_runs, modelport_batch_chunks; default: the "
                        "connection's schema, beside --table)")
    p.add_argument("--mode", default="replace", choices=["create", "append", "replace", "upsert"],
                   help="how a SQL output table is written (default replace)")
    p.add_argument("--key", action="append", default=[], metavar="COLUMN",
                   help="row id column(s), repeatable or A,B: the upsert key, or the Redis key; "
                        "also copied into the output")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="copy this input column (an id) into the output")
    p.add_argument("--prefix", help="Redis key prefix (default modelport:MODEL:)")
    p.add_argument("--ttl", type=int, metavar="SECONDS", help="Redis key expiry")
    p.add_argument("--rejects", metavar="URI",
                   help="where rows that fail the signature go (Parquet; default: beside the "
                        "output, or under MODELPORT_HOME)")
    p.add_argument("--max-reject-rate", type=float, metavar="FRACTION",
                   help="fail without publishing when more rows than this are rejected (0.01 = "
                        "1%%; default: fail only when every row is rejected)")
    add_extra_columns(p)
    p.add_argument("--chunk-rows", type=int, default=65536, metavar="N",
                   help="rows per chunk (memory ~ chunk size x workers; default 65536)")
    p.add_argument("--engine", default="local", choices=["local", "dask", "spark"])
    p.add_argument("--engine-address", metavar="ADDRESS",
                   help="Dask scheduler (tcp://host:8786) or Spark master (default: local)")
    p.add_argument("--workers", type=int, help="threads / processes (default: every core)")
    p.add_argument("--accelerate", default="auto", choices=["auto", "onnx", "off"],
                   help="run the model under ONNX Runtime when it converts faithfully")
    p.add_argument("--storage-options", metavar="JSON",
                   help='fsspec options, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\' '
                        "(default: MODELPORT_STORAGE_OPTIONS)")
    p.add_argument("--trusted", action="store_true",
                   help="allow pickle-based artifacts (only for models you trust)")
    p.add_argument("--log", action="append", metavar="STORE",
                   help="write every prediction to the prediction log (delta, a folder, s3://…, "
                        "postgresql://…, kafka://host:port/topic; repeatable; default: "
                        "MODELPORT_LOG, else off); ids are <run_id>-<row>")
    p.add_argument("--log-config", metavar="FILE",
                   help="YAML file of the prediction log's model policies")


def _columns(values: list[str]) -> tuple[str, ...]:
    """Column names from repeated flags and comma lists (``--key a --key b`` = ``--key a,b``),
    as ``stream run`` reads them."""
    return tuple(dict.fromkeys(c.strip() for v in values for c in v.split(",") if c.strip()))


def spec_from(args: argparse.Namespace) -> Any:
    from modelport.batch.job import JobSpec
    from modelport.extras import require_drivers

    if not args.ref:
        raise ConfigurationError(
            "name the model to score (NAME, NAME:VERSION, NAME@ALIAS or a bundle directory), "
            "or score through an endpoint with 'modelport batch run --endpoint NAME'")
    require_drivers((args.input, "--input"), (args.output, "--output"),
                    (args.rejects, "--rejects"))
    for path, flag in ((args.output, "--output"), (args.rejects, "--rejects")):
        if path and "://" not in path:  # a local file or folder: writable, checked now
            writable_output(path, flag, folder_ok=True)
    options: dict[str, Any] = settings_from(args).storage_options
    if args.storage_options:
        try:
            options = json.loads(args.storage_options)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"--storage-options is not valid JSON: {exc.msg}") from None
        if not isinstance(options, dict):
            raise ConfigurationError("--storage-options must be a JSON object")
    return JobSpec(
        ref=args.ref, input=args.input, output=args.output, query=args.query,
        input_format=args.input_format, table=args.table, mode=args.mode, key=_columns(args.key),
        keep=_columns([*args.key, *args.keep]), prefix=args.prefix, ttl=args.ttl,
        rejects=args.rejects, max_reject_rate=args.max_reject_rate, chunk_rows=args.chunk_rows,
        engine=args.engine, engine_address=args.engine_address, workers=args.workers,
        run_id=getattr(args, "run_id", None), resume=getattr(args, "resume", False),
        accelerate=args.accelerate, trusted=args.trusted, storage_options=options,
        extra_columns=args.extra_columns, state_schema=args.state_schema,
        log=tuple(getattr(args, "log", None) or [s for s in os.environ.get(
            "MODELPORT_LOG", "").split(",") if s.strip() and s.strip() != "off"]),
        log_config=getattr(args, "log_config", None))


def _run(args: argparse.Namespace) -> int:
    from modelport.batch.job import BatchJob
    from modelport.batch.progress import Progress

    if getattr(args, "endpoint", None) or getattr(args, "shadow", None):
        return _run_endpoint(args)
    spec = spec_from(args)
    settings = settings_from(args)
    progress = Progress(enabled=not args.no_progress)
    job = BatchJob(spec, settings=settings, progress=progress)
    source_total = None
    try:
        source_total = job.source().total_rows()
    except Exception:  # the run reports input problems itself, with its own message
        source_total = None
    progress.total = source_total
    summary = job.run()
    data = summary.to_dict()
    if summary.noop:
        text = f"run {summary.run_id} already committed to {summary.output}; nothing to do"
    else:
        text = (f"scored {summary.rows_out:,} of {summary.rows_in:,} rows into {summary.output} "
                f"in {summary.duration_s:.1f}s ({summary.rows_per_s:,.0f} rows/s), run "
                f"{summary.run_id}")
        if summary.rejected:
            text += f"\n{summary.rejected:,} rows rejected (see {summary.rejects}): " \
                    f"{summary.first_reject_reason}"
    emit(args, data, text)
    return 0


def _run_endpoint(args: argparse.Namespace) -> int:
    """``batch run --endpoint NAME`` / ``--shadow REF`` (modelport.rollout.batch)."""
    from modelport.cli.common import registry_from
    from modelport.rollout.batch import run

    if args.endpoint and args.ref:
        raise ConfigurationError("give a model REF or --endpoint NAME, not both")
    with registry_from(args) as registry:
        summary = run(registry, input=args.input, output=args.output, endpoint=args.endpoint,
                      ref=args.ref, routing_key=args.routing_key,
                      keep=_columns([*args.key, *args.keep]), shadow=args.shadow,
                      shadow_report=args.shadow_report, run_id=args.run_id, query=args.query,
                      input_format=args.input_format, trusted=args.trusted,
                      accelerate=args.accelerate)
    shares = ", ".join(f"{v} {n:,}" for v, n in summary.variants.items())
    text = f"scored {summary.rows:,} rows into {summary.output} ({shares}), run {summary.run_id}"
    for name, s in summary.shadows.items():
        agreement = "-" if s["agreement"] is None else f"{s['agreement']:.2%}"
        text += (f"\nshadow {name}: agreement {agreement} on {s['compared']:,} rows, "
                 f"{s['errors']} errors; report {summary.shadow_report}")
    emit(args, summary.to_dict(), text)
    return 0


def _store(args: argparse.Namespace) -> Any:
    from modelport.batch.scheduler import JobStore

    return JobStore(settings_from(args).registry_url).load()


def _check_model(args: argparse.Namespace) -> None:
    """A job must name a model that exists now, not fail at its first slot."""
    from pathlib import Path

    if Path(args.ref).is_dir():
        return
    try:
        read_registry(args).resolve(args.ref)
    except NotFoundError as exc:
        raise NotFoundError(f"cannot schedule {args.ref}: {exc}") from None


def _schedule(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    _check_model(args)
    name = args.name or f"{args.ref.split('@')[0].split(':')[0].rstrip('/').split('/')[-1]}-batch"
    job = _store(args).add(name, spec, args.cron, catchup=args.catchup, now=datetime.now(UTC),
                           replace=args.replace)
    emit(args, {"name": job.name, "cron": job.cron, "next_slot": job.next_slot.isoformat()},
         f"scheduled {job.name} ({job.cron}); next run at {job.next_slot:%Y-%m-%d %H:%M} UTC; "
         "'modelport scheduler' runs it")
    return 0


def _unschedule(args: argparse.Namespace) -> int:
    _store(args).remove(args.name)
    emit(args, {"removed": args.name}, f"removed {args.name}")
    return 0


def _nothing_scheduled(args: argparse.Namespace) -> bool:
    """With no registry there is nothing to list: say where we looked, create nothing."""
    missing = missing_registry(settings_from(args))
    if missing is not None:
        emit(args, [], f"(none): {no_registry_message(missing)}")
    return missing is not None


def _jobs(args: argparse.Namespace) -> int:
    if _nothing_scheduled(args):
        return 0
    rows = [{"name": j.name, "cron": j.cron, "model": j.spec.ref, "output": j.spec.output,
             "next_slot": j.next_slot.isoformat(), "catchup": j.catchup}
            for j in _store(args).jobs()]
    emit(args, rows, table(rows, ["name", "cron", "model", "output", "next_slot"]))
    return 0


def _history(args: argparse.Namespace) -> int:
    if _nothing_scheduled(args):
        return 0
    rows = _store(args).history(args.name, limit=args.limit)
    for row in rows:
        for k in ("slot", "started_at", "finished_at"):
            if row.get(k) is not None:
                row[k] = row[k].isoformat()
    emit(args, rows, table(rows, ["job", "slot", "status", "rows_in", "rejected", "duration_s",
                                  "error"]))
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    from modelport.batch.job import BatchJob
    from modelport.batch.progress import Progress
    from modelport.batch.scheduler import Scheduler

    settings = settings_from(args)

    def run(spec: Any) -> Any:
        return BatchJob(spec, settings=settings, progress=Progress(enabled=False)).run()

    if args.once:
        store = _store(args)
        outcomes = Scheduler(store, run).tick()
        text = table(outcomes, ["job", "slot", "status", "rows_in", "error"])
        if not outcomes:
            text = "nothing due"
        upcoming = sorted(store.jobs(), key=lambda j: j.next_slot)
        text += (f"\nnext slot: {upcoming[0].name} at {upcoming[0].next_slot.isoformat()}"
                 if upcoming else "\nno jobs scheduled ('modelport batch schedule' adds one)")
        emit(args, outcomes, text)
        return 1 if any(o["status"] == "failed" for o in outcomes) else 0
    scheduler = Scheduler(_store(args), run)
    print(f"scheduler polling every {args.poll:g}s; Ctrl-C stops it", file=sys.stderr)
    scheduler.run(poll_s=args.poll)
    return 0
