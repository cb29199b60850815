"""``modelport stream run REF --source URI --sink URI``: a streaming inference worker.

Runs until SIGTERM / SIGINT, then finishes the batch in flight, commits it and leaves the
consumer group. Start more workers with the same ``--group`` to share the partitions.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from modelport.cli.common import add_extra_columns, add_log_format, read_registry, settings_from
from modelport.errors import ConfigurationError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("stream", help="predict on a Kafka topic or Redis stream as events arrive")
    verbs = p.add_subparsers(dest="stream_command", metavar="COMMAND")
    run = verbs.add_parser(
        "run", help="consume, predict in micro-batches, produce; commit after delivery",
        description="Consume JSON records, predict them in micro-batches and write each "
                    "prediction to a topic, a stream or a database table. Offsets are committed "
                    "only after the sink has the outputs (at-least-once; SQL sinks upsert).")
    run.add_argument("ref", nargs="?",
                     help="NAME, NAME:VERSION, NAME@ALIAS or a bundle directory")
    run.add_argument("--endpoint", metavar="NAME",
                     help="predict through this endpoint's traffic policy (REF is then omitted):"
                          " messages are routed by their key as REST requests with that key are")
    run.add_argument("--source", required=True, metavar="URI",
                     help="kafka://HOST:PORT/TOPIC or redis://HOST:PORT/DB/STREAM")
    run.add_argument("--sink", required=True, metavar="URI",
                     help="kafka://HOST:PORT/TOPIC, redis://HOST:PORT/DB/STREAM or a database "
                          "URL (then --table)")
    run.add_argument("--group", metavar="G",
                     help="consumer group (default: modelport-<model name>)")
    run.add_argument("--table", metavar="NAME", help="table for a database sink")
    run.add_argument("--key", action="append", default=[], metavar="COLUMN",
                     help="row id column(s), repeatable or A,B: the upsert key of a database "
                          "sink (default: the input's topic, partition, offset and index); "
                          "also copied into every output")
    run.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                     help="copy this input field into every output (repeatable or A,B); not "
                          "fed to the model")
    # the names this command had before it shared --key / --keep with batch run and predict
    run.add_argument("--key-columns", action="append", default=[], dest="key_columns",
                     help=argparse.SUPPRESS)
    run.add_argument("--passthrough", action="append", default=[], help=argparse.SUPPRESS)
    run.add_argument("--dead-letter", metavar="URI",
                     help="where malformed or invalid messages go (default: the source's "
                          "topic or stream + '.dlq')")
    run.add_argument("--max-batch", type=int, default=500, metavar="N",
                     help="most messages per prediction call (default 500)")
    run.add_argument("--max-wait-ms", type=float, default=100.0, metavar="T",
                     help="longest wait to fill a batch (default 100)")
    run.add_argument("--exactly-once", action="store_true",
                     help="Kafka to Kafka: outputs and offsets in one transaction")
    add_extra_columns(run)
    run.add_argument("--strict", action="store_true",
                     help="the same as --extra-columns refuse: dead-letter records with fields "
                          "the model does not take")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve Prometheus metrics on 127.0.0.1:PORT")
    run.add_argument("--drift-window", type=int, default=0, metavar="ROWS",
                     help="live drift gauges (with --metrics-port): PSI per feature against "
                          "the model version's reference every ROWS messages (default off)")
    run.add_argument("--session-timeout-ms", type=int, default=10_000, metavar="MS",
                     help="Kafka consumer session timeout (default 10000)")
    run.add_argument("--max-poll-interval-ms", type=int, metavar="MS",
                     help="Kafka: longest pause between polls before the group moves this "
                          "worker's partitions (also the rebalance timeout)")
    run.add_argument("--from", dest="start_from", choices=("earliest", "latest"),
                     default="earliest", help="where a new group starts (default earliest)")
    run.add_argument("--instance-id", metavar="ID",
                     help="stable name of this worker (e.g. the pod name): a restarted worker "
                          "takes its partitions back at once (Kafka static membership), and "
                          "it names the Redis consumer and the Kafka transactional id")
    run.add_argument("--claim-idle-ms", type=int, default=30_000, metavar="MS",
                     help="Redis: claim entries another consumer left pending this long")
    run.add_argument("--kafka-config", action="append", default=[], metavar="KEY=VALUE",
                     help="extra librdkafka setting for consumer and producer (repeatable)")
    run.add_argument("--refresh-s", type=float, default=10.0, metavar="S",
                     help="how often to look for a moved alias (NAME@ALIAS) between batches")
    add_log_format(run)
    run.add_argument("--log", action="append", metavar="STORE",
                     help="write every prediction to the prediction log (delta, a folder, "
                          "s3://…, postgresql://…, kafka://host:port/topic; repeatable; "
                          "default: MODELPORT_LOG, else off)")
    run.add_argument("--log-config", metavar="FILE",
                     help="YAML file of the prediction log's flush cadence and model policies")
    run.add_argument("--log-json", action="store_true", help=argparse.SUPPRESS)  # deprecated
    run.add_argument("--accelerate", choices=["auto", "onnx", "off"], default="auto",
                     help="run the model under ONNX Runtime when predictions match "
                          "(default auto)")
    run.add_argument("--trusted", action="store_true",
                     help="allow pickle-based artifacts (only for models you trust)")
    run.set_defaults(func=_run)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _csv(value: str | list[str] | None) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value or ""]
    return tuple(dict.fromkeys(v.strip() for text in values for v in text.split(",")
                               if v.strip()))


def _deprecated(old: str, new: str) -> None:
    print(f"warning: {old} is deprecated; use {new} (the name batch run and predict use)",
          file=sys.stderr)


def key_and_keep(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--key`` and ``--keep`` columns, with the deprecated ``--key-columns`` and
    ``--passthrough`` read as them. Key columns are kept in the output too, as in batch."""
    if args.key_columns:
        _deprecated("--key-columns", "--key")
    if args.passthrough:
        _deprecated("--passthrough", "--keep")
    key = _csv([*args.key, *args.key_columns])
    keep = _csv([*args.key, *args.key_columns, *args.keep, *args.passthrough])
    return key, keep


