"""Start and stop the Open Inference Protocol V2 gRPC server on the running event loop.

``modelport serve --grpc-port`` calls :func:`start_grpc_server` next to the HTTP server, in the
same process and event loop, over the same :class:`~modelport.core.service.InferenceService`:
both protocols share the loaded models and their micro-batches.

>>> # inside a coroutine
>>> # handle = await start_grpc_server(service, "127.0.0.1", 8001, models=["churn@production"])
>>> # ...
>>> # await handle.stop(grace=5)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from modelport.bundle.signature import DEFAULT_EXTRA, ExtraColumns
from modelport.core.service import InferenceService
from modelport.errors import ConfigurationError
from modelport.serving.access import AccessControl
from modelport.serving.auth_config import TlsConfig
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.grpc.interceptor import AccessInterceptor, server_credentials
from modelport.serving.grpc.servicer import SERVICE_NAME, InferenceServicer, RequestObserver
from modelport.serving.routes import GRPC_SCOPES
from modelport.serving.statistics import InferenceStatistics

#: default cap on one request or response (gRPC's own default, 4 MiB, is small for tensors)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_RPCS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "ModelConfig": (pb.ModelConfigRequest, pb.ModelConfigResponse),
    "ModelStatistics": (pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
}


@dataclass
class GrpcServerHandle:
    """A started server: where it listens, and how to stop it."""

    server: grpc.aio.Server
    servicer: InferenceServicer
    host: str
    port: int

    @property
    def target(self) -> str:
        """``host:port`` for a client (``tritonclient.grpc.InferenceServerClient(url=...)``)."""
        return f"{self.host}:{self.port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, give in-flight ones ``grace`` seconds, then cancel the rest."""
        await self.server.stop(grace)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def method_handlers(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """The service's RPCs bound to ``servicer``, for any ``grpc.aio`` server."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in _RPCS.items()
    }
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer,
        request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelStreamInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


async def start_grpc_server(
    service: InferenceService,
    host: str,
    port: int,
    *,
    models: Mapping[str, str] | Sequence[str] | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    request_timeout: float | None = None,
    ready: Callable[[], bool] | None = None,
    max_concurrent_rpcs: int | None = None,
    reuse_port: bool = False,
    on_request: RequestObserver | None = None,
    statistics: InferenceStatistics | None = None,
    load_errors: Mapping[str, str] | None = None,
    access: AccessControl | None = None,
    tls: TlsConfig | None = None,
    max_rows: int | None = None,
    defences: Any = None,
    extra_columns: ExtraColumns = DEFAULT_EXTRA,
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    endpoints: Any = None,
) -> GrpcServerHandle:
    """Listen on ``host:port`` (``0`` picks a free port; see ``handle.port``) and serve.

    ``models`` lists the served references (each served under its model name) or maps served
    names to references; without it any registry reference may be asked for. ``ready`` is the
    server-wide readiness the REST side reports too. ``reuse_port`` lets several worker
    processes share the port (the supervisor reserves it first, so a port in use still fails).
    ``on_request`` counts each inference request (``ServingMetrics.observe_request``),
    ``statistics`` answers ``ModelStatistics`` and ``load_errors`` (reference -> reason) gives
    ``RepositoryIndex`` the reason a model is unavailable. ``access`` checks every call's token
    and scope (serving/access.py); ``tls`` serves over TLS (mutual TLS with ``client_ca``).
    ``extra_columns`` is the ``--extra-columns`` policy for input tensors the model does not take.
    """
    if max_message_bytes <= 0:
        raise ConfigurationError(f"max_message_bytes must be positive, got {max_message_bytes}")
    servicer = InferenceServicer(service, models=models, request_timeout=request_timeout,
                                 ready=ready, on_request=on_request, statistics=statistics,
                                 load_errors=load_errors, max_rows=max_rows,
                                 endpoints=endpoints, defences=defences,
                                 extra_columns=extra_columns)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # a port already in use must fail here, not be silently shared with another process;
            # only the workers of one `modelport serve` share it, on purpose
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        # without authentication the interceptor only guards admin RPCs: none, none to add
        interceptors=[AccessInterceptor(access)] if access is not None and (
            access.enabled or any(GRPC_SCOPES.get(m) == "admin" for m in _RPCS)) else None,
    )
    # extra_handlers: services beside OIP's, e.g. modelport.FeedbackService (serving/feedback.py)
    server.add_generic_rpc_handlers((method_handlers(servicer), *extra_handlers))
    address = f"{_bracketed(host)}:{port}"
    try:
        if tls is not None and tls.is_on:
            assert tls.cert is not None and tls.key is not None
            bound = server.add_secure_port(
                address, server_credentials(tls.cert, tls.key, tls.client_ca))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        await server.stop(None)
        raise ConfigurationError(
            f"cannot listen for gRPC on {host}:{port}; is the port in use? choose another "
            "with --grpc-port"
        )
    await server.start()
    return GrpcServerHandle(server, servicer, host, bound)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


__all__ = ["MAX_MESSAGE_BYTES", "GrpcServerHandle", "method_handlers", "start_grpc_server"]
