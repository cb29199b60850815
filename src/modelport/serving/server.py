"""Running the server: one process, or N worker processes sharing the port.

``run_server(config)`` blocks until SIGTERM or SIGINT. Each worker (the process itself when
``workers == 1``) builds its own registry client, ``InferenceService`` and app, loads every model
*before* it listens, limits the model libraries' thread pools (``model_threads``, one by default:
on a small machine OpenMP threads spinning on the other cores double the CPU per request), and
serves with uvicorn (uvloop + httptools).

How several workers share the HTTP port (``--accept``): ``shared`` (the default) — the supervisor
listens on one socket and every worker accepts from it, so whichever worker is idle takes the
next connection; ``reuseport`` — each worker listens on its own ``SO_REUSEPORT`` socket and the
kernel hashes every new connection to one of them, for the connection's lifetime. Measured on
16 cores with keep-alive clients (``benchmarks/scaling.sh``: 4 wrk loaders, 1-12 workers): with
256 connections both scale alike (reuseport 0-8 % ahead, within the run-to-run spread); with 16
connections over 12 workers the kernel's hash leaves workers idle and the shared socket is 20 %
ahead (30,717 vs 25,651 req/s), so it is the default. gRPC always uses ``SO_REUSEPORT`` (grpcio
binds its own sockets).

Shutdown on SIGTERM: readiness turns false at once, requests keep being served for
``limits.shutdown_delay_s`` (load balancers notice), then the listener closes, in-flight requests
finish (up to ``limits.graceful_timeout_s``), queued model calls drain, and the process exits 0.
With several workers, the supervisor forwards the signal to each and restarts a worker that dies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from modelport.errors import ConfigurationError, ModelportError
from modelport.serving.auth_config import TlsConfig, check_exposure
from modelport.serving.config import ServeConfig

if TYPE_CHECKING:
    import uvicorn

    from modelport.serving.app import ServingApp
    from modelport.settings import Settings

log = logging.getLogger("modelport.serving")

ReadyCallback = Callable[[str], None]
_BACKLOG = 2048


def run_server(config: ServeConfig, settings: Settings | None = None, *,
               on_ready: ReadyCallback | None = None) -> int:
    """Serve ``config.models`` until SIGTERM/SIGINT; returns the exit status (0 after a graceful
    shutdown). ``on_ready`` is called with the base URL once every worker is ready.

    Raises ``ModelportError`` when a model cannot be loaded or the port cannot be bound.
    """
    from modelport.settings import Settings

    settings = settings or Settings.from_env()
    if not config.models:
        raise ConfigurationError(
            "no models to serve; name at least one, e.g. 'modelport serve churn@production'")
    check_host(config.host)  # an address that is none is said as such, before anything else
    check_exposure(config.host, config.auth)
    if config.workers == 1:
        sock = bind_socket(config.host, config.port)
        if config.grpc_port is not None:
            try:  # before loading models; gRPC binds inside the event loop, too late to say so
                check_port_free(config.host, config.grpc_port, flag="--grpc-port")
            except ConfigurationError:
                sock.close()
                raise
        return _serve_in_process(config, settings, sock, on_ready)
    return _Supervisor(config, settings).run(on_ready)


def check_host(host: str) -> socket.AddressFamily:
    """The address family of ``host``, or a ``ConfigurationError`` naming ``--host`` when it is
    neither an IP address nor a name this machine resolves (``0.0.0.0.1``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ConfigurationError(
            f"invalid --host {host!r}: not an IP address or a host name this machine can "
            "resolve; use e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None
    return family


def bind_socket(host: str, port: int, *, reuse_port: bool = False,
                flag: str = "--port") -> socket.socket:
    """A socket bound to ``host:port``, or a ``ConfigurationError`` saying which flag to change
    (``--host`` for an address that is not one, ``flag`` for a port in use)."""
    family = check_host(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigurationError(
                f"cannot listen on {host}: no interface of this machine has that address; "
                "choose another --host") from None
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another {flag}") from None
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int, *, flag: str = "--port") -> None:
    """Fail now, with the flag to change, if ``host:port`` cannot be bound (a port in use):
    for servers that bind later (gRPC, in the event loop) or after work worth not doing."""
    if port:
        bind_socket(host, port, flag=flag).close()


def base_url(config: ServeConfig, sock: socket.socket) -> str:
    host = config.host if ":" not in config.host else f"[{config.host}]"
    scheme = "https" if config.tls.is_on else "http"
    return f"{scheme}://{host}:{sock.getsockname()[1]}"


# ------------------------------------------------------------------------ one worker
def limit_threads(threads: int) -> None:
    """Limit BLAS/OpenMP pools of the model libraries in this process."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(limits=threads)


def build_app(config: ServeConfig, settings: Settings, *, shared_ports: bool = False,
              limits_file: str | None = None, syncs_usage: bool = True) -> ServingApp:
    """Registry, service and app for one worker, with every model loaded (blocking).

    ``shared_ports``: this worker is one of several sharing the gRPC port (SO_REUSEPORT), which
    the supervisor has reserved. ``limits_file``: the per-key rate and quota counts the
    workers share (``syncs_usage``: this one exchanges them with the registry database)."""
    from modelport.core.service import InferenceService
    from modelport.registry import Registry
    from modelport.serving.app import create_app
    from modelport.serving.feedback import attach_prediction_log
    from modelport.serving.lookup import mount_lookup

    registry = Registry.from_settings(settings)
    service = InferenceService(registry, options=config.runner_options(), trusted=config.trusted,
                               load_timeout=config.load_timeout_s)
    if config.signatures.public_keys:
        from modelport.registry.signing import SignatureVerifier

        service.verifier = SignatureVerifier(config.signatures.public_keys,
                                             required=config.signatures.required)
    app = create_app(service, config)
    if limits_file is not None and app.access.enabled:
        app.access.share_limits(limits_file, syncs=syncs_usage)
    # offline serving: /lookup routes (serving/lookup.py) when MODELPORT_LOOKUP names a file
    mount_lookup(app)
    # prediction log (serve --log) and the feedback routes (serving/feedback.py)
    attach_prediction_log(app, settings)
    # the dashboard page and its read-only API under /dashboard (web/dashboard.py)
    from modelport.web import dashboard

    dashboard.mount(app)
    if config.drift_window:  # live drift gauges on /metrics (modelport.monitor.live)
        from modelport.monitor import live
        from modelport.monitor.reference import References

        live.attach(service.events, app.metrics.registry, References(registry),
                    config.drift_window)
    app.load_models()
    _add_grpc(app, config, reuse_port=shared_ports)
    # everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes (~0.2 s over a few hundred thousand objects: a latency spike under load).
    # The young generations are collected first; a full collection here found no garbage in
    # the older one and cost 30-180 ms of every cold start
    gc.collect(1)
    gc.freeze()
    return app


def _add_grpc(app: ServingApp, config: ServeConfig, *, reuse_port: bool = False) -> None:
    if config.grpc_port is None:
        return
    try:
        from modelport.serving.grpc import start_grpc_server
    except ImportError as exc:
        raise ConfigurationError(
            f"gRPC serving is not available in this installation ({exc}); drop --grpc-port"
        ) from None
    handle: Any = None
    port = config.grpc_port

    async def start() -> None:
        nonlocal handle
        handle = await start_grpc_server(
            app.service, config.host, port, models=app.served,
            max_message_bytes=config.limits.max_body_bytes,
            request_timeout=config.limits.request_timeout_s, ready=lambda: app.ready,
            reuse_port=reuse_port, on_request=app.metrics.observe_request,
            statistics=app.metrics.statistics, load_errors=app.load_errors,
            access=app.access, tls=config.tls, max_rows=config.limits.max_rows,
            extra_handlers=app.grpc_handlers, endpoints=app.endpoints, defences=app.defences,
            extra_columns=config.extra_columns)
        log.info("gRPC listening on %s:%s", config.host, handle.port)

    async def stop() -> None:
        if handle is not None:
            await handle.stop(config.limits.graceful_timeout_s)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


def _serve_in_process(config: ServeConfig, settings: Settings, sock: socket.socket,
                      on_ready: ReadyCallback | None) -> int:
    limit_threads(config.model_threads)
    app = build_app(config, settings)
    server = _server(app, config)
    url = base_url(config, sock)

    async def announce() -> None:
        log.info("serving %s on %s", ", ".join(app.served), url)
        if on_ready is not None:
            on_ready(url)

    app.on_startup.append(announce)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _server(app: ServingApp, config: ServeConfig) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn, with readiness turned off first and no signal re-raised at the end."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if app.draining:  # a second signal: stop waiting
                super().handle_exit(sig, frame)
                return
            app.draining = True
            log.info("shutting down: readiness is off, in-flight requests finish")
            delay = config.limits.shutdown_delay_s
            if delay > 0:
                timer = threading.Timer(delay, lambda: setattr(self, "should_exit", True))
                timer.daemon = True
                timer.start()
            else:
                self.should_exit = True

    uv_config = uvicorn.Config(
        app, loop="uvloop", http="httptools", lifespan="on", log_config=None,
        access_log=False, server_header=False, backlog=_BACKLOG,
        timeout_graceful_shutdown=max(1, round(config.limits.graceful_timeout_s)),
        timeout_keep_alive=30, **tls_options(config.tls),
    )
    return Server(uv_config)


def tls_options(tls: TlsConfig) -> dict[str, Any]:
    """uvicorn's TLS settings: a certificate, and client certificates required (mutual TLS)
    when ``tls.client_ca`` is set."""
    if not tls.is_on:
        return {}
    import ssl

    options: dict[str, Any] = {"ssl_certfile": tls.cert, "ssl_keyfile": tls.key}
    if tls.client_ca is not None:
        options.update(ssl_ca_certs=tls.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


# ------------------------------------------------------------------------ many workers
def _worker_main(config: ServeConfig, settings: Settings, port: int, report: Any,
                 log_levels: dict[str, int], index: int,
                 listener: socket.socket | None = None, limits_file: str | None = None
                 ) -> None:
    """One worker: accepts from ``listener`` (the supervisor's shared socket), or from its own
    ``SO_REUSEPORT`` socket on ``port`` when there is none."""
    from modelport.serving import logs

    logs.configure(log_levels.pop("", logging.WARNING), settings.log_format)
    for name, level in log_levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        sock = listener if listener is not None else bind_socket(config.host, port,
                                                                 reuse_port=True)
        limit_threads(config.model_threads)
        # the first worker (restarted as the first) syncs the day's row counts
        app = build_app(config, settings, shared_ports=True, limits_file=limits_file,
                        syncs_usage=index == 0)
    except ModelportError as exc:
        report.put(("failed", os.getpid(), str(exc)))
        sys.exit(1)
    except Exception as exc:
        log.exception("worker failed to start")
        report.put(("failed", os.getpid(), repr(exc)))
        sys.exit(1)

    async def announce() -> None:
        report.put(("ready", os.getpid(), ""))

    app.on_startup.append(announce)
    server = _server(app, config)
    server.run(sockets=[sock])
    sys.exit(0)


class _Supervisor:
    """Starts N workers on one port, forwards SIGTERM, restarts a worker that dies."""

    def __init__(self, config: ServeConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.stopping = False

    def run(self, on_ready: ReadyCallback | None) -> int:
        config = self.config
        shared = config.accept == "shared"
        # shared: the one listening socket every worker accepts from (connections that arrive
        # while workers start wait in its backlog); reuseport: bound, never listening, it
        # reserves the port (and resolves port 0) for the workers' own sockets
        holder = bind_socket(config.host, config.port, reuse_port=not shared)
        if shared:
            holder.listen(_BACKLOG)
        listener = holder if shared else None
        port = holder.getsockname()[1]
        grpc_holder = None
        if config.grpc_port is not None:  # reserved the same way; every worker serves gRPC too
            grpc_holder = bind_socket(config.host, config.grpc_port, reuse_port=True,
                                      flag="--grpc-port")
            config = dataclasses.replace(config, grpc_port=grpc_holder.getsockname()[1])
        own_dir = config.metrics_dir is None
        metrics_dir = config.metrics_dir or tempfile.mkdtemp(prefix="modelport-metrics-")
        os.makedirs(metrics_dir, exist_ok=True)
        for stale in os.listdir(metrics_dir):
            if stale.endswith(".db"):
                os.remove(os.path.join(metrics_dir, stale))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # per-key rates and quotas: one count for every worker (serving/limits.py)
        limits_file = os.path.join(metrics_dir, "limits.bin")
        if os.path.exists(limits_file):
            os.remove(limits_file)
        os.environ["OMP_NUM_THREADS"] = str(config.model_threads)
        ctx = multiprocessing.get_context("spawn")
        report = ctx.Queue()
        levels = {"": logging.getLogger().getEffectiveLevel()}  # workers log like this process
        loggers = logging.root.manager.loggerDict.items()
        levels.update({name: logger.level for name, logger in loggers
                       if isinstance(logger, logging.Logger) and name.startswith("modelport")
                       and logger.level != logging.NOTSET})
        procs: list[Any] = []

        def start(index: int) -> Any:
            proc = ctx.Process(target=_worker_main, name=f"modelport-worker-{index}",
                               args=(config, self.settings, port, report, dict(levels), index,
                                     listener, limits_file))
            proc.start()
            return proc

        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            procs = [start(i) for i in range(config.workers)]
            self._wait_ready(report, procs)
            url = base_url(config, holder)
            log.info("serving %s on %s with %d workers", ", ".join(config.models), url,
                     config.workers)
            if on_ready is not None:
                on_ready(url)
            while not self.stopping:
                time.sleep(0.2)
                for i, proc in enumerate(procs):
                    if not proc.is_alive() and not self.stopping:
                        log.error("worker %s exited with %s; starting another", proc.pid,
                                  proc.exitcode)
                        _mark_dead(proc.pid, metrics_dir)
                        procs[i] = start(i)
            return 0
        finally:
            self._stop(procs, holder if shared else None)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            holder.close()
            if grpc_holder is not None:
                grpc_holder.close()
            if own_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)

    def _on_signal(self, sig: int, frame: Any) -> None:
        self.stopping = True

    def _wait_ready(self, report: Any, procs: list[Any]) -> None:
        deadline = time.monotonic() + self.config.load_timeout_s + 60
        ready = 0
        while ready < len(procs):
            if self.stopping:
                return
            try:
                state, _pid, message = report.get(timeout=0.2)
            except Exception:
                dead = [p for p in procs if not p.is_alive()]
                if dead:
                    raise ModelportError(
                        f"worker {dead[0].pid} exited with {dead[0].exitcode} while starting; "
                        "see the logs") from None
                if time.monotonic() > deadline:
                    raise ModelportError("workers did not start in time; see the logs") \
                        from None
                continue
            if state == "failed":
                raise ModelportError(message)
            ready += 1

    def _stop(self, procs: list[Any], listener: socket.socket | None = None) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        if listener is not None:
            # the workers keep their copies open while they drain; once the last closes, new
            # connections are refused instead of waiting in a backlog nobody accepts from
            listener.close()
        limit = self.config.limits.shutdown_delay_s + self.config.limits.graceful_timeout_s + 10
        deadline = time.monotonic() + limit
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _mark_dead(pid: int | None, metrics_dir: str) -> None:
    if pid is None:
        return
    from prometheus_client import multiprocess as prom_multiprocess

    prom_multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]

