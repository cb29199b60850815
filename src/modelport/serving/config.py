"""``ServeConfig``: everything ``modelport serve`` can be told, as one typed value.

Built once from defaults, an optional YAML file (``--config FILE``) and flags, in that order of
precedence (flags win), then passed down to the app, the runners and the workers::

    # serve.yaml
    models: [churn@production, fraud:3]
    host: 127.0.0.1
    port: 8000
    workers: 2
    limits: {max_body_bytes: 1048576, max_rows: 1000, request_timeout_s: 10}
    batching: {max_batch_rows: 256, max_wait_ms: 0}
    accelerate: auto
    poll_interval_s: 1.0

>>> cfg = ServeConfig.from_mapping({"port": 9000, "limits": {"max_rows": 10}})
>>> cfg.port, cfg.limits.max_rows, cfg.accelerate
(9000, 10, 'auto')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from modelport.bundle.signature import DEFAULT_EXTRA, EXTRA_COLUMNS, ExtraColumns
from modelport.core.runner import Accelerate, RunnerOptions
from modelport.errors import ConfigurationError
from modelport.serving.auth_config import (
    AuthConfig,
    CorsConfig,
    DefenceConfig,
    SignatureConfig,
    TlsConfig,
)

#: how several workers take connections: ``shared``, one listening socket that every worker
#: accepts from (an idle worker takes the next connection), or ``reuseport``, one socket per
#: worker with SO_REUSEPORT (the kernel hashes each connection to a worker once, for good)
AcceptModel = Literal["shared", "reuseport"]


@dataclass(frozen=True)
class Limits:
    """Per-request limits; each violation fails only that request, with a clear status."""

    #: request bodies larger than this get 413 (checked from Content-Length and while streaming)
    max_body_bytes: int = 8 * 1024 * 1024
    #: rows per request; more gets 400 naming the limit
    max_rows: int = 10_000
    #: seconds a prediction may take before the request gets 504
    request_timeout_s: float = 30.0
    #: refuse requests (503 + Retry-After) once queued work would wait longer than this: in a
    #: model's queue, or in the event loop itself for fast models that run on it
    max_queue_wait_ms: float = 2000.0
    #: rows that may wait per model version before requests are refused
    max_queue_rows: int = 4096
    #: after SIGTERM: seconds to keep serving while readiness reports false (load balancers
    #: notice), then seconds to let in-flight requests finish
    shutdown_delay_s: float = 0.0
    graceful_timeout_s: float = 30.0


@dataclass(frozen=True)
class Batching:
    """The adaptive micro-batcher's knobs (see :mod:`modelport.core.runner`)."""

    max_batch_rows: int = 256
    max_wait_ms: float = 0.0
    inline_below_ms: float = 0.3


