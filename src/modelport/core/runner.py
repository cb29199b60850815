"""``Runner``: one loaded model version, predicting on batches, with a micro-batcher in front.

Synchronous callers (batch jobs, stream workers, the CLI) call ``predict(batch)``. Asynchronous
callers (the server) ``await submit(batch)``: requests that arrive while the model is busy are
queued and then answered by one vectorized call, so batching costs nothing at concurrency 1 and
helps under load. ``max_wait_ms`` optionally holds a batch open a little longer to gather more rows.
A batch whose combined call fails is retried request by request, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from modelport.bundle.model import Model
from modelport.core.batch import Batch, Result
from modelport.core.concurrency import run_sync
from modelport.core.events import EventBus, PredictionEvent
from modelport.errors import ModelportError, OverloadedError, PredictionError
from modelport.flavors.base import Predictor

log = logging.getLogger("modelport.runner")

Accelerate = Literal["auto", "onnx", "off"]


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner batches and accelerates. Defaults suit a server with a few dozen clients."""

    max_batch_rows: int = 256
    max_wait_ms: float = 0.0
    max_queue_rows: int = 4096
    accelerate: Accelerate = "off"


@dataclass
class _Pending:
    batch: Batch
    future: asyncio.Future[Result]
    request_id: str | None
    source: str
    endpoint: str | None
    variant: str | None


class Runner:
    """Owns one model version. ``load()`` prepares it (and its ONNX form, if asked)."""

    def __init__(
        self,
        model: Model,
        options: RunnerOptions | None = None,
        *,
        events: EventBus | None = None,
    ) -> None:
        self.model = model
        self.options = options or RunnerOptions()
        self.events = events or EventBus()
        self.predictor: Predictor = model.predictor
        self.accelerated = False
        self.accelerate_reason = "acceleration off"
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.calls = 0

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int | None:
        return self.model.version

    @property
    def queued_rows(self) -> int:
        return self._pending_rows

    def load(self) -> Runner:
        """Prepare the fastest faithful predictor (ONNX when allowed and equivalent)."""
        if self.options.accelerate == "off":
            return self
        from modelport.flavors.convert import to_onnx

        predictor, reason = to_onnx(self.model)
        if predictor is not None:
            self.predictor, self.accelerated = predictor, True
            self.accelerate_reason = reason or "converted to ONNX; predictions match"
            log.info("model %s runs under ONNX Runtime", self.model.ref)
        else:
            self.accelerate_reason = reason or "no ONNX converter"
            if self.options.accelerate == "onnx":
                raise ModelportError(
                    f"model {self.model.ref} cannot run under ONNX: {self.accelerate_reason}"
                )
            log.info("model %s stays native: %s", self.model.ref, self.accelerate_reason)
        return self

    # ------------------------------------------------------------------ synchronous path
    def predict(
        self,
        batch: Batch,
        *,
        source: str = "python",
        request_id: str | None = None,
        endpoint: str | None = None,
        variant: str | None = None,
    ) -> Result:
        start = time.perf_counter()
        result = self._call(batch)
        self._emit(batch, result, start, source, request_id, endpoint, variant)
        return result

    def _call(self, batch: Batch) -> Result:
        self.calls += 1
        try:
            return self.predictor.predict(batch)
        except ModelportError:
            raise
        except Exception as exc:
            raise PredictionError(f"model {self.model.ref} failed to predict: {exc}") from exc

    def _emit(self, batch: Batch, result: Result, start: float, source: str,
              request_id: str | None, endpoint: str | None, variant: str | None) -> None:
        if self.events.has_observers:
            self.events.publish(PredictionEvent(
                model=self.model.name, version=self.model.version, inputs=batch, outputs=result,
                latency_ms=(time.perf_counter() - start) * 1000.0, source=source,
                endpoint=endpoint, variant=variant, request_id=request_id,
            ))

    # ------------------------------------------------------------------ micro-batched path
    async def submit(
        self,
        batch: Batch,
        *,
        source: str = "rest",
        request_id: str | None = None,
        endpoint: str | None = None,
        variant: str | None = None,
    ) -> Result:
        """Queue ``batch`` for the next vectorized call and wait for its slice of the result."""
        if self._pending_rows + batch.n_rows > self.options.max_queue_rows:
            raise OverloadedError(
                f"model {self.model.ref} has {self._pending_rows} rows queued; try again shortly"
            )
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._executor = self._executor or ThreadPoolExecutor(
                1, thread_name_prefix=f"runner-{self.model.name}")
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work())
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append(_Pending(batch, future, request_id, source, endpoint, variant))
        self._pending_rows += batch.n_rows
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if self.options.max_wait_ms > 0 and self._pending_rows < \
                        self.options.max_batch_rows:
                    await asyncio.sleep(self.options.max_wait_ms / 1000.0)
                group = self._take_group()
                await self._run_group(group)

    def _take_group(self) -> list[_Pending]:
        group: list[_Pending] = []
        rows = 0
        while self._pending:
            nxt = self._pending[0]
            if group and rows + nxt.batch.n_rows > self.options.max_batch_rows:
                break
            self._pending.popleft()
            self._pending_rows -= nxt.batch.n_rows
            if nxt.future.cancelled():
                continue
            group.append(nxt)
            rows += nxt.batch.n_rows
        return group

    async def _run_group(self, group: list[_Pending]) -> None:
        if not group:
            return
        start = time.perf_counter()
        try:
            if len(group) == 1:
                results = [await run_sync(self._executor, self._call, group[0].batch)]
            else:
                joined = Batch.concat([p.batch for p in group])
                whole = await run_sync(self._executor, self._call, joined)
                results = list(whole.split([p.batch.n_rows for p in group]))
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0].future, exc)
                return
            # one bad request must not fail the others: answer each on its own
            for item in group:
                await self._run_group([item])
            return
        for item, result in zip(group, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
            self._emit(item.batch, result, start, item.source, item.request_id, item.endpoint,
                       item.variant)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        for item in self._pending:
            _fail(item.future, OverloadedError(f"model {self.model.ref} was unloaded"))
        self._pending.clear()
        self._pending_rows = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def __repr__(self) -> str:
        return f"Runner({self.model.ref!r}, accelerated={self.accelerated})"


def _fail(future: asyncio.Future[Result], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
