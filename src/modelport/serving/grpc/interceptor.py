"""The gRPC side of :class:`~modelport.serving.access.AccessControl`: one server interceptor.

Each call's method is looked up in ``routes.GRPC_SCOPES``; the token comes from the
``authorization: Bearer <key>`` (or ``x-api-key``) metadata. Refusals end the call with
UNAUTHENTICATED (plus ``www-authenticate`` trailing metadata), PERMISSION_DENIED or
RESOURCE_EXHAUSTED (plus ``retry-after``), before the request reaches the servicer. The caller is
available to servicer methods through :func:`modelport.serving.access.current_principal`, and
``ModelInfer`` rows count against the key's daily quota.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from modelport.errors import ModelportError
from modelport.serving.access import AccessControl, set_current_principal
from modelport.serving.auth import Principal
from modelport.serving.grpc.status import grpc_error
from modelport.serving.routes import GRPC_SCOPES

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks every call against ``access`` (and passes calls through untouched when there is
    nothing to check: authentication off and not an admin method)."""

    def __init__(self, access: AccessControl) -> None:
        self.access = access

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        if not self.access.enabled and GRPC_SCOPES.get(method, "admin") != "admin":
            return handler
        access = self.access

        async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> Principal | None:
            try:
                return access.grpc(method, context.invocation_metadata(), context.peer())
            except ModelportError as exc:
                error = grpc_error(exc, "-")
                metadata = [m for m in error.metadata if m[0] != "request-id"]
                if error.code == grpc.StatusCode.UNAUTHENTICATED:
                    metadata.append(("www-authenticate", 'Bearer realm="modelport"'))
                context.set_trailing_metadata(tuple(metadata))
                await context.abort(error.code, error.message)
                raise  # abort raises; this line is never reached

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                principal = await admit(context)
                if principal is not None and method == "ModelInfer":
                    try:
                        access.charge_rows(principal, _rows(request))
                    except ModelportError as exc:
                        error = grpc_error(exc, "-")
                        context.set_trailing_metadata(error.metadata)
                        await context.abort(error.code, error.message)
                token = set_current_principal(principal)
                try:
                    return await inner(request, context)
                finally:
                    _reset(token)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def stream(requests: AsyncIterator[Any],
                             context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                principal = await admit(context)
                token = set_current_principal(principal)
                try:
                    async for response in inner_stream(requests, context):
                        yield response
                finally:
                    _reset(token)

            return grpc.stream_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler  # pragma: no cover - the inference service has no other kinds


def _reset(token: Any) -> None:
    with contextlib.suppress(ValueError):  # resumed in another context: nothing to undo
        token.var.reset(token)


def _rows(request: Any) -> int:
    """Rows of a ``ModelInferRequest``: the first input's first dimension."""
    try:
        shape = request.inputs[0].shape
        return int(shape[0]) if len(shape) else 1
    except (IndexError, AttributeError):
        return 0


def server_credentials(cert: str, key: str, client_ca: str | None) -> grpc.ServerCredentials:
    """TLS credentials for the gRPC server; ``client_ca`` requires client certificates."""
    with open(key, "rb") as f:
        private_key = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    root = None
    if client_ca is not None:
        with open(client_ca, "rb") as f:
            root = f.read()
    return grpc.ssl_server_credentials([(private_key, chain)], root_certificates=root,
                                       require_client_auth=client_ca is not None)


__all__ = ["AccessInterceptor", "server_credentials"]
