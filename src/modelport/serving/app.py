"""The HTTP edge: one ASGI app speaking every REST protocol over one ``InferenceService``.

``create_app(service, config)`` returns a plain ASGI callable (no framework on the hot path: a
request costs a path split, a JSON parse, the model call and a JSON dump). Routes:

* Open Inference Protocol V2: ``/v2/health/{live,ready}``, ``/v2``,
  ``/v2/models/{m}[/versions/{v}]`` with ``/ready`` and ``/infer`` (JSON and binary tensors),
  ``/v2/repository/index``, ``/v2/repository/models/{m}/{load,unload}``.
* KServe V1: ``GET /v1/models/{m}``, ``POST /v1/models/{m}:predict``.
* MLflow scoring: ``GET /ping``, ``/health``, ``/version``; ``POST /invocations[?model=m]``.
* Plain JSON: ``POST /predict/{m}``. Docs: ``/docs``, ``/openapi.json``. Metrics: ``/metrics``.

``{m}`` is a served model's name (``churn``) or, when two references of one model are served,
the reference itself (``churn@staging``). Errors come back with the protocol's own body shape and
the status from :mod:`modelport.serving.http_errors`; every response carries ``x-request-id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

import modelport
from modelport.core.concurrency import run_sync
from modelport.core.runner import Runner, new_id
from modelport.core.service import InferenceService, Reload
from modelport.errors import (
    InvalidInputError,
    ModelLoadError,
    ModelportError,
    NotFoundError,
    OverloadedError,
    PredictionError,
)
from modelport.registry.refs import parse_ref
from modelport.rollout.router import Routed
from modelport.serving import mlflow, openapi, records, triton, v1, v2
from modelport.serving.access import PRINCIPAL_KEY, AccessControl, actor_of, principal_of
from modelport.serving.body import header, query_param, read_body
from modelport.serving.config import ServeConfig
from modelport.serving.defences import OOD_HEADER, Defences
from modelport.serving.endpoints import EndpointRoutes, HttpEndpoints
from modelport.serving.http_errors import Protocol, error_body, headers_of, status_of
from modelport.serving.metrics import CONTENT_TYPE, ServingMetrics, multiprocess_enabled

log = logging.getLogger("modelport.serving")
access_log = logging.getLogger("modelport.access")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = [(b"content-type", b"application/json")]
_UNKNOWN = "_unknown"  # metrics label for requests naming no served model


class ServingApp:
    """The ASGI application. Build it with :func:`create_app`."""

    def __init__(self, service: InferenceService, config: ServeConfig,
                 metrics: ServingMetrics) -> None:
        self.service = service
        self.config = config
        self.metrics = metrics
        #: URL name → registry reference, for every served model
        self.served: dict[str, str] = {}
        #: reference → why its last load or reload failed (cleared by a successful one)
        self.load_errors: dict[str, str] = {}
        self.draining = False
        self.started = False
        self.on_startup: list[Hook] = []
        self.on_shutdown: list[Hook] = []
        self._mounts: list[tuple[str, ASGIApp]] = []
        #: further gRPC services (generic handlers) served beside the inference service
        self.grpc_handlers: list[Any] = []
        self._poller: asyncio.Task[None] | None = None
        self._lag_watch: asyncio.Task[None] | None = None
        #: how late the event loop ran a timer lately: requests wait that long to be read
        self.loop_lag_ms = 0.0
        self._max_lag_ms = config.limits.max_queue_wait_ms
        self._timeout = config.limits.request_timeout_s
        self._max_body = config.limits.max_body_bytes
        self._max_rows = config.limits.max_rows
        #: route scopes, tokens and per-caller limits (serving/access.py); every request
        self.access = AccessControl(config.auth)
        self._keys_refresher: asyncio.Task[None] | None = None
        #: the names served when startup finished: readiness is false while one is missing
        self._startup_served: frozenset[str] = frozenset()
        #: model-attack defences (serving/defences.py); None when none is configured
        self.defences: Defences | None = None
        #: endpoints with traffic policies (serving/endpoints.py), set by create_app
        self.endpoints: HttpEndpoints | None = None

    # ---------------------------------------------------------------- models
    def load_models(self) -> None:
        """Load every configured model (blocking; the server calls it before it listens)."""
        for ref in self.config.models:
            self.add_model(ref)

    def add_model(self, ref: str) -> str:
        """Load ``ref`` and serve it; returns the name it is served under (blocking)."""
        parsed = parse_ref(ref)
        text = str(parsed) if ("@" in ref or ":" in ref) else ref
        if text == ref and self.endpoints is not None and self.endpoints.is_endpoint(ref):
            return ref  # an endpoint: its variants load with the endpoints (serving/endpoints.py)
        try:
            self.service.runner(text)
        except ModelportError as exc:
            self.metrics.load_failed(parsed.name)
            self.load_errors[text] = _public_reason(exc)
            raise
        self.load_errors.pop(text, None)
        name = parsed.name
        if self.served.get(name, text) != text:
            name = text  # a second reference of one model is served under the reference
        self.served[name] = text
        return name

    def runner_for(self, name: str, version: str | None = None) -> Runner:
        ref = self.served.get(name)
        if ref is None and self.endpoints is not None:  # an endpoint: its primary variant
            ref = self.endpoints.primary_ref(name)
        if ref is None:
            raise NotFoundError(
                f"model {name!r} is not served here; served models: {sorted(self.served)}")
        runner = self.service.runner(ref)
        if version is not None and str(runner.version) != version:
            raise NotFoundError(
                f"model {name!r} serves version {runner.version}, not {version}")
        return runner

    def mount(self, prefix: str, app: ASGIApp) -> None:
        """Serve ``app`` under ``prefix`` (e.g. the lookup route of precomputed predictions)."""
        self._mounts.append((prefix.rstrip("/"), app))

    # ---------------------------------------------------------------- ASGI
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        if not self.served and self.config.models:
            await run_sync(None, self.load_models)
        if self.access.enabled:
            await run_sync(None, self.access.refresh)
            await self._sync_usage()
            self._keys_refresher = asyncio.get_running_loop().create_task(self._refresh_keys())
        self._startup_served = frozenset(self.served)
        for hook in self.on_startup:
            await hook()
        loop = asyncio.get_running_loop()
        if self.config.poll_interval_s > 0:
            self._poller = loop.create_task(self._poll())
        self._lag_watch = loop.create_task(self._watch_lag())
        self.started = True

    async def shutdown(self) -> None:
        self.draining = True
        for task in (self._poller, self._lag_watch, self._keys_refresher):
            if task is not None:
                task.cancel()
        self._poller = self._lag_watch = None
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        await run_sync(None, self.service.close)

    @property
    def ready(self) -> bool:
        return self.started and not self.draining and self._startup_served.issubset(
            self.served) and all(
            ref not in self.load_errors or self._has_runner(ref) for ref in self.served.values())

    def _has_runner(self, ref: str) -> bool:
        return ref in self.service.references()

    async def _watch_lag(self, interval: float = 0.05) -> None:
        """Fast models run on the loop, so overload shows as loop lag, not as a runner queue."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag_ms = max(0.0, (loop.time() - start - interval) * 1000.0)

    # ---------------------------------------------------------------- access
    async def audit(self, scope: dict[str, Any], action: str, *, name: str | None = None,
                    details: dict[str, Any] | None = None) -> None:
        """Write an admin action to the registry's audit log with the caller's key name
        (``key:<name>``; ``anonymous`` without authentication). Failures are logged only."""
        actor = actor_of(principal_of(scope))
        entry = {"name": name, "path": scope.get("path"), **(details or {})}
        log.info("admin action %s by %s: %s", action, actor, entry)
        try:
            await run_sync(None, lambda: self.service.registry.record_audit(
                action, entry, actor=actor))
        except Exception as exc:  # the action happened; losing its audit row must be loud
            log.error("writing the audit log entry for %s by %s failed: %s", action, actor, exc)

    async def _refresh_keys(self) -> None:
        while True:
            await asyncio.sleep(self.config.auth.refresh_s)
            try:
                await run_sync(None, self.access.refresh)
            except Exception as exc:  # keep the keys we have
                log.warning("re-reading API keys failed (the previous keys stay): %s", exc)
            await self._sync_usage()

    async def _sync_usage(self) -> None:
        try:
            await run_sync(None, self.access.sync_usage)
        except Exception as exc:  # counted here until the next try
            log.warning("counting API key rows in the registry failed (retried in %gs): %s",
                        self.config.auth.refresh_s, exc)

    async def _cors(self, scope: dict[str, Any], send: Any) -> Any:
        """Answer a CORS preflight (returns None), or wrap ``send`` to add the CORS headers."""
        cors = self.config.cors
        origin = header(scope, b"origin")
        if origin is None:
            return send
        allowed = origin.decode("latin-1") in cors.allow_origins or "*" in cors.allow_origins
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            headers: Headers = [(b"vary", b"origin")]
            if allowed:
                methods = self.access.routes.allowed_methods(scope["path"]) or ["GET", "POST"]
                headers += [
                    (b"access-control-allow-origin", origin),
                    (b"access-control-allow-methods", ", ".join(methods).encode()),
                    (b"access-control-allow-headers", ", ".join(cors.allow_headers).encode()),
                    (b"access-control-max-age", str(cors.max_age_s).encode()),
                ]
            await _respond(send, 204 if allowed else 403, b"", headers)
            return None
        if not allowed:
            return send
        extra = [(b"access-control-allow-origin", origin), (b"vary", b"origin"),
                 (b"access-control-expose-headers", b"x-request-id, x-prediction-id, "
                  b"retry-after, www-authenticate")]

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", ()), *extra])
            await send(message)

        return send_with_cors

    # ---------------------------------------------------------------- hot reload
    async def _poll(self) -> None:
        interval = self.config.poll_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                changes = await run_sync(None, self.service.refresh)
            except Exception as exc:  # a database hiccup must not stop the poller
                log.warning("checking the registry for moved aliases failed: %s", exc)
                continue
            self._report(changes)

    def _report(self, changes: list[Reload]) -> None:
        for change in changes:
            if change.ok:
                self.load_errors.pop(change.ref, None)
                log.info("hot reload: %s now serves version %s (was %s)", change.ref,
                         change.new_version, change.old_version)
            else:
                self.load_errors[change.ref] = (
                    f"hot reload to version {change.new_version} failed; the server log has "
                    "the details") if change.private else (change.error or "unknown error")
                self.metrics.load_failed(parse_ref(change.ref).name)
                log.error("hot reload of %s to version %s failed; version %s keeps serving: %s",
                          change.ref, change.new_version, change.old_version, change.error)

    # ---------------------------------------------------------------- routing
    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if self.config.cors.is_on:
            send = await self._cors(scope, send)
            if send is None:
                return
        try:
            self.access.http(scope)
        except ModelportError as exc:
            status, payload, headers = self._error(
                self.access.shape_of(method, path), exc, _request_id(scope))
            await _respond(send, status, payload, headers)
            return
        parts = path.strip("/").split("/")
        head = parts[0]
        n = len(parts)
        if head == "v2":
            if n >= 4 and parts[1] == "models":
                await self._v2_model(scope, receive, send, method, parts)
                return
            if n == 1:
                await self._get(send, method, self._server_metadata)
                return
            if n == 3 and parts[1] == "health":
                await self._health(send, method, parts[2], "v2")
                return
            if n == 3 and parts[1] == "models" and parts[2] == "stats":  # Triton: every model
                await self._get(send, method, lambda: self._statistics(None, None))
                return
            if n == 3 and parts[1] == "models":
                await self._get(send, method, lambda: self._v2_metadata(parts[2], None))
                return
            if parts[1] == "repository":
                await self._repository(scope, receive, send, method, parts[2:])
                return
        elif head == "v1" and n == 2 and parts[1] == "models":  # KServe V1: list models
            await self._get(send, method, lambda: {"models": list(self.served)}, "v1")
            return
        elif head == "v1" and n == 3 and parts[1] == "models":
            name = parts[2]
            if name.endswith(":predict"):
                await self._predict(scope, receive, send, method, "v1", name[:-8], None)
            elif name.endswith(":explain"):
                await _respond(send, 501, orjson.dumps(error_body("v1", 501, (
                    f"model {name[:-8]!r} has no explainer: modelport serves predictions only; "
                    f"use POST /v1/models/{name[:-8]}:predict"))), _JSON)
            else:
                await self._get(send, method, lambda: self._v1_metadata(name), "v1")
            return
        elif head == "predict" and n == 2:
            await self._predict(scope, receive, send, method, "simple", parts[1], None)
            return
        elif head == "invocations" and n == 1:
            try:
                name = self._invocations_model(scope)
            except InvalidInputError as exc:
                status, payload, headers = self._error("mlflow", exc, _request_id(scope))
                await _respond(send, status, payload, headers)
                return
            await self._predict(scope, receive, send, method, "mlflow", name, None)
            return
        elif path == "/":  # KServe V1 liveness
            await self._get(send, method, lambda: {"status": "alive"}, "v1")
            return
        elif n == 1 and head in ("ping", "health"):
            await self._health(send, method, "ready" if head == "health" else "live", "mlflow")
            return
        elif n == 1 and head == "version":
            await self._get(send, method, lambda: modelport.__version__)
            return
        elif n == 1 and head == "metrics":
            await self._metrics(send, method)
            return
        elif n == 1 and head in ("docs", "openapi.json"):
            await self._docs(send, method, head, scope.get("root_path", ""))
            return
        elif n == 3 and head == "docs" and parts[1] == "assets":
            await self._docs_asset(send, method, parts[2])
            return
        for prefix, app in self._mounts:
            if path == prefix or path.startswith(prefix + "/"):
                sub = dict(scope, root_path=scope.get("root_path", "") + prefix,
                           path=path[len(prefix):] or "/")
                await app(sub, receive, send)
                return
        await _respond(send, 404, orjson.dumps({"error": f"no route {method} {path}"}), _JSON)

    async def _v2_model(self, scope: dict[str, Any], receive: Any, send: Any, method: str,
                        parts: list[str]) -> None:
        name, rest, version = parts[2], parts[3:], None
        if rest[0] == "versions" and len(rest) >= 2:
            version, rest = rest[1], rest[2:]
        if rest == ["infer"]:
            await self._predict(scope, receive, send, method, "v2", name, version)
        elif rest == ["ready"]:
            await self._model_ready(send, method, name, version)
        elif rest == ["config"]:  # Triton
            await self._get(send, method,
                            lambda: triton.model_config(name, self.runner_for(name, version)))
        elif rest == ["stats"]:  # Triton
            await self._get(send, method, lambda: self._statistics(name, version))
        elif not rest:
            await self._get(send, method, lambda: self._v2_metadata(name, version))
        else:
            await _respond(send, 404, orjson.dumps({"error": f"no route {scope['path']}"}),
                           _JSON)

    # ---------------------------------------------------------------- prediction
    async def _predict(self, scope: dict[str, Any], receive: Any, send: Any, method: str,
                       protocol: Protocol, name: str, version: str | None) -> None:
        start = time.perf_counter()
        rid = _request_id(scope)
        model_label, version_label = _UNKNOWN, ""
        headers: Headers
        t_body = t_submit = t_answer = start  # Triton statistics: decode, wait, encode
        routed: Routed | None = None
        try:
            if method != "POST":
                raise _MethodNotAllowed(f"use POST for {scope['path']}")
            routed = self.endpoints.route(scope, name, version) if self.endpoints else None
            runner = routed.runner if routed is not None else self.runner_for(name, version)
            model = runner.model
            model_label, version_label = runner.name, str(runner.version)
            if self.loop_lag_ms > self._max_lag_ms:
                raise OverloadedError(
                    f"the server is overloaded (requests wait {self.loop_lag_ms:.0f} ms to be "
                    "read); try again shortly", retry_after=max(1.0, self.loop_lag_ms / 1000))
            body = await read_body(scope, receive, self._max_body)
            t_body = time.perf_counter()
            simple: records.Decoded | None = None
            v1_request: v1.V1Request | None = None
            if protocol == "v2":
                raw_length = header(scope, b"inference-header-content-length")
                request = v2.decode(body, v2.header_length(raw_length), model,
                                    self.config.extra_columns)
                batch = request.batch
            elif protocol == "v1":
                v1_request = v1.decode_request(body, model, self.config.extra_columns)
                batch = v1_request.batch
            elif protocol == "mlflow":
                ctype = (header(scope, b"content-type") or b"application/json").decode("latin-1")
                batch = mlflow.decode(body, ctype.lower(), model)
            else:
                simple = records.decode(body, model, self.config.extra_columns)
                batch = simple.batch
            if batch.n_rows > self._max_rows:
                raise InvalidInputError(
                    f"{batch.n_rows} rows in one request; the limit is {self._max_rows}. Split "
                    "the rows over several requests")
            t_submit = time.perf_counter()
            if self.access.quotas and PRINCIPAL_KEY in scope:
                self.access.charge_rows(scope[PRINCIPAL_KEY], batch.n_rows)
            flagged = self.defences.inspect(name, model, batch, _caller(scope)) \
                if self.defences is not None else None
            pid = new_id()  # the prediction id P (rows P-0 …), see modelport.log.schema
            result = await runner.submit(
                batch, source=protocol, request_id=rid, timeout=self._timeout,
                endpoint=routed.endpoint if routed else None,
                variant=routed.variant if routed else None, prediction_id=pid,
                row_ids=[f"{pid}-0"] if simple is not None and not simple.single
                and batch.n_rows == 1 else None)
            t_answer = time.perf_counter()
            if self.defences is not None:
                result = self.defences.shape(name, result)
            if routed is not None and routed.decision.shadows and self.endpoints:
                self.endpoints.router.shadow(routed.decision, batch, result)
            if protocol == "v2":
                payload, headers = v2.encode(request, result, model, name, rid)
            elif protocol == "simple":
                assert simple is not None
                payload, headers = records.encode(result, model, name, simple, pid), _JSON
            else:
                payload, headers = (v1.encode(result, v1_request) if protocol == "v1"
                                    else mlflow.encode(result)), _JSON
            headers = [*headers, (b"x-prediction-id", pid.encode())]
            if flagged:
                headers.append((OOD_HEADER, ",".join(flagged).encode()))
            status = 200
        except Exception as exc:
            status, payload, headers = self._error(protocol, exc, rid)
        # counted before the answer leaves, so a client that reads /metrics next sees it
        end = time.perf_counter()
        elapsed = end - start
        if routed is not None and self.endpoints is not None:
            payload, extra = self.endpoints.finish(routed, status, elapsed, protocol, payload)
            headers = [*headers, *extra]
        self.metrics.observe_request(
            model_label, version_label, protocol, status, elapsed, input_s=t_submit - t_body,
            wait_s=t_answer - t_submit, output_s=end - t_answer if t_answer > start else 0.0)
        await _respond(send, status, payload, headers, rid)
        if self.config.access_log:
            access_log.info("request", extra={
                "request_id": rid, "protocol": protocol, "model": model_label,
                "version": version_label, "status": status,
                "duration_ms": round(elapsed * 1000, 3)})

    def _error(self, protocol: Protocol, exc: BaseException, rid: str
               ) -> tuple[int, bytes, Headers]:
        if isinstance(exc, _MethodNotAllowed):
            return 405, orjson.dumps(error_body(protocol, 405, str(exc))), _JSON
        status = status_of(exc)
        if isinstance(exc, ModelportError):
            message = str(exc)
            if status >= 500 and status not in (503, 504):
                log.error("request failed: %s", message, extra={"request_id": rid})
            if isinstance(exc, _PRIVATE_ERRORS):  # the model's own words may carry internals
                message = (f"the model failed on this request; the server log has the details "
                           f"(request id {rid})")
        else:
            log.exception("unexpected error", extra={"request_id": rid})
            message = f"internal error; quote request id {rid} when reporting it"
        field = getattr(exc, "field", None)
        body = orjson.dumps(error_body(protocol, status, message, field))
        return status, body, _JSON + headers_of(exc)

    # ---------------------------------------------------------------- metadata & health
    async def _get(self, send: Any, method: str, build: Callable[[], Any],
                   protocol: Protocol = "v2") -> None:
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, orjson.dumps(error_body(protocol, 405, "use GET")), _JSON)
            return
        try:
            value = build()
        except Exception as exc:
            status, payload, headers = self._error(protocol, exc, new_id())
            await _respond(send, status, payload, headers)
            return
        if isinstance(value, str):
            await _respond(send, 200, value.encode(), [(b"content-type", b"text/plain")])
        else:
            await _respond(send, 200, orjson.dumps(value), _JSON)

    def _server_metadata(self) -> dict[str, Any]:
        return {"name": "modelport", "version": modelport.__version__,
                "extensions": ["model_repository", "binary_tensor_data"]}

    def _v2_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        runner = self.runner_for(name, version)
        inputs, outputs = v2.tensor_metadata(runner.model)
        return {
            "name": name,
            "versions": [str(runner.version)],
            "platform": f"modelport_{runner.model.flavor}",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": self._model_parameters(name, runner),
        }

    def _model_parameters(self, name: str, runner: Runner) -> dict[str, Any]:
        ref = self.served.get(name, name)
        params: dict[str, Any] = {
            "ref": ref, "flavor": runner.model.flavor, "task": runner.model.signature.task,
            "accelerated": runner.accelerated, "accelerate_reason": runner.accelerate_reason,
        }
        if ref in self.load_errors:
            params["last_reload_error"] = self.load_errors[ref]
        return params

    def _v1_metadata(self, name: str) -> dict[str, Any]:
        runner = self.runner_for(name)
        return {"name": name, "ready": not self.draining, "version": str(runner.version),
                **self._model_parameters(name, runner)}

    async def _health(self, send: Any, method: str, which: str, protocol: Protocol) -> None:
        ok = True if which == "live" else self.ready
        if protocol == "mlflow":
            await _respond(send, 200 if ok else 503, b"\n", [(b"content-type", b"text/plain")])
            return
        if which not in ("live", "ready"):
            await _respond(send, 404, orjson.dumps({"error": "no such health check"}), _JSON)
            return
        await _respond(send, 200 if ok else 503, orjson.dumps({which: ok}), _JSON)

    async def _model_ready(self, send: Any, method: str, name: str, version: str | None) -> None:
        try:
            self.runner_for(name, version)
            ok = not self.draining
        except NotFoundError:
            ok = False
        await _respond(send, 200 if ok else 503, orjson.dumps({"name": name, "ready": ok}),
                       _JSON)

    async def _metrics(self, send: Any, method: str) -> None:
        body = await run_sync(None, self.metrics.render)
        await _respond(send, 200, body, [(b"content-type", CONTENT_TYPE.encode())])

    async def _docs_asset(self, send: Any, method: str, name: str) -> None:
        """Swagger UI's files, shipped in the package (the docs work offline)."""
        found = openapi.asset(name)
        if found is None or method not in ("GET", "HEAD"):
            await _respond(send, 404, orjson.dumps({"error": f"no docs asset {name!r}"}), _JSON)
            return
        body, content_type = found
        await _respond(send, 200, body, [(b"content-type", content_type.encode()),
                                         (b"cache-control", b"public, max-age=86400")])

    async def _docs(self, send: Any, method: str, which: str, root_path: str = "") -> None:
        models = {}
        for name in self.served:
            try:
                models[name] = self.runner_for(name).model
            except ModelportError:
                continue
        document = openapi.document(models, auth=self.access.enabled)
        if which == "openapi.json":
            await _respond(send, 200, orjson.dumps(document), _JSON)
        else:
            await _respond(send, 200, openapi.page(document, root_path + "/").encode(),
                           [(b"content-type", b"text/html; charset=utf-8")])

    # ---------------------------------------------------------------- repository extension
    async def _repository(self, scope: dict[str, Any], receive: Any, send: Any, method: str,
                          rest: list[str]) -> None:
        rid = _request_id(scope)
        try:
            if method != "POST":
                raise _MethodNotAllowed("use POST for the model repository extension")
            body = await read_body(scope, receive, self._max_body)
            if rest == ["index"]:
                payload: Any = self._index(ready_only=_index_ready(body))
            elif len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
                if rest[2] == "load":
                    await run_sync(None, self.add_model, rest[1])
                else:
                    self._unload(rest[1])
                await self.audit(scope, f"serve.{rest[2]}", name=rest[1])
                payload = {}
            else:
                raise NotFoundError(f"no route {scope['path']}")
            await _respond(send, 200, orjson.dumps(payload), _JSON, rid)
        except Exception as exc:
            status, body, headers = self._error("v2", exc, rid)
            await _respond(send, status, body, headers, rid)

    def _index(self, *, ready_only: bool = False) -> list[dict[str, Any]]:
        return list(triton.repository_index(self.served, self.service, self.load_errors,
                                            ready_only=ready_only))

    def _statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        if name is not None:
            self.runner_for(name, version)  # 404 for a model not served
        return triton.statistics_of(self.metrics.statistics, self.served, self.service, name,
                                    version)

    def _invocations_model(self, scope: dict[str, Any]) -> str:
        """``?model=`` names the model of ``/invocations``; without it, the configured default
        (``serve --invocations-model``) or the only model served."""
        name = query_param(scope, b"model") or self.config.invocations_model
        if name:
            return name
        if len(self.served) == 1:
            return next(iter(self.served))
        raise InvalidInputError(
            f"{len(self.served)} models are served here ({sorted(self.served)}); name one with "
            "the query parameter ?model=NAME, or start the server with "
            "--invocations-model NAME", field="model")

    def _unload(self, name: str) -> None:
        ref = self.served.pop(name, None)
        if ref is None:
            raise NotFoundError(f"model {name!r} is not served here")
        if ref not in self.served.values():
            self.service.unload(ref)


