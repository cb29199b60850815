"""The HTTP side of endpoints: which header carries the routing key, the answering variant in
the response headers (``x-modelport-endpoint``, ``x-modelport-variant``,
``x-modelport-version``) and, for the plain JSON route, in the body.

The server's ``EndpointRouter`` (``modelport.rollout.router``) is built here and ticks on the
event loop's executor, so a policy change made anywhere reaches this worker within
``POLL_INTERVAL`` seconds (plus the load time of a model it had not loaded yet).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from modelport.core.concurrency import run_sync
from modelport.errors import ModelportError
from modelport.rollout.feedback import canary_quality
from modelport.rollout.router import EndpointRouter, Routed
from modelport.rollout.store import EndpointStore
from modelport.serving.body import header, query_param, read_body

if TYPE_CHECKING:
    from modelport.serving.app import ServingApp

log = logging.getLogger("modelport.serving")
POLL_INTERVAL = 0.25
Headers = list[tuple[bytes, bytes]]


class HttpEndpoints:
    """The app's endpoint routing. ``route`` is called for every prediction request."""

    def __init__(self, app: ServingApp, *, poll_interval: float = POLL_INTERVAL) -> None:
        self.app = app
        self.router = EndpointRouter(
            EndpointStore(app.service.registry, actor="modelport-serve"), app.service,
            source="rest", protected=lambda: set(app.served.values()), quality=canary_quality)
        self.poll_interval = poll_interval
        self._task: asyncio.Task[None] | None = None
        self._keys: dict[str, bytes] = {}
        #: (endpoint, variant, version) → the answer headers and the JSON body prefix naming them
        self._answers: dict[tuple[str, str, int | None],
                            tuple[tuple[tuple[bytes, bytes], ...], bytes]] = {}

    async def start(self) -> None:
        try:
            await run_sync(None, self.router.tick)
        except Exception as exc:
            log.warning("reading endpoints from the registry failed: %s", exc)
        if self.app.config.poll_interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await run_sync(None, self.router.close)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await run_sync(None, self.router.tick)
            except Exception as exc:  # a database hiccup must not stop routing
                log.warning("refreshing endpoints failed (the current policies stay): %s", exc)

    def route(self, scope: dict[str, Any], name: str, version: str | None) -> Routed | None:
        """The variant that answers this request, or ``None`` if ``name`` is no endpoint."""
        if version is not None or name not in self.router.endpoints:
            return None
        return self.router.route(name, header(scope, self._key(name)))

    def is_endpoint(self, name: str) -> bool:
        """Whether the registry has an endpoint ``name`` (``modelport serve NAME``)."""
        from modelport.rollout.spec import check_endpoint_name

        try:
            check_endpoint_name(name)
        except ModelportError:
            return False
        return self.router.store.exists(name)

    def primary_ref(self, name: str) -> str | None:
        """The reference of endpoint ``name``'s primary variant (metadata, readiness)."""
        endpoint = self.router.endpoints.get(name)
        return None if endpoint is None else endpoint.spec.variants[endpoint.spec.stable]

    def route_grpc(self, name: str, version: str, context: Any) -> Routed | None:
        """As ``route``, for gRPC: the key comes from the invocation metadata."""
        if version or name not in self.router.endpoints:
            return None
        wanted = self.router.key_name(name).lower()
        key = None
        for item in context.invocation_metadata() or ():
            if item.key == wanted:
                key = item.value
                break
        return self.router.route(name, key)

    def answered(self, routed: Routed, elapsed_s: float, *, ok: bool) -> None:
        self.router.observe(routed.endpoint, routed.variant, elapsed_s * 1000.0, ok=ok)

    def _key(self, name: str) -> bytes:
        key = self.router.key_name(name)
        cached = self._keys.get(key)
        if cached is None:
            cached = self._keys[key] = key.lower().encode("latin-1")
        return cached

    def finish(self, routed: Routed, status: int, elapsed_s: float, protocol: str,
               payload: bytes) -> tuple[bytes, Headers]:
        """Count the answer; the headers naming the variant (and, for the plain JSON route,
        ``endpoint`` and ``variant`` at the front of the body)."""
        self.router.observe(routed.endpoint, routed.variant, elapsed_s * 1000.0, ok=status < 500)
        made = (routed.endpoint, routed.variant, routed.version)
        known = self._answers.get(made)
        if known is None:  # the same few per endpoint: made once
            version = "" if made[2] is None else str(made[2])
            if len(self._answers) > 1024:
                self._answers.clear()
            known = self._answers[made] = (
                ((b"x-modelport-endpoint", made[0].encode()),
                 (b"x-modelport-variant", made[1].encode()),
                 (b"x-modelport-version", version.encode())),
                b'{"endpoint":' + orjson.dumps(made[0]) + b',"variant":' + orjson.dumps(made[1])
                + b",")
        if protocol == "simple" and status == 200 and payload.startswith(b"{"):
            payload = known[1] + payload[1:]
        return payload, list(known[0])


