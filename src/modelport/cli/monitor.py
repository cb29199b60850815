"""``modelport monitor …``: drift reports, alert rules, the evaluation loop, Grafana and Prometheus.

::

    modelport monitor drift churn --since 24h --by version [--window 1h]
    modelport monitor reference churn:3 --data train.parquet | --from-log --since 7d
    modelport monitor apply rules.yaml [--dry-run]
    modelport monitor run [--once] [--interval 60] [--scrape URL] [--metrics-port 9109]
    modelport monitor status / history [--rule R] [--kind K]
    modelport monitor silence --match model=churn --for 2h [--comment …]
    modelport monitor grafana > dashboard.json
    modelport monitor prometheus-rules > modelport-rules.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelport.cli.common import emit, existing_file, read_registry, registry_from, table
from modelport.errors import ConfigurationError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from modelport.monitor.sources import LogMetrics
    from modelport.registry import Registry

log = logging.getLogger("modelport.monitor")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    monitor = sub.add_parser("monitor", help="drift, alert rules, notifications, Grafana")
    msub = monitor.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)

    p = msub.add_parser("drift", help="drift of a model's logged inputs against its reference")
    p.add_argument("model")
    p.add_argument("--since", default="24h", help="how far back (a duration such as 24h, or an "
                                                  "ISO time; default 24h)")
    p.add_argument("--until", help="end of the range (default: now)")
    p.add_argument("--by", choices=("version",), help="one report per model version")
    p.add_argument("--window", help="windows of this length (e.g. 1h): one report per window")
    p.add_argument("--step", help="start a window every STEP (e.g. 15m with --window 1h: "
                                  "sliding windows; default: the window, tumbling)")
    p.add_argument("--version", type=int, help="only this version")
    p.set_defaults(func=_drift)

    p = msub.add_parser("reference", help="set the drift reference of a model version")
    p.add_argument("ref", help="NAME:VERSION")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a Parquet or CSV file of representative inputs")
    src.add_argument("--from-log", action="store_true",
                     help="use the version's logged inputs of --since .. --until")
    p.add_argument("--since", default="7d")
    p.add_argument("--until")
    p.set_defaults(func=_reference)

    p = msub.add_parser("apply", help="validate and store a rules file (rules, receivers, "
                                      "triggers, silences)")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="validate and print, store nothing")
    p.set_defaults(func=_apply)

    p = msub.add_parser("run", help="evaluate the rules every --interval seconds")
    p.add_argument("--once", action="store_true", help="evaluate once and exit")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between evaluations")
    p.add_argument("--scrape", metavar="URL",
                   help="a server's /metrics, for error_rate and log_drops rules")
    p.add_argument("--metrics-port", type=int,
                   help="serve the monitor's Prometheus metrics on 127.0.0.1:PORT")
    p.set_defaults(func=_run)

    p = msub.add_parser("status", help="each rule's state and last value")
    p.set_defaults(func=_status)

    p = msub.add_parser("history", help="evaluations, notifications and retraining runs")
    p.add_argument("--rule")
    p.add_argument("--kind", choices=("evaluation", "notification", "trigger"))
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_history)

    p = msub.add_parser("silence", help="mute alerts whose labels match, for a while")
    p.add_argument("--match", action="append", required=True, metavar="LABEL=VALUE")
    p.add_argument("--for", dest="duration", default="2h", help="how long (default 2h)")
    p.add_argument("--comment", default="")
    p.set_defaults(func=_silence)

    p = msub.add_parser("grafana", help="print a Grafana dashboard (JSON) for modelport metrics")
    p.set_defaults(func=_grafana)

    p = msub.add_parser("prometheus-rules",
                        help="print the applied rules as Prometheus alerting rules (YAML)")
    p.set_defaults(func=_prometheus_rules)

    p = sub.add_parser("dashboard", help="serve the web dashboard on its own (read-only)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--scrape", metavar="URL",
                   help="a server's /metrics to show live traffic from (e.g. "
                        "http://127.0.0.1:8000/metrics)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host (the dashboard has no authentication of "
                        "its own; 'modelport serve --auth' serves it behind API keys)")
    p.set_defaults(func=_dashboard)


# ---------------------------------------------------------------------------------- helpers
def parse_time(text: str | None, *, default: datetime, flag: str) -> datetime:
    """A duration back from now (``24h``) or an ISO time."""
    from modelport.durations import parse_duration

    if text is None:
        return default
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text, what=flag))
    except ConfigurationError:
        raise ConfigurationError(f"{flag} {text!r} is neither a duration (24h, 7d) nor an ISO "
                                 "time (2026-12-01T00:00:00Z)") from None


def _metrics(registry: Registry, scrape: str | None = None) -> LogMetrics:
    from modelport.monitor.reference import References
    from modelport.monitor.sources import LogMetrics

    return LogMetrics(registry, references=References(registry), scrape_url=scrape)


def _store(args: argparse.Namespace, *, read_only: bool = False) -> Any:
    from modelport.monitor.store import MonitorStore

    return MonitorStore(read_registry(args) if read_only else registry_from(args))


def _load_yaml(path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(existing_file(path, "rules file").read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"{path} is not valid YAML{where}: "
                                 f"{getattr(exc, 'problem', exc)}") from None


# ---------------------------------------------------------------------------------- drift
def _drift(args: argparse.Namespace) -> int:
    registry = read_registry(args)
    now = datetime.now(UTC)
    until = parse_time(args.until, default=now, flag="--until")
    since = parse_time(args.since, default=now - timedelta(hours=24), flag="--since")
    if since >= until:
        raise InvalidInputError("--since must be before --until")
    source = _metrics(registry)
    windows = [(since, until)]
    if args.window:
        from modelport.durations import parse_duration

        width = timedelta(seconds=parse_duration(args.window, what="--window"))
        step = timedelta(seconds=parse_duration(args.step, what="--step")) if args.step \
            else width
        if width.total_seconds() <= 0 or step.total_seconds() <= 0 \
                or (until - since) / step > 1000:
            raise ConfigurationError("--window and --step must make between 1 and 1000 windows")
        windows, start = [], since
        while start < until:
            windows.append((start, min(start + width, until)))
            start += step
    table_rows = source.window(args.model, since.timestamp(), until.timestamp())
    if table_rows.num_rows == 0:
        raise NotFoundError(f"no logged predictions of {args.model} between "
                            f"{since:%Y-%m-%d %H:%M} and {until:%Y-%m-%d %H:%M} UTC; log them "
                            "with 'modelport serve --log' (or stream/batch --log)")
    versions = sorted({int(v) for v in table_rows.column("version").to_pylist()
                       if v is not None})
    if args.version is not None:
        versions = [args.version]
    elif not args.by:
        versions = versions[-1:]  # the newest version in the range
    reports: list[dict[str, Any]] = []
    for version in versions:
        for start, end in windows:
            found = source.drift_report(args.model, start.timestamp(), end.timestamp(),
                                        version=version)
            if found is None:
                continue
            report = found[1].to_dict()
            reports.append({"model": args.model, "version": version,
                            "since": start.isoformat(), "until": end.isoformat(), **report})
    if not reports:
        raise NotFoundError(f"no logged rows of {args.model} version(s) {versions} in range")
    lines = []
    for report in reports:
        lines.append(f"{report['model']}:{report['version']}  {report['since'][:16]} .. "
                     f"{report['until'][:16]}  rows {report['rows']}  drifted "
                     f"{len(report['drifted_features'])}/{len(report['features'])}"
                     + ("  DATASET DRIFT" if report["dataset_drift"] else ""))
        rows = [{"feature": name, "method": f["method"] or "-",
                 "value": "-" if f["value"] is None else f"{f['value']:.4g}",
                 "psi": f"{f['psi']:.3f}", "missing": f"{f['missing_share']:.1%}",
                 "out_of_range": f"{f['out_of_range_share']:.1%}",
                 "drifted": "DRIFT" if f["drifted"] else ""}
                for name, f in report["features"].items()]
        lines.append(table(rows, ["feature", "method", "value", "psi", "missing",
                                  "out_of_range", "drifted"]))
        lines.append("")
    emit(args, reports, "\n".join(lines))
    return 0


def _reference(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from modelport.monitor.reference import References
    from modelport.registry.refs import parse_ref

    registry = read_registry(args)
    version = registry.resolve(args.ref)
    if parse_ref(args.ref).version is None and "@" not in args.ref:
        raise InvalidInputError(f"name the version: {version.name}:{version.version}")
    references = References(registry)
    if args.data:
        data = _read_data(args.data)
    else:
        now = datetime.now(UTC)
        since = parse_time(args.since, default=now - timedelta(days=7), flag="--since")
        until = parse_time(args.until, default=now, flag="--until")
        from modelport.monitor.sources import input_columns

        logged = _metrics(registry).window(version.name, since.timestamp(), until.timestamp())
        if logged.num_rows:
            logged = logged.filter(pa.compute.equal(logged.column("version"), version.version))
        if logged.num_rows == 0:
            raise NotFoundError(f"no logged predictions of {version.ref} in that range")
        data = pa.table(input_columns(logged))
    signature = registry.load(version.ref, lazy=True).signature
    unknown = sorted(set(data.column_names) - {c.name for c in signature.inputs})
    missing = sorted({c.name for c in signature.inputs} - set(data.column_names))
    if missing:
        raise InvalidInputError(f"the reference data lacks input column(s) {missing} of "
                                f"{version.ref}")
    data = data.select([c.name for c in signature.inputs])
    path = references.store(version.name, version.version, data)
    emit(args, {"model": version.name, "version": version.version, "rows": data.num_rows,
                "path": str(path), "ignored_columns": unknown},
         f"{version.ref}: reference of {min(data.num_rows, 100_000)} rows stored"
         + (f" (ignored columns: {', '.join(unknown)})" if unknown else ""))
    return 0


def _read_data(path: str) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    file = existing_file(path, "--data file")
    try:
        if file.suffix.lower() == ".csv":
            return pacsv.read_csv(file)
        return pq.read_table(file)
    except Exception as exc:  # pyarrow raises many kinds for a file that is not what it says
        raise InvalidInputError(f"cannot read {path} as "
                                f"{'CSV' if file.suffix.lower() == '.csv' else 'Parquet'}: "
                                f"{str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------- rules
def _apply(args: argparse.Namespace) -> int:
    from modelport.monitor.config import MonitorConfig

    document = _load_yaml(args.file)
    config = MonitorConfig.from_document(document)
    registry = registry_from(args)
    _check_models(registry, config)
    if args.dry_run:
        emit(args, {"valid": True, "rules": [r.name for r in config.rules]},
             f"{args.file}: valid; {len(config.rules)} rule(s), {len(config.receivers)} "
             f"receiver(s), {len(config.triggers)} trigger(s) (dry run: nothing stored)")
        return 0
    from modelport.monitor.store import MonitorStore

    revision = MonitorStore(registry).apply(document)
    emit(args, {"revision": revision, "rules": [r.name for r in config.rules]},
         f"applied {args.file} as revision {revision}: {len(config.rules)} rule(s)")
    return 0


def _check_models(registry: Registry, config: Any) -> None:
    """Rules must name registered models and, for feature metrics, their input features."""
    names = {m.name for m in registry.list_models()}
    for rule in config.rules:
        if rule.model not in names:
            raise NotFoundError(f"rule {rule.name!r} watches model {rule.model!r}, which is not "
                                "registered; see 'modelport models list'")
        if rule.feature:
            inputs = {c.name for c in registry.load(rule.model, lazy=True).signature.inputs}
            if rule.feature not in inputs:
                raise InvalidInputError(
                    f"rule {rule.name!r}: model {rule.model} has no input feature "
                    f"{rule.feature!r}; its features: {', '.join(sorted(inputs))}")


def _run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from modelport.monitor.evaluate import Monitor
    from modelport.monitor.exports import MonitorMetrics
    from modelport.monitor.store import MonitorStore

    if args.interval <= 0:
        raise ConfigurationError("--interval must be above 0 seconds")
    registry = registry_from(args)
    store = MonitorStore(registry, actor="monitor")
    store.config()  # fails early, with what to do, when nothing is applied
    prom = CollectorRegistry()
    metrics = MonitorMetrics(prom)
    source = _metrics(registry, args.scrape)
    monitor = Monitor(store, source, on_evaluation=metrics.observe,
                      on_delivery=metrics.delivered)
    if args.metrics_port:
        try:
            start_http_server(args.metrics_port, addr="127.0.0.1", registry=prom)
        except OSError as exc:
            raise ConfigurationError(f"--metrics-port {args.metrics_port}: {exc.strerror}; "
                                     "choose another port") from None
    stop = threading.Event()
    if not args.once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        while True:
            outcomes = monitor.evaluate()
            _export_quality(source, metrics, monitor, time.time())
            if args.once or args.json:
                emit(args, [o.__dict__ for o in outcomes],
                     "\n".join(f"{o.rule}: {o.status}"
                               + (f" (value {o.value:.4g})" if o.value is not None else "")
                               + (f" error: {o.error}" if o.error else "") for o in outcomes)
                     or "(no rules)")
            if args.once or stop.wait(args.interval):
                break
    finally:
        if monitor.dispatcher is not None:
            monitor.dispatcher.wait()
        monitor.close()
    return 0


def _export_quality(source: LogMetrics, metrics: Any, monitor: Any, now: float) -> None:
    config = monitor.config
    if config is None:
        return
    seen: set[tuple[str, float]] = set()
    for rule in config.rules:
        if (rule.model, rule.window_s) in seen:
            continue
        seen.add((rule.model, rule.window_s))
        try:
            by_version = source.quality_by_version(rule.model, now - rule.window_s, now)
        except Exception as exc:  # quality gauges are extra: never stop the loop for them
            log.warning("quality of %s: %s", rule.model, exc)
            continue
        for version, values in by_version.items():
            for name, value in values.items():
                metrics.quality.labels(rule.model, str(version), name).set(value)


def _status(args: argparse.Namespace) -> int:
    store = _store(args, read_only=True)
    revision, config = store.config()
    states = store.states()
    rows = []
    for rule in config.rules:
        state, value, at = states.get(rule.name, (None, None, None))
        rows.append({"rule": rule.name, "model": rule.model, "metric": rule.metric,
                     "condition": f"{rule.op} {rule.threshold:g}",
                     "status": state.status if state else "not evaluated",
                     "value": value, "severity": rule.severity,
                     "evaluated": datetime.fromtimestamp(at, UTC).isoformat(
                         timespec="seconds") if at else None})
    text = f"revision {revision}\n" + table(
        [{**r, "value": "-" if r["value"] is None else f"{r['value']:.4g}"} for r in rows],
        ["rule", "model", "metric", "condition", "status", "value", "severity", "evaluated"])
    emit(args, {"revision": revision, "rules": rows}, text)
    return 0


def _history(args: argparse.Namespace) -> int:
    store = _store(args, read_only=True)
    entries = store.history(limit=args.limit, kind=args.kind, rule=args.rule)
    rows = [{**e, "at": datetime.fromtimestamp(e["at"], UTC).isoformat(timespec="seconds")}
            for e in entries]
    emit(args, rows, table([{**r, "details": json.dumps(r["details"])[:80],
                             "value": "-" if r["value"] is None else f"{r['value']:.4g}"}
                            for r in rows],
                           ["at", "kind", "rule", "status", "value", "details"]))
    return 0


def _silence(args: argparse.Namespace) -> int:
    from modelport.durations import parse_duration
    from modelport.monitor.store import MonitorStore

    matchers = {}
    for item in args.match:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--match {item!r}: write LABEL=VALUE, e.g. model=churn")
        matchers[key] = value
    until = datetime.now(UTC) + timedelta(seconds=parse_duration(args.duration, what="--for"))
    store = MonitorStore(registry_from(args))
    _, document = store.document()
    silences = [s for s in document.get("silences") or []
                if datetime.fromisoformat(str(s["until"]).replace("Z", "+00:00"))
                > datetime.now(UTC)]  # expired silences are dropped as new ones are added
    silences.append({"matchers": matchers, "until": until.isoformat(),
                     "comment": args.comment})
    revision = store.apply({**document, "silences": silences})
    emit(args, {"revision": revision, "matchers": matchers, "until": until.isoformat()},
         f"silenced {matchers} until {until:%Y-%m-%d %H:%M} UTC (revision {revision})")
    return 0


def _grafana(args: argparse.Namespace) -> int:
    from modelport.monitor.exports import grafana_dashboard

    sys.stdout.write(json.dumps(grafana_dashboard(), indent=2) + "\n")
    return 0


def _prometheus_rules(args: argparse.Namespace) -> int:
    import yaml

    from modelport.monitor.exports import prometheus_rules

    _, config = _store(args, read_only=True).config()
    sys.stdout.write(yaml.safe_dump(prometheus_rules(config), sort_keys=False))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    import ipaddress

    import uvicorn

    from modelport.core.concurrency import run_sync
    from modelport.web.dashboard import Dashboard

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and not args.insecure:
        raise ConfigurationError(
            f"--host {args.host} would show the dashboard to the network without "
            "authentication; serve it with 'modelport serve --auth' (at /dashboard), or pass "
            "--insecure")
    registry = read_registry(args)
    scrape = args.scrape

    async def metrics_text() -> str:
        if not scrape:
            return ""
        import urllib.request

        def fetch() -> str:
            with urllib.request.urlopen(scrape, timeout=5) as response:
                return str(response.read().decode())

        try:
            return await run_sync(None, fetch)
        except OSError as exc:
            log.warning("could not read %s: %s", scrape, exc)
            return ""

    board = Dashboard(registry, metrics_text=metrics_text)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        if path == "/dashboard" or path.startswith("/dashboard/"):
            sub = dict(scope, root_path="/dashboard", path=path[len("/dashboard"):] or "/")
            await board(sub, receive, send)
            return
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", b"/dashboard/"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    print(f"dashboard on http://{args.host}:{args.port}/dashboard/", file=sys.stderr,
          flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    lifespan="off")
    except OSError as exc:
        raise ConfigurationError(f"--port {args.port}: {exc.strerror}; choose another port") \
            from None
    return 0


__all__ = ["parse_time", "register"]
