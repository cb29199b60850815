"""The server's prediction log and feedback edge: ``POST /feedback[/{model}]`` and gRPC
``modelport.FeedbackService/Feedback``.

:func:`attach_prediction_log` subscribes a :class:`~modelport.log.PredictionLog` to the worker's
prediction events (when ``serve --log`` is on), mounts the feedback route and registers the gRPC
feedback service; the log is flushed at shutdown (SIGTERM) after the last request is answered.

``POST /feedback`` takes one item, a list, or ``{"items": [...]}`` (fields in
:mod:`modelport.log.feedback_items`) and answers ``{"accepted": n}``; ``/feedback/{model}``
checks labels against that model and fills in ``model``. A wrong item answers 400 with the
plain JSON error shape ``{"error": "...", "field": "items[2].label"}`` and stores nothing of the
request. Items of concurrent requests are stored together (one commit per group), so a burst of
feedback costs few table commits.

The gRPC service (``feedback.proto``) takes and returns a ``google.protobuf.Struct``: the same
JSON object as the REST body, so any gRPC client can call it without generated stubs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelport.core.concurrency import run_sync
from modelport.errors import (
    InvalidInputError,
    ModelportError,
    NotFoundError,
    StorageError,
)
from modelport.log.config import LogConfig
from modelport.log.feedback_items import FeedbackItem, parse_items, to_table
from modelport.log.store import LogStore
from modelport.log.writer import PredictionLog
from modelport.serving.body import read_body
from modelport.serving.http_errors import error_body, status_of

if TYPE_CHECKING:
    from modelport.bundle.signature import Signature
    from modelport.serving.app import ServingApp
    from modelport.settings import Settings

log = logging.getLogger("modelport.log")

GRPC_SERVICE = "modelport.FeedbackService"
_JSON = [(b"content-type", b"application/json")]


class FeedbackWriter:
    """Stores feedback items in every store; concurrent callers share one commit."""

    def __init__(self, stores: Sequence[LogStore]) -> None:
        self.stores = list(stores)
        self._waiting: list[tuple[list[FeedbackItem], str, asyncio.Future[int]]] = []
        self._task: asyncio.Task[None] | None = None
        self.accepted = 0

    async def write(self, items: list[FeedbackItem], source: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, source, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await run_sync(None, self._store, group)
            except Exception as exc:
                log.error("storing %d feedback items failed: %s",
                          sum(len(g[0]) for g in group), exc)
                error = StorageError("the feedback store is unavailable right now; nothing was "
                                     "stored, retry later (the server log has the details)")
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            for items, _, future in group:
                self.accepted += len(items)
                if not future.done():
                    future.set_result(len(items))

    def _store(self, group: list[tuple[list[FeedbackItem], str, asyncio.Future[int]]]) -> None:
        import pyarrow as pa

        tables = [to_table(items, source=source) for items, source, _ in group]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        for store in self.stores:
            store.append_feedback(table)


class FeedbackRoute:
    """The ASGI app mounted at ``/feedback``."""

    def __init__(self, app: ServingApp, writer: FeedbackWriter, *,
                 log_store: LogStore | None = None,
                 flush: Callable[[], object] | None = None) -> None:
        self.app = app
        self.writer = writer
        #: where rewards' predictions are looked up (rollout.rewards); flush runs first
        self.log_store = log_store
        self.flush = flush

    def signature_of(self, model: str) -> Signature:
        endpoints = self.app.endpoints
        if model not in self.app.served and (endpoints is None
                                             or model not in endpoints.router.endpoints):
            raise NotFoundError(
                f"model {model!r} is not served here; served models: {sorted(self.app.served)}")
        return self.app.runner_for(model).model.signature

    def parse(self, payload: Any, model: str | None) -> list[FeedbackItem]:
        if model is not None:
            self.signature_of(model)  # 404 for an unknown model in the path
        elif len(self.app.served) == 1:
            model = next(iter(self.app.served))

        def signature(name: str) -> Signature:
            try:
                return self.signature_of(name)
            except NotFoundError as exc:
                raise InvalidInputError(str(exc), field="model") from None

        return parse_items(payload, signature_of=signature, default_model=model)

    def check_rewards(self, items: list[FeedbackItem], payload: Any) -> None:
        """Refuse rewards outside the range of the bandit endpoint they reward (blocking)."""
        endpoints = self.app.endpoints
        if endpoints is None or all(item.reward is None for item in items):
            return
        from modelport.rollout.rewards import (
            bandit_ranges,
            check_rewards,
            item_field,
            log_endpoint_of,
        )

        table = list(endpoints.router.endpoints.values())
        lookup = (log_endpoint_of(table, store=self.log_store, before=self.flush)
                  if self.log_store is not None else None)
        single = isinstance(payload, Mapping) and not (len(payload) == 1 and "items" in payload)
        check_rewards(items, bandit_ranges(table), lookup, item_field(single))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"].strip("/")
        model = path or None
        try:
            if scope["method"] != "POST":
                raise _NotAllowed("use POST for /feedback")
            if model is not None and "/" in model:
                raise NotFoundError(f"no route /feedback/{model}")
            body = await read_body(scope, receive, self.app.config.limits.max_body_bytes)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidInputError(f"feedback body is not valid JSON: {exc}",
                                        field="body") from None
            items = self.parse(payload, model)
            await run_sync(None, self.check_rewards, items, payload)
            accepted = await self.writer.write(items, "rest")
            status, out = 200, orjson.dumps({"accepted": accepted})
        except Exception as exc:
            status = 405 if isinstance(exc, _NotAllowed) else status_of(exc)
            if isinstance(exc, ModelportError):
                message = str(exc)
            else:
                log.exception("feedback request failed")
                message = "internal error; the server log has the details"
            out = orjson.dumps(error_body("simple", status, message,
                                          getattr(exc, "field", None)))
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON, (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})


class _NotAllowed(ModelportError):
    pass


def grpc_handler(route: FeedbackRoute) -> Any:
    """The generic gRPC handler of ``modelport.FeedbackService/Feedback`` (Struct in, out)."""
    import grpc
    from google.protobuf import json_format, struct_pb2

    from modelport.serving.grpc.status import grpc_error

    async def feedback(request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        try:
            payload = json_format.MessageToDict(request)
            model = payload.pop("model", None) if "items" in payload else None
            items = route.parse(payload, model if isinstance(model, str) else None)
            await run_sync(None, route.check_rewards, items, payload)
            accepted = await route.writer.write(items, "grpc")
        except Exception as exc:
            error = grpc_error(exc, "feedback")
            await context.abort(error.code, error.message)
            raise
        answer = struct_pb2.Struct()
        answer.update({"accepted": accepted})
        return answer

    method = grpc.unary_unary_rpc_method_handler(
        feedback, request_deserializer=struct_pb2.Struct.FromString,
        response_serializer=struct_pb2.Struct.SerializeToString)
    return grpc.method_handlers_generic_handler(GRPC_SERVICE, {"Feedback": method})


def attach_prediction_log(app: ServingApp, settings: Settings) -> PredictionLog | None:
    """Log the app's predictions (when ``config.log`` names stores) and serve feedback."""
    from modelport.log import open_stores

    config = app.config
    log_config = LogConfig.from_env(stores=config.log or None, config_file=config.log_config)
    stores = open_stores(log_config, settings)
    plog: PredictionLog | None = None
    if config.log or config.log_config:
        plog = PredictionLog(stores, log_config, metrics_registry=app.metrics.registry).start()
        app.service.events.subscribe(plog)
    readable = [store for store in stores if store.readable]
    route = FeedbackRoute(app, FeedbackWriter(stores), log_store=readable[0] if readable else None,
                          flush=plog.flush if plog is not None else None)
    app.mount("/feedback", route)
    if config.grpc_port is not None:  # grpc and protobuf cost ~0.1 s to import at start-up
        app.grpc_handlers.append(grpc_handler(route))

    async def close() -> None:
        if plog is not None:
            app.service.events.flush()
            await run_sync(None, plog.close)

    app.on_shutdown.append(close)
    return plog


__all__ = ["GRPC_SERVICE", "FeedbackRoute", "FeedbackWriter", "attach_prediction_log",
           "grpc_handler"]