class EndpointRoutes:
    """``/endpoints`` over HTTP: ``GET /endpoints``, ``GET /endpoints/{name}`` and
    ``GET /endpoints/{name}/report`` (scope ``read``); ``POST /endpoints/{name}/{action}`` with
    action ``switch`` (``{"variant": "green"}``), ``rollback``, ``promote``
    (``{"variant": ...}`` optional), ``pause`` or ``resume`` (scope ``admin``; the optional
    ``"if_revision"`` refuses with 409 when someone changed it since). Changes are audited with
    the caller's key name."""

    ACTIONS = ("switch", "rollback", "promote", "pause", "resume")

    def __init__(self, endpoints: HttpEndpoints) -> None:
        self.endpoints = endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.endpoints.app
        method: str = scope["method"]
        parts = [p for p in scope["path"].strip("/").split("/") if p]  # under /endpoints
        try:
            if method in ("GET", "HEAD") and len(parts) <= 2:
                body = await run_sync(None, self._read, parts, scope)
            elif method == "POST" and len(parts) == 2 and parts[1] in self.ACTIONS:
                raw = await read_body(scope, receive, app.config.limits.max_body_bytes)
                body = await run_sync(None, self._act, parts[0], parts[1], raw, scope)
            else:
                from modelport.errors import NotFoundError

                raise NotFoundError(f"no route {method} {scope['path']}")
            status, payload, headers = 200, orjson.dumps(body), _JSON
        except Exception as exc:
            status, payload, headers = app._error("simple", exc, "")
        await send({"type": "http.response.start", "status": status, "headers": [
            *headers, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _read(self, parts: list[str], scope: dict[str, Any]) -> Any:
        from modelport.rollout import report
        from modelport.rollout.policy import shares

        store = self.endpoints.router.store
        if not parts:
            return [e.to_dict() for e in store.list()]
        if len(parts) == 2:
            if parts[1] != "report":
                from modelport.errors import NotFoundError

                raise NotFoundError(f"no route GET {scope['path']}")
            metric = query_param(scope, b"metric") or "latency_ms"
            return report.build(store, parts[0], metric=metric)
        endpoint = store.get(parts[0])
        return {**endpoint.to_dict(), "shares": shares(endpoint.spec, endpoint.state)}

    def _act(self, name: str, action: str, raw: bytes, scope: dict[str, Any]) -> Any:
        from modelport.errors import InvalidInputError
        from modelport.rollout.store import EndpointStore
        from modelport.serving.access import actor_of, principal_of

        try:
            data = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInputError("send a JSON object, e.g. {\"variant\": \"green\"}")
        actor = actor_of(principal_of(scope))
        store = EndpointStore(self.endpoints.router.store.registry, actor=actor)
        kwargs: dict[str, Any] = {"expected_revision": data.get("if_revision")}
        if action == "switch":
            variant = data.get("variant")
            if not isinstance(variant, str):
                raise InvalidInputError("switch needs {\"variant\": \"NAME\"}",
                                        field="variant")
            endpoint = store.switch(name, variant, **kwargs)
        elif action == "rollback":
            endpoint = store.rollback(name, **kwargs)
        elif action == "promote":
            endpoint = store.promote(name, data.get("variant"), **kwargs)
        else:
            endpoint = store.pause(name, action == "pause", **kwargs)
        return endpoint.to_dict()


_JSON = [(b"content-type", b"application/json")]


__all__ = ["POLL_INTERVAL", "HttpEndpoints"]
