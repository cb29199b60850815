"""``InferenceServicer``: the Open Inference Protocol V2 gRPC service over an ``InferenceService``.

Every RPC translates the wire to the core and back; nothing here predicts. ``ModelInfer`` decodes
the input tensors, binds them to the model's signature, submits the batch to the model's
``Runner`` (so gRPC requests share micro-batches with REST ones) and encodes the result.

A request's ``model_name`` is a served name (``models`` maps it to a registry reference such as
``churn@production``; ``model_version``, if given, must be the version it serves, as on the REST
side) or, when no served names are configured, any registry reference (``model_version`` then
pins that version of the model). Errors end the call with the status from
:mod:`modelport.serving.grpc.status`.

Triton's extensions are served as well: ``ModelStreamInfer`` (a bidirectional stream: every
request is answered in the stream, a failed one with ``error_message`` while the stream goes on),
``ModelConfig``, ``ModelStatistics`` and ``RepositoryIndex``; their answers are built by
:mod:`modelport.serving.triton`, which the REST routes share. Every inference request is counted by
``on_request`` (the Prometheus request metrics and Triton's statistics).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import json_format

import modelport
from modelport.bundle.signature import DEFAULT_EXTRA, ExtraColumns
from modelport.core.concurrency import run_sync
from modelport.core.runner import Runner
from modelport.core.service import InferenceService
from modelport.errors import InvalidInputError, ModelportError, NotFoundError
from modelport.registry.refs import parse_ref
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.grpc.layout import (
    batch_from_tensors,
    model_parameters,
    model_tensors,
    passthrough_outputs,
    result_tensors,
    select_outputs,
    split_tensors,
)
from modelport.serving.grpc.status import grpc_error
from modelport.serving.grpc.tensors import decode_inputs, encode_output
from modelport.serving.statistics import InferenceStatistics
from modelport.serving.triton import model_config, repository_index, statistics_of

log = logging.getLogger("modelport.serving.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
T = TypeVar("T")
#: requests of one stream predicted at the same time (they share micro-batches)
STREAM_CONCURRENCY = 64


class RequestObserver(Protocol):
    """Counts one inference request (``ServingMetrics.observe_request``)."""

    def __call__(self, model: str, version: str, protocol: str, status: int | str,
                 seconds: float, *, input_s: float = ..., wait_s: float = ...,
                 output_s: float = ...) -> None: ...


def served_names(models: Mapping[str, str] | Sequence[str] | None) -> Mapping[str, str] | None:
    """Served name -> reference; a list of references serves each under its model name.

    A mapping is used as it is, not copied: the REST side's table of served models (which the
    model repository API changes at run time) then serves gRPC too.
    """
    if models is None or isinstance(models, Mapping):
        return models
    return {parse_ref(ref).name: ref for ref in models}


class InferenceServicer:
    """The six RPCs of ``inference.GRPCInferenceService``.

    ``ready`` (optional) reports whether the whole server is ready, so gRPC and REST answer
    readiness alike; ``request_timeout`` bounds a prediction even when the client sets no deadline.
    """

    def __init__(
        self,
        service: InferenceService,
        *,
        models: Mapping[str, str] | Sequence[str] | None = None,
        request_timeout: float | None = None,
        ready: Callable[[], bool] | None = None,
        on_request: RequestObserver | None = None,
        statistics: InferenceStatistics | None = None,
        load_errors: Mapping[str, str] | None = None,
        max_rows: int | None = None,
        endpoints: Any = None,
        defences: Any = None,
        extra_columns: ExtraColumns = DEFAULT_EXTRA,
    ) -> None:
        self.service = service
        #: what happens to input tensors the model does not take (``--extra-columns``)
        self.extra_columns = extra_columns
        #: model-attack defences shared with the REST side (serving/defences.py), or None
        self.defences = defences
        #: rows per request, as ``limits.max_rows`` on the REST side
        self.max_rows = max_rows
        #: endpoints with traffic policies (serving/endpoints.py HttpEndpoints), if served
        self.endpoints = endpoints
        self.models = served_names(models)
        self.request_timeout = request_timeout
        self._ready = ready
        self._on_request = on_request
        self.statistics = statistics
        #: reference -> why its last load failed (the REST side's table, shared)
        self.load_errors = load_errors if load_errors is not None else {}

    # ------------------------------------------------------------------ health and metadata
    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext[
            Any, Any]) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext[
            Any, Any]) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready() if self._ready is not None else True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext[Any, Any]
                             ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="modelport", version=modelport.__version__)

    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelReadyResponse:
        """Ready when the model resolves and loads (it is loaded here if it was not yet)."""
        async def ready() -> pb.ModelReadyResponse:
            try:
                await self.resolve(request.name, request.version)
            except ModelportError as exc:
                log.info("model %r is not ready: %s", request.name, exc)
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._answer(context, ready(), _new_id())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext[Any, Any]
                            ) -> pb.ModelMetadataResponse:
        async def metadata() -> pb.ModelMetadataResponse:
            runner = await self.resolve(request.name, request.version)
            model = runner.model
            inputs, outputs = model_tensors(model)
            response = pb.ModelMetadataResponse(
                name=request.name,
                versions=[str(model.version)] if model.version is not None else [],
                platform=f"modelport_{model.flavor}",
                inputs=[pb.ModelMetadataResponse.TensorMetadata(
                    name=t.name, datatype=t.datatype, shape=t.shape) for t in inputs],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(
                    name=t.name, datatype=t.datatype, shape=t.shape) for t in outputs],
            )
            for key, value in model_parameters(model.signature).items():
                response.parameters[key].string_param = value
            return response

        return await self._answer(context, metadata(), _new_id())

    async def ModelConfig(self, request: pb.ModelConfigRequest,
                          context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelConfigResponse:
        async def config() -> pb.ModelConfigResponse:
            runner = await self.resolve(request.name, request.version)
            return pb.ModelConfigResponse(config=json_format.ParseDict(
                model_config(request.name, runner), pb.ModelConfig()))

        return await self._answer(context, config(), _new_id())

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              context: grpc.aio.ServicerContext[Any, Any]
                              ) -> pb.ModelStatisticsResponse:
        """Triton's statistics of one model (every served model when ``name`` is empty)."""
        async def stats() -> pb.ModelStatisticsResponse:
            served = self._served()
            if request.name:
                await self.resolve(request.name, request.version)  # NOT_FOUND as elsewhere
            if self.statistics is None:
                return pb.ModelStatisticsResponse()
            response = pb.ModelStatisticsResponse()
            json_format.ParseDict(
                statistics_of(self.statistics, served, self.service, request.name or None,
                              request.version or None), response, ignore_unknown_fields=True)
            return response

        return await self._answer(context, stats(), _new_id())

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext[Any, Any]
                              ) -> pb.RepositoryIndexResponse:
        async def index() -> pb.RepositoryIndexResponse:
            entries = repository_index(self._served(), self.service, self.load_errors,
                                       ready_only=request.ready)
            return pb.RepositoryIndexResponse(models=[
                pb.RepositoryIndexResponse.ModelIndex(**entry) for entry in entries])

        return await self._answer(context, index(), _new_id())

    def _served(self) -> Mapping[str, str]:
        """Served name -> reference; without a served table, the models loaded so far."""
        if self.models is not None:
            return self.models
        return {ref: ref for ref in self.service.references()}

    # ------------------------------------------------------------------ inference
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelInferResponse:
        request_id = request.id or _new_id()
        response = await self._answer(context, self._infer(request, context, request_id),
                                      request_id)
        trailing = [("x-prediction-id", response.parameters["prediction_id"].string_param)]
        if "variant" in response.parameters:
            trailing += [("x-modelport-endpoint", response.parameters["endpoint"].string_param),
                         ("x-modelport-variant", response.parameters["variant"].string_param),
                         ("x-modelport-version", response.model_version)]
        context.set_trailing_metadata(tuple(trailing))
        return response

    async def ModelStreamInfer(self, requests: AsyncIterator[pb.ModelInferRequest],
                               context: grpc.aio.ServicerContext[Any, Any]
                               ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Answer every request of the stream, in the order the answers are ready (clients
        match them by request id); a failed request answers ``error_message``."""
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_CONCURRENCY)
        tasks: set[asyncio.Task[None]] = set()

        async def one(request: pb.ModelInferRequest) -> None:
            request_id = request.id or _new_id()
            try:
                response = await self._infer(request, context, request_id)
                await answers.put(pb.ModelStreamInferResponse(infer_response=response))
            except Exception as exc:
                error = grpc_error(exc, request_id)
                if error.unexpected:
                    log.error("gRPC stream request %s failed", request_id, exc_info=exc)
                await answers.put(pb.ModelStreamInferResponse(
                    error_message=error.message,
                    infer_response=pb.ModelInferResponse(
                        model_name=request.model_name, model_version=request.model_version,
                        id=request.id)))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for request in requests:
                    await slots.acquire()
                    task = asyncio.get_running_loop().create_task(one(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                await answers.put(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()

    async def _infer(self, request: pb.ModelInferRequest,
                     context: grpc.aio.ServicerContext[Any, Any],
                     request_id: str) -> pb.ModelInferResponse:
        timing = _Timing(time.perf_counter())
        try:
            response = await self._infer_timed(request, context, request_id, timing)
        except Exception as exc:
            timing.status = grpc_error(exc, request_id).code.name
            raise
        finally:
            if self._on_request is not None:
                timing.report(self._on_request)
        return response

    async def _infer_timed(self, request: pb.ModelInferRequest,
                           context: grpc.aio.ServicerContext[Any, Any], request_id: str,
                           timing: _Timing) -> pb.ModelInferResponse:
        routed = (self.endpoints.route_grpc(request.model_name, request.model_version, context)
                  if self.endpoints is not None else None)
        runner = (routed.runner if routed is not None
                  else await self.resolve(request.model_name, request.model_version))
        timing.model, timing.version = runner.name, str(runner.version)
        model = runner.model
        timing.decoding = time.perf_counter()
        taken, extras = split_tensors(model.signature, decode_inputs(request), self.extra_columns)
        batch = batch_from_tensors(model.signature, taken)
        if self.max_rows is not None and batch.n_rows > self.max_rows:
            raise InvalidInputError(
                f"{batch.n_rows} rows in one request; the limit is {self.max_rows}. Split the "
                "rows over several requests")
        flagged: list[str] = []
        if self.defences is not None:
            flagged = self.defences.inspect(request.model_name, model, batch, _caller(context))
        timing.submitted = time.perf_counter()
        pid = _new_id()  # the prediction id P (rows P-0 …), see modelport.log.schema
        try:
            result = await runner.submit(
                batch, source="grpc", request_id=request_id, timeout=self._timeout(context),
                prediction_id=pid, endpoint=routed.endpoint if routed else None,
                variant=routed.variant if routed else None)
        except Exception:
            if routed is not None:
                self.endpoints.answered(routed, time.perf_counter() - timing.start, ok=False)
            raise
        timing.answered = time.perf_counter()
        if self.defences is not None:
            result = self.defences.shape(request.model_name, result)
        answered = result_tensors(model, result)
        if extras and self.extra_columns == "passthrough":
            answered = passthrough_outputs(answered, extras)
        outputs = select_outputs(answered, [o.name for o in request.outputs])
        raw = _wants_raw(request)
        response = pb.ModelInferResponse(
            model_name=request.model_name,
            model_version=str(model.version) if model.version is not None else "",
            id=request.id,
        )
        # the prediction id: a response parameter (stream answers too); ModelInfer also sends
        # it as the trailing metadata x-prediction-id
        response.parameters["prediction_id"].string_param = pid
        if flagged:  # the columns far outside the training data (serving/defences.py)
            response.parameters["out_of_distribution"].string_param = ",".join(flagged)
        if routed is not None:  # the variant that answered: parameters and trailing metadata
            response.parameters["endpoint"].string_param = routed.endpoint
            response.parameters["variant"].string_param = routed.variant
            self.endpoints.answered(routed, time.perf_counter() - timing.start, ok=True)
            if routed.decision.shadows:
                self.endpoints.router.shadow(routed.decision, batch, result)
        for out in outputs:
            tensor, data = encode_output(out.name, out.array, raw=raw)
            for key, value in out.parameters.items():
                tensor.parameters[key].string_param = value
            response.outputs.append(tensor)
            if data is not None:
                response.raw_output_contents.append(data)
        return response

    # ------------------------------------------------------------------ helpers
    async def resolve(self, name: str, version: str) -> Runner:
        """The runner for a request's model name and optional version number."""
        if not name:
            raise InvalidInputError("model_name is empty; name the model to use",
                                    field="model_name")
        if version and (not version.isascii() or not version.isdigit() or int(version) < 1):
            raise InvalidInputError(
                f"model_version {version!r} is not a version number; give a positive integer "
                "such as 3, or leave it empty", field="model_version",
            )
        if self.models is None:  # any registry reference; a version pins that version
            return await self._runner(f"{parse_ref(name).name}:{int(version)}" if version
                                      else name)
        ref = self.models.get(name)
        if ref is None:
            raise NotFoundError(
                f"model {name!r} is not served here; served models: {sorted(self.models)}"
            )
        runner = await self._runner(ref)
        if version and str(runner.version) != version:
            raise NotFoundError(f"model {name!r} serves version {runner.version}, not {version}")
        return runner

    async def _runner(self, ref: str) -> Runner:
        if ref in self.service.references():  # loaded: a dictionary lookup
            return self.service.runner(ref)
        return await run_sync(None, self.service.runner, ref)  # may read the registry and load

    def _timeout(self, context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
        remaining = context.time_remaining()
        limits = [t for t in (remaining, self.request_timeout) if t is not None]
        return max(0.0, min(limits)) if limits else None

    async def _answer(self, context: grpc.aio.ServicerContext[Any, Any], call: Awaitable[T],
                      request_id: str) -> T:
        try:
            return await call
        except Exception as exc:
            error = grpc_error(exc, request_id)
            if error.unexpected:
                log.error("gRPC request %s failed", request_id, exc_info=exc)
            await context.abort(error.code, error.message, error.metadata)
            raise  # abort() raises; this line is never reached


class _Timing:
    """What one inference request took, for the request metrics and Triton's statistics."""

    def __init__(self, start: float) -> None:
        self.start = self.decoding = self.submitted = self.answered = start
        self.model, self.version, self.status = "_unknown", "", "OK"

    def report(self, observe: RequestObserver) -> None:
        end = time.perf_counter()
        ok = self.status == "OK"
        observe(self.model, self.version, "grpc", self.status, end - self.start,
                input_s=self.submitted - self.decoding, wait_s=self.answered - self.submitted,
                output_s=end - self.answered if ok else 0.0)


def _wants_raw(request: pb.ModelInferRequest) -> bool:
    """Raw output bytes when asked (``binary_data_output`` / ``binary_data``) or, by default,
    when the inputs came raw: that is how tritonclient reads every output."""
    explicit = [o.parameters["binary_data"].bool_param for o in request.outputs
                if "binary_data" in o.parameters]
    if explicit:
        return any(explicit)
    if "binary_data_output" in request.parameters:
        return bool(request.parameters["binary_data_output"].bool_param)
    return len(request.raw_input_contents) > 0


def _new_id() -> str:
    return uuid.uuid4().hex


def _caller(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Who calls, for the sweep watch: the key's name, else the peer address."""
    from modelport.serving.access import actor_of, current_principal

    principal = current_principal()
    if principal is not None:
        return actor_of(principal)
    kind, _, rest = str(context.peer()).partition(":")
    return "client:" + (rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else kind)


__all__ = ["SERVICE_NAME", "InferenceServicer", "served_names"]