@dataclass(frozen=True)
class ServeConfig:
    models: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None
    workers: int = 1
    #: how workers share the HTTP port (see ``AcceptModel``); gRPC always uses SO_REUSEPORT
    accept: AcceptModel = "shared"
    accelerate: Accelerate = "auto"
    trusted: bool = False
    #: seconds between polls of the registry for moved aliases (0 disables hot reload)
    poll_interval_s: float = 1.0
    #: seconds a hot reload may spend loading a new version before giving up
    load_timeout_s: float = 120.0
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)
    #: API keys / JWTs, TLS, CORS, model-attack defences (serving/auth_config.py)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    defences: DefenceConfig = field(default_factory=DefenceConfig)
    signatures: SignatureConfig = field(default_factory=SignatureConfig)
    #: threads each worker lets OpenMP / BLAS use inside one model call
    model_threads: int = 1
    #: emit one JSON log line per request (with its request id)
    access_log: bool = False
    #: directory for multi-worker Prometheus metrics (a fresh temporary one when unset)
    metrics_dir: str | None = None
    #: columns a request sends beyond the model's inputs: refuse, ignore or passthrough
    extra_columns: ExtraColumns = DEFAULT_EXTRA
    #: the model ``POST /invocations`` answers without ``?model=`` when several are served
    invocations_model: str | None = None
    #: prediction log stores (``delta``, a folder, ``s3://…``, ``postgresql://…``,
    #: ``kafka://host:port/topic``); empty: predictions are not logged (feedback is still taken)
    log: tuple[str, ...] = ()
    #: YAML file of the log's flush cadence and per-model policies (modelport.log.config)
    log_config: str | None = None
    #: rows per live drift window (modelport.monitor.live); 0: no live drift gauges
    drift_window: int = 0

    def runner_options(self) -> RunnerOptions:
        return RunnerOptions(
            max_batch_rows=self.batching.max_batch_rows,
            max_wait_ms=self.batching.max_wait_ms,
            # a request of max_rows rows must fit an idle queue (issue 14.1)
            max_queue_rows=max(self.limits.max_queue_rows, self.limits.max_rows),
            accelerate=self.accelerate,
            max_queue_wait_ms=self.limits.max_queue_wait_ms,
            inline_below_ms=self.batching.inline_below_ms,
        )

    # ---------------------------------------------------------------- building
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ServeConfig:
        """Build from a plain mapping (a parsed YAML file), rejecting unknown keys."""
        if not isinstance(data, Mapping):
            raise ConfigurationError("a serve configuration must be a mapping of settings")
        values = dict(data)
        nested = {"limits": Limits, "batching": Batching, "auth": AuthConfig, "tls": TlsConfig,
                  "cors": CorsConfig, "defences": DefenceConfig,
                  "signatures": SignatureConfig}
        for key, kind in nested.items():
            if key in values:
                values[key] = _build(kind, values[key], key)
        if "signatures" in values:
            values["signatures"] = dataclasses.replace(
                values["signatures"], public_keys=tuple(values["signatures"].public_keys))
        if "cors" in values:
            values["cors"] = dataclasses.replace(
                values["cors"], allow_origins=tuple(values["cors"].allow_origins),
                allow_headers=tuple(values["cors"].allow_headers))
        if isinstance(values.get("log"), (str, list)):
            stores = values["log"]
            values["log"] = tuple([stores] if isinstance(stores, str) else stores)
        if "models" in values:
            models = values["models"]
            if isinstance(models, str):
                models = [models]
            values["models"] = tuple(str(m) for m in models)
        config: ServeConfig = _build(cls, values, "serve configuration")
        config.check()
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> ServeConfig:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigurationError(f"configuration file {str(path)!r} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"configuration file {str(path)!r} is not YAML: {exc}") \
                from None
        return cls.from_mapping(data)

    def with_overrides(self, **changes: Any) -> ServeConfig:
        """A copy with the given top-level, ``limits.*`` or ``batching.*`` settings changed;
        ``None`` values are ignored (flags that were not given)."""
        top: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        batching: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key in Limits.__dataclass_fields__:
                limits[key] = value
            elif key in Batching.__dataclass_fields__:
                batching[key] = value
            elif key in ServeConfig.__dataclass_fields__:
                top[key] = value
            else:
                raise ConfigurationError(f"unknown serve setting {key!r}")
        if limits:
            top["limits"] = dataclasses.replace(self.limits, **limits)
        if batching:
            top["batching"] = dataclasses.replace(self.batching, **batching)
        if "models" in top:
            top["models"] = tuple(top["models"])
        if "log" in top:
            top["log"] = tuple(top["log"])
        config = dataclasses.replace(self, **top)
        config.check()
        return config

    def check(self) -> None:
        if self.accelerate not in get_args(Accelerate):
            raise ConfigurationError(
                f"accelerate must be one of {list(get_args(Accelerate))}, got {self.accelerate!r}"
            )
        if self.extra_columns not in EXTRA_COLUMNS:
            raise ConfigurationError(
                f"extra_columns must be one of {list(EXTRA_COLUMNS)}, got {self.extra_columns!r}")
        if self.workers < 1:
            raise ConfigurationError(f"workers must be at least 1, got {self.workers}")
        if self.accept not in get_args(AcceptModel):
            raise ConfigurationError(
                f"accept must be one of {list(get_args(AcceptModel))}, got {self.accept!r}")
        if not 0 <= self.port < 65536:
            raise ConfigurationError(f"port must be 0-65535, got {self.port}")
        positive = {
            "limits.max_body_bytes": self.limits.max_body_bytes,
            "limits.max_rows": self.limits.max_rows,
            "limits.request_timeout_s": self.limits.request_timeout_s,
            "limits.max_queue_rows": self.limits.max_queue_rows,
            "batching.max_batch_rows": self.batching.max_batch_rows,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigurationError(f"{name} must be positive, got {value}")
        self.auth.check()
        self.tls.check()
        self.defences.check()
        self.signatures.check()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["models"] = list(self.models)
        return out


def _build(kind: type[Any], data: Any, what: str) -> Any:
    if isinstance(data, kind):
        return data
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{what} must be a mapping, got {type(data).__name__}")
    known = kind.__dataclass_fields__
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {unknown} in {what}; known: {', '.join(known)}"
        )
    try:
        return kind(**data)
    except TypeError as exc:
        raise ConfigurationError(f"invalid {what}: {exc}") from None