def _kafka_config(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--kafka-config {pair!r}: write KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _runner(args: argparse.Namespace) -> tuple[Any, Any]:
    """The runner for REF, and for registry references a function that follows alias moves."""
    from modelport.core.runner import Runner, RunnerOptions

    options = RunnerOptions(accelerate=args.accelerate)
    if Path(args.ref).is_dir():
        from modelport.bundle.model import load_bundle

        model = load_bundle(args.ref, trusted=args.trusted, lazy=args.accelerate != "off")
        return Runner(model, options).load(), None  # native model only if the ONNX form can't
    from modelport.core.service import InferenceService

    service = InferenceService(read_registry(args), options=options, trusted=args.trusted)

    def refresh() -> Runner:
        service.refresh()
        return service.runner(args.ref)

    return service.runner(args.ref), refresh


def _endpoint_runner(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The endpoint's primary runner, a refresh that follows policy changes, and the routing."""
    from modelport.core.runner import RunnerOptions
    from modelport.core.service import InferenceService
    from modelport.rollout.router import EndpointRouter
    from modelport.rollout.store import EndpointStore
    from modelport.rollout.stream import StreamRouting

    if args.ref:
        raise ConfigurationError("give a model REF or --endpoint NAME, not both")
    registry = read_registry(args)
    service = InferenceService(registry, options=RunnerOptions(accelerate=args.accelerate),
                               trusted=args.trusted)
    router = EndpointRouter(EndpointStore(registry, actor="modelport-stream"), service,
                            source="stream")
    router.refresh(force=True)
    if args.endpoint not in router.endpoints:
        EndpointStore(registry).get(args.endpoint)  # NotFoundError naming the fix
        raise ConfigurationError(f"endpoint {args.endpoint!r}: {router.errors[args.endpoint]}")
    routing = StreamRouting(router, args.endpoint)
    runner = routing.primary()

    def refresh() -> Any:
        service.refresh()
        router.tick()
        return routing.loop.runner if routing.loop is not None else runner  # no switch here

    return runner, refresh, routing


def _attach_drift(args: argparse.Namespace, runner: Any, metrics_registry: Any) -> None:
    from modelport.monitor import live

    if Path(args.ref).is_dir():
        lookup = live.bundle_reference(args.ref)
    else:
        from modelport.monitor.reference import References

        lookup = References(read_registry(args))
    live.attach(runner.events, metrics_registry, lookup, args.drift_window)


def _configure_logging(args: argparse.Namespace) -> None:
    from modelport import logformat

    if args.log_json:
        _deprecated("--log-json", "--log-format json")
        args.log_format = "json"
    logformat.configure(settings_from(args).log_format,
                        logging.INFO if args.verbose else logging.WARNING)
    logging.getLogger("modelport.stream").setLevel(logging.INFO)
    # librdkafka logs every failed connection attempt (about 20 lines a second): the worker
    # says once what is wrong; -v shows the client's own lines
    logging.getLogger("modelport.stream.librdkafka").setLevel(
        logging.DEBUG if args.verbose else logging.CRITICAL)


def _run(args: argparse.Namespace) -> int:
    from modelport.extras import require_drivers

    # before the stream package imports its clients: a missing one is one line naming the extra
    require_drivers((args.source, "--source"), (args.sink, "--sink"),
                    (args.dead_letter, "--dead-letter"))
    from prometheus_client import CollectorRegistry, start_http_server

    from modelport.stream import StreamLoop, StreamMetrics, StreamOptions, open_sink, open_source
    from modelport.stream import parse as parse_endpoint
    from modelport.stream.failpoint import ENV, CrashAt

    # SIGTERM before the loop exists (still loading the model) must stop it as soon as it does
    stopping = threading.Event()
    loops: list[Any] = []

    def _stop(signum: int, frame: Any) -> None:
        stopping.set()
        for loop in loops:
            loop.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _configure_logging(args)
    if args.max_batch < 1 or args.max_wait_ms < 0:
        raise ConfigurationError("--max-batch must be at least 1 and --max-wait-ms not negative")
    source_at = parse_endpoint(args.source)
    if source_at.kind == "sql":
        raise ConfigurationError(
            "--source must be kafka://HOST:PORT/TOPIC or redis://HOST:PORT/DB/STREAM; a "
            "database can be a --sink")
    sink_at = parse_endpoint(args.sink)
    dead_at = parse_endpoint(args.dead_letter) if args.dead_letter else \
        source_at.with_name(f"{source_at.name}.dlq")
    if dead_at.kind == "sql":
        raise ConfigurationError("--dead-letter must be a Kafka topic or a Redis stream")
    if args.exactly_once and not (
            source_at.kind == sink_at.kind == dead_at.kind == "kafka"
            and sink_at.location == dead_at.location):
        raise ConfigurationError(
            "--exactly-once needs a Kafka source, a Kafka sink and a dead-letter topic on the "
            "sink's cluster (one transaction holds the outputs, the dead letters and the "
            "source offsets); drop --exactly-once for other sources and sinks")
    if source_at.kind == "kafka":
        from modelport.stream.kafka import wait_for_topics

        wait_for_topics(source_at.location, [source_at.name])
    for at in (sink_at, dead_at):  # outputs and dead letters need their topics from the start
        if at.kind == "kafka":
            from modelport.stream.kafka import ensure_topics

            ensure_topics(at.location, [at.name],
                          like=source_at.name if at.location == source_at.location else at.name)

    routing = None
    if args.endpoint:
        runner, refresh, routing = _endpoint_runner(args)
    elif not args.ref:
        raise ConfigurationError(
            "name the model to run (NAME, NAME:VERSION, NAME@ALIAS or a bundle directory), or "
            "run through an endpoint with 'modelport stream run --endpoint NAME'")
    else:
        runner, refresh = _runner(args)
    group = args.group or f"modelport-{args.endpoint or runner.name}"
    consumer = args.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    kafka_config = _kafka_config(args.kafka_config)
    consumer_config = dict(kafka_config)
    if args.instance_id:
        consumer_config["group.instance.id"] = args.instance_id
    if args.max_poll_interval_ms:
        consumer_config["max.poll.interval.ms"] = args.max_poll_interval_ms
    source = open_source(source_at, group=group, consumer=consumer,
                         session_timeout_ms=args.session_timeout_ms, start_from=args.start_from,
                         claim_idle_ms=args.claim_idle_ms, config=consumer_config,
                         max_batch=args.max_batch)
    transactional_id = f"modelport-{group}-{consumer}" if args.exactly_once else None
    key, keep = key_and_keep(args)
    sink = open_sink(sink_at, table=args.table, key_columns=key,
                     transactional_id=transactional_id, config=kafka_config)
    shared = dead_at.kind == sink_at.kind and dead_at.location == sink_at.location
    dead_letters = sink if shared else open_sink(dead_at, config=kafka_config)

    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    if args.drift_window:  # live drift gauges (modelport.monitor.live) beside the stream's
        _attach_drift(args, runner, registry)
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=registry)
    from modelport.log import start_logging

    prediction_log = start_logging(runner.events, stores=args.log, config_file=args.log_config,
                                   settings=settings_from(args), metrics_registry=registry)

    options = StreamOptions(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                            passthrough=keep,
                            allow_extra=not args.strict and args.extra_columns != "refuse",
                            extra_columns="refuse" if args.strict else args.extra_columns,
                            exactly_once=args.exactly_once,
                            # an endpoint's policy changes reach the worker within a second
                            refresh_interval_s=min(args.refresh_s, 0.5) if routing is not None
                            else args.refresh_s)
    loop = StreamLoop(runner, source, sink, dead_letters=dead_letters,
                      dead_letter_topic=dead_at.name, options=options, metrics=metrics,
                      failpoint=CrashAt.from_env(os.environ.get(ENV)), refresh=refresh,
                      routing=routing)
    # the model and libraries live as long as the worker: keep the garbage collector from
    # rescanning them after every batch (measured: a visible share of per-batch time)
    gc.freeze()
    loops.append(loop)
    if stopping.is_set():
        loop.stop()
    try:
        totals = loop.run()
    finally:
        if routing is not None:  # the endpoint's traffic counts reach the registry
            routing.router.close()
        if prediction_log is not None:  # SIGTERM: what the log holds is flushed before exit
            runner.events.flush()
            prediction_log.close()
    print(f"stopped after {totals.messages} messages: {totals.outputs} predictions, "
          f"{totals.dead_letters} dead letters", file=sys.stderr)
    return 0