class _MethodNotAllowed(ModelportError):
    pass


#: errors whose message comes from the model or its framework: never sent to the caller
_PRIVATE_ERRORS = (ModelLoadError, PredictionError)


def _public_reason(exc: ModelportError) -> str:
    if isinstance(exc, _PRIVATE_ERRORS):
        return "the model failed to load; the server log has the details"
    return str(exc)


def create_app(service: InferenceService, config: ServeConfig | None = None, *,
               metrics: ServingMetrics | None = None,
               metrics_registry: CollectorRegistry | None = None) -> ServingApp:
    """The ASGI app over ``service``. Models in ``config.models`` load at startup.

    Metrics go to ``metrics`` (or a new set on ``metrics_registry``, or on a fresh registry); the
    app subscribes them to the service's prediction events and runner batch hook.
    """
    config = config or ServeConfig()
    if metrics is None:
        metrics = ServingMetrics(metrics_registry or CollectorRegistry(),
                                 multiproc_dir=multiprocess_enabled())
    service.on_batch = metrics.observe_batch
    service.events.subscribe(metrics.observe_event, inline=True)  # a counter: microseconds
    app = ServingApp(service, config, metrics)
    app.endpoints = HttpEndpoints(app)
    app.mount("/endpoints", EndpointRoutes(app.endpoints))  # rollout policies over HTTP
    app.on_startup.append(app.endpoints.start)
    app.on_shutdown.append(app.endpoints.stop)
    defences = Defences(config.defences, metrics.registry)
    app.defences = defences if defences.active else None
    if config.auth.is_on:
        app.access = AccessControl.from_config(config.auth, engine=service.registry.engine())
    return app


# -------------------------------------------------------------------- helpers
def _caller(scope: dict[str, Any]) -> str:
    """Who sends a request, for the sweep watch: the key's name, else the client address."""
    principal = principal_of(scope)
    if principal is not None:
        return actor_of(principal)
    client = scope.get("client")
    return f"client:{client[0]}" if client else "client:?"


def _request_id(scope: dict[str, Any]) -> str:
    given = header(scope, b"x-request-id")
    if given and len(given) <= 128:
        return given.decode("latin-1")
    return new_id()


def _index_ready(body: bytes) -> bool:
    """Triton's ``{"ready": true}`` body of ``POST /v2/repository/index``: ready models only."""
    if not body.strip():
        return False
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInputError("the repository index body must be JSON, such as "
                                '{"ready": true}') from None
    return isinstance(payload, dict) and payload.get("ready") is True


async def _respond(send: Any, status: int, body: bytes, headers: Headers,
                   request_id: str | None = None) -> None:
    out = [*headers, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        out.append((b"x-request-id", request_id.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
