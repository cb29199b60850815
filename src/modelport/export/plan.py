"""``ServerPlan``: how the packaged server runs — one value every target reads from.

Ports, worker count, the shutdown timing and the ``modelport serve`` configuration file
(``serve.yaml``) come from here, so the Dockerfile's ``EXPOSE`` and ``HEALTHCHECK``, the
Kubernetes probes and ports, and ``terminationGracePeriodSeconds`` cannot disagree with the
server they describe. The routes are the server's own (:mod:`modelport.serving.app`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import yaml

from modelport.errors import ConfigurationError
from modelport.serving.config import ServeConfig

#: the server's routes the platforms probe and scrape
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
METRICS_PATH = "/metrics"
#: where the image keeps the bundle and the serve configuration
MODEL_DIR = "/srv/model"
CONFIG_DIR = "/etc/modelport"
CONFIG_FILE = f"{CONFIG_DIR}/serve.yaml"
#: the image's embedded registry
HOME_DIR = "/srv/modelport"
#: the non-root user the image runs as
UID = 10001


@dataclass(frozen=True)
class ServerPlan:
    """What ``modelport serve`` inside the package is told."""

    model: str
    #: the version the image's own registry holds the model as: the source version (an
    #: unregistered bundle is version 1), so the server answers the number users know
    version: int
    http_port: int = 8000
    grpc_port: int = 8001
    workers: int = 1
    #: seconds readiness is off before the listener closes (load balancers notice)
    shutdown_delay_s: float = 5.0
    #: seconds in-flight requests may take to finish after that
    graceful_timeout_s: float = 30.0

    @property
    def ref(self) -> str:
        """The reference served inside the image (``churn:3``)."""
        return f"{self.model}:{self.version}"

    def register_command(self, bundle_dir: str) -> list[str]:
        """The image's registration step: the bundle becomes :attr:`ref`, every file checked."""
        return ["modelport", "models", "register", bundle_dir, "--name", self.model,
                "--version", str(self.version)]

    def check(self) -> None:
        for what, port in (("--port", self.http_port), ("--grpc-port", self.grpc_port)):
            if not 1 <= port <= 65535:
                raise ConfigurationError(f"{what} must be 1-65535, got {port}")
        if self.http_port == self.grpc_port:
            raise ConfigurationError("--port and --grpc-port must differ")
        if self.workers < 1:
            raise ConfigurationError(f"--workers must be at least 1, got {self.workers}")
        if self.shutdown_delay_s < 0 or self.graceful_timeout_s <= 0:
            raise ConfigurationError("--shutdown-delay must be >= 0 and --drain-timeout > 0")

    def serve_config(self) -> ServeConfig:
        """The server configuration, checked by the server's own parser."""
        return ServeConfig.from_mapping(self.serve_mapping())

    def serve_mapping(self) -> dict[str, object]:
        return {"models": [self.ref], "host": "0.0.0.0", "port": self.http_port,
                "grpc_port": self.grpc_port, "workers": self.workers,
                "limits": {"shutdown_delay_s": self.shutdown_delay_s,
                           "graceful_timeout_s": self.graceful_timeout_s}}

    def serve_yaml(self, header: str) -> str:
        self.serve_config()  # refuse what the server would refuse, now rather than at start
        return f"# {header}\n" + yaml.safe_dump(self.serve_mapping(), sort_keys=False)

    @property
    def drain_s(self) -> float:
        """Longest time from SIGTERM to exit: readiness-off delay plus in-flight grace."""
        return self.shutdown_delay_s + self.graceful_timeout_s

    @property
    def termination_grace_s(self) -> int:
        """What Kubernetes waits before SIGKILL: the drain plus a margin of 10 s."""
        return math.ceil(self.drain_s) + 10

    def command(self, config_file: str = CONFIG_FILE) -> list[str]:
        return ["modelport", "serve", "--config", config_file]

    def command_with_flags(self) -> list[str]:
        """The command with this plan's settings as flags, which win over the image's
        ``serve.yaml`` (for platforms that mount no configuration of their own)."""
        return [*self.command(), "--host", "0.0.0.0", "--port", str(self.http_port),
                "--grpc-port", str(self.grpc_port), "--workers", str(self.workers),
                "--shutdown-delay", f"{self.shutdown_delay_s:g}"]
