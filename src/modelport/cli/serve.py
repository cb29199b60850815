"""``modelport serve [REF ...]``: serve registered models over REST (and gRPC) until SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from modelport.cli.common import (
    add_extra_columns,
    add_log_format,
    missing_registry,
    no_registry_message,
    settings_from,
)
from modelport.errors import ConfigurationError, NotFoundError

if TYPE_CHECKING:
    from modelport.serving.config import ServeConfig
    from modelport.settings import Settings


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "serve", help="serve registered models over REST (V2, KServe V1, MLflow) and gRPC",
        description="Serve models from the registry. Moving an alias reaches the running server "
                    "without a restart. Binds to 127.0.0.1 unless --host says otherwise.")
    p.add_argument("refs", nargs="*", metavar="REF",
                   help="models to serve: NAME, NAME:VERSION or NAME@ALIAS (default: the latest "
                        "version of every registered model)")
    p.add_argument("--config", metavar="FILE", help="YAML file with serve settings (flags win)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8000; 0 picks a free one)")
    p.add_argument("--grpc-port", type=int, metavar="PORT",
                   help="also serve Open Inference Protocol gRPC here")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes sharing the port (default 1)")
    p.add_argument("--accept", choices=["shared", "reuseport"],
                   help="with several workers: one listening socket that idle workers accept "
                        "from (shared, the default), or one SO_REUSEPORT socket per worker")
    p.add_argument("--accelerate", choices=["auto", "onnx", "off"],
                   help="run models under ONNX Runtime when predictions match (default auto)")
    p.add_argument("--trusted", action="store_true", default=None,
                   help="allow pickle-based artifacts (only for models you trust)")
    add_extra_columns(p, default=None)
    p.add_argument("--invocations-model", metavar="NAME",
                   help="the model MLflow's POST /invocations answers without ?model= when "
                        "several models are served (default: refuse with 400)")
    p.add_argument("--max-batch-rows", type=int, metavar="ROWS",
                   help="rows per coalesced model call")
    p.add_argument("--max-wait-ms", type=float, metavar="MS",
                   help="hold a batch open this long to gather rows (default 0)")
    p.add_argument("--max-body-bytes", type=int, metavar="BYTES",
                   help="larger request bodies get 413")
    p.add_argument("--max-rows", type=int, metavar="ROWS", help="rows per request")
    p.add_argument("--request-timeout", type=float, metavar="SECONDS", dest="request_timeout_s",
                   help="seconds per prediction before 504")
    p.add_argument("--max-queue-wait-ms", type=float, metavar="MS",
                   help="refuse requests with 503 once queued work would wait longer")
    p.add_argument("--poll-interval", type=float, metavar="SECONDS", dest="poll_interval_s",
                   help="seconds between registry checks for moved aliases (0: no hot reload)")
    p.add_argument("--shutdown-delay", type=float, metavar="SECONDS", dest="shutdown_delay_s",
                   help="seconds to keep serving with readiness off after SIGTERM")
    p.add_argument("--access-log", action="store_true", default=None,
                   help="log every request (one line with its request id)")
    p.add_argument("--log", action="append", metavar="STORE",
                   help="write every prediction to the prediction log: delta (under "
                        "MODELPORT_HOME/log), a folder, s3://bucket/prefix, postgresql://... or "
                        "kafka://host:port/topic (repeatable; default: MODELPORT_LOG, else off)")
    p.add_argument("--log-config", metavar="FILE",
                   help="YAML file of the prediction log's flush cadence and per-model policies "
                        "(sample_rate, include, drop, hash, entity_key)")
    p.add_argument("--drift-window", type=int, metavar="ROWS",
                   help="live drift gauges on /metrics: PSI per feature against each model "
                        "version's reference, every ROWS predictions (e.g. 1000; default off)")
    add_log_format(p)
    sec = p.add_argument_group(
        "security", "authentication, TLS, CORS, model-attack defences (see README: Security)")
    sec.add_argument("--auth", action="store_true", default=None,
                     help="require an API key (or JWT) on every route but health; create keys "
                          "with 'modelport auth create-key'")
    sec.add_argument("--keys-file", metavar="FILE",
                     help="read API keys from this file instead of the registry database")
    sec.add_argument("--insecure", action="store_true", default=None,
                     help="allow a non-loopback --host without --auth")
    sec.add_argument("--allow-admin-routes", action="store_true", default=None,
                     help="without --auth: enable model repository load/unload and other admin "
                          "routes (off by default)")
    sec.add_argument("--public-metrics", action="store_true", default=None,
                     help="with --auth: serve /metrics without a token")
    sec.add_argument("--oidc-issuer", metavar="URL", help="accept JWTs from this issuer")
    sec.add_argument("--oidc-audience", metavar="AUD", help="the audience JWTs must name")
    sec.add_argument("--oidc-jwks", metavar="FILE_OR_URL", help="the issuer's JWKS")
    sec.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS (and gRPC over TLS)")
    sec.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    sec.add_argument("--tls-client-ca", metavar="PEM",
                     help="require client certificates signed by this CA (mutual TLS)")
    sec.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                     help="allow browser calls from this origin (repeatable; * for any)")
    sec.add_argument("--round-probabilities", type=int, metavar="N",
                     help="round returned probabilities to N decimals")
    sec.add_argument("--labels-only", action="store_true", default=None,
                     help="return labels without probabilities")
    sec.add_argument("--out-of-distribution", choices=["off", "flag", "refuse"],
                     help="check inputs against the bundle's reference profile")
    sec.add_argument("--sweep-detection", action="store_true", default=None,
                     help="count and log callers whose inputs look like an extraction sweep")
    sec.add_argument("--verify-key", action="append", metavar="PEM",
                     help="check model versions' signatures with this Ed25519 public key "
                          "before loading them (repeatable)")
    sec.add_argument("--require-signatures", action="store_true", default=None,
                     help="refuse unsigned model versions (needs --verify-key)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from modelport.serving.config import ServeConfig

    config = ServeConfig.from_file(args.config) if args.config else ServeConfig()
    overrides = {key: getattr(args, key, None) for key in (
        "host", "port", "grpc_port", "workers", "accept", "accelerate", "trusted", "max_batch_rows",
        "max_wait_ms", "max_body_bytes", "max_rows", "request_timeout_s", "max_queue_wait_ms",
        "poll_interval_s", "shutdown_delay_s", "access_log", "extra_columns",
        "invocations_model", "log_config", "drift_window")}
    log_stores = args.log or [s for s in os.environ.get("MODELPORT_LOG", "").split(",")
                              if s.strip()]
    if log_stores and log_stores != ["off"]:
        overrides["log"] = tuple(log_stores)
    if args.refs:
        overrides["models"] = tuple(args.refs)
    overrides.update(_security_overrides(args, config))
    config = config.with_overrides(**overrides)
    settings = settings_from(args)
    missing = missing_registry(settings)
    if missing is not None:  # serving reads the registry: create nothing, say where we looked
        if not config.models:
            raise ConfigurationError(
                f"no models to serve: the registry is empty ({no_registry_message(missing)})")
        raise NotFoundError(f"cannot serve {', '.join(config.models)}: "
                            f"{no_registry_message(missing)}")
    if not config.models:
        config = config.with_overrides(models=_every_model(settings))
    # before model libraries start their thread pools
    os.environ.setdefault("OMP_NUM_THREADS", str(config.model_threads))
    from modelport.serving import logs
    from modelport.serving.server import run_server

    logs.configure(logging.INFO if args.verbose or config.access_log else logging.WARNING,
                   settings.log_format)
    for name in ("modelport.serving", "modelport.runner", "modelport.service"):
        # startup, acceleration decisions (and why), hot reloads and their failures
        logging.getLogger(name).setLevel(logging.INFO)

    def ready(url: str) -> None:
        print(f"serving {', '.join(config.models)} on {url}", file=sys.stderr, flush=True)

    return run_server(config, settings, on_ready=ready)


def _security_overrides(args: argparse.Namespace, config: ServeConfig) -> dict[str, Any]:
    """The ``auth`` / ``tls`` / ``cors`` / ``defences`` sections with the flags given applied."""
    flags = {
        "auth": {"enabled": args.auth, "keys_file": args.keys_file, "insecure": args.insecure,
                 "allow_admin_routes": args.allow_admin_routes,
                 "public_metrics": args.public_metrics, "oidc_issuer": args.oidc_issuer,
                 "oidc_audience": args.oidc_audience, "oidc_jwks": args.oidc_jwks},
        "tls": {"cert": args.tls_cert, "key": args.tls_key, "client_ca": args.tls_client_ca},
        "cors": {"allow_origins": tuple(args.cors_origin) if args.cors_origin else None},
        "signatures": {"public_keys": tuple(args.verify_key) if args.verify_key else None,
                       "required": args.require_signatures},
        "defences": {"round_probabilities": args.round_probabilities,
                     "labels_only": args.labels_only,
                     "out_of_distribution": args.out_of_distribution,
                     "sweep_detection": args.sweep_detection},
    }
    out: dict[str, Any] = {}
    for section, values in flags.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            out[section] = dataclasses.replace(getattr(config, section), **given)
    return out


def _every_model(settings: Settings) -> tuple[str, ...]:
    from modelport.registry import Registry

    with Registry.from_settings(settings) as registry:
        names = tuple(m.name for m in registry.list_models())
    if not names:
        raise ConfigurationError(
            "no models to serve: the registry is empty; register one with "
            "'modelport models register BUNDLE_DIR' or name a model to serve")
    return names
