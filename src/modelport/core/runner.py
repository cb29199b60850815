"""``Runner``: one loaded model version, predicting on batches, with an adaptive micro-batcher.

Synchronous callers (batch jobs, stream workers, the CLI) call ``predict(batch)``. Asynchronous
callers (the server) ``await submit(batch)``. How ``submit`` runs a request depends on how long the
model takes, measured as it serves:

* **fast models** (a moving average under ``inline_below_ms``, e.g. a tree ensemble under ONNX
  Runtime at ~10 µs a row) are called right on the event loop. A hop to a thread costs more than
  the call itself, so batching them would only add latency.
* **slower models** run on one worker thread. Requests that arrive while the model is busy queue
  up and are then answered by one vectorized call of up to ``max_batch_rows`` rows, so batching
  costs nothing at concurrency 1 and helps under load. ``max_wait_ms`` optionally holds a batch
  open a little longer to gather more rows.

A grouped call that fails is retried request by request, so one bad request fails alone.

Load is shed per request by queue wait, not by connection count: ``submit`` refuses a request with
:class:`~modelport.errors.OverloadedError` (HTTP 503 + ``Retry-After``) when the oldest queued
request has waited, or the queued rows are expected to wait, longer than ``max_queue_wait_ms``.

``close()`` drains: queued and running requests are still answered (hot reload closes a runner
that may still hold requests taken just before the switch); only then is the thread released.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from modelport.bundle.accelerated import has_stored, load_stored
from modelport.bundle.model import Model
from modelport.core.batch import Batch, Result
from modelport.core.concurrency import run_sync
from modelport.core.events import EventBus, PredictionEvent
from modelport.errors import (
    InvalidInputError,
    ModelportError,
    OverloadedError,
    PredictionError,
    RequestTimeoutError,
)
from modelport.flavors.base import Predictor

log = logging.getLogger("modelport.runner")

Accelerate = Literal["auto", "onnx", "off"]
#: called with (runner, rows) once per model call made by the micro-batcher
BatchObserver = Callable[["Runner", int], None]

_EWMA = 0.2  # weight of the newest call in the moving averages
_ids = random.Random()  # seeded from os.urandom once; os.urandom per event costs ~20 µs here


def new_id() -> str:
    """A random 128-bit hex id for events and requests (not for secrets)."""
    return f"{_ids.getrandbits(128):032x}"


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner batches, sheds and accelerates. Defaults suit a server with a few dozen
    clients; ``accelerate`` is ``off`` for library use and ``auto`` in ``modelport serve``."""

    max_batch_rows: int = 256
    max_wait_ms: float = 0.0
    max_queue_rows: int = 4096
    accelerate: Accelerate = "off"
    #: refuse new requests once queued work would wait longer than this
    max_queue_wait_ms: float = 2000.0
    #: models whose calls average less than this run on the event loop, unbatched
    inline_below_ms: float = 0.3


@dataclass
class _Pending:
    batch: Batch
    future: asyncio.Future[Result]
    request_id: str | None
    source: str
    endpoint: str | None
    variant: str | None
    enqueued: float
    prediction_id: str | None = None
    row_ids: Sequence[str] | None = None


class Runner:
    """Owns one model version. ``load()`` prepares it (and its ONNX form, if asked)."""

    def __init__(
        self,
        model: Model,
        options: RunnerOptions | None = None,
        *,
        events: EventBus | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.model = model
        self.options = options or RunnerOptions()
        self.events = events or EventBus()
        self.on_batch = on_batch
        self._predictor: Predictor | None = None  # the model's own until load() picks one
        self.accelerated = False
        self.accelerate_reason = "acceleration off"
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = 0  # requests inside the model call in progress
        self._closing = False
        self._drained = threading.Event()
        self._drained.set()
        self.calls = 0
        #: moving averages of one model call and of its cost per row, in milliseconds
        self.call_ms: float | None = None
        self.row_ms = 0.0

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int | None:
        return self.model.version

    @property
    def predictor(self) -> Predictor:
        """What predicts: the ONNX form chosen by ``load()``, else the native model (which a
        lazily loaded model deserializes on this first read)."""
        predictor = self._predictor
        if predictor is None:
            predictor = self._predictor = self.model.predictor
        return predictor

    @predictor.setter
    def predictor(self, value: Predictor) -> None:
        self._predictor = value

    @property
    def queued_rows(self) -> int:
        return self._pending_rows

    @property
    def closed(self) -> bool:
        return self._closing

    def load(self) -> Runner:
        """Prepare the fastest faithful predictor (ONNX when allowed and equivalent)."""
        if self.options.accelerate == "off":
            self.predictor  # noqa: B018 - deserialize now, not in the first request
            return self
        predictor, reason = None, ""
        if self.model.path is not None and has_stored(self.model.manifest):
            predictor, reason = load_stored(self.model.manifest, self.model.path)
            if predictor is None:
                log.warning("model %s: %s; converting again", self.model.ref, reason)
        if predictor is None:
            try:
                from modelport.flavors.convert import to_onnx
            except ImportError:  # the optional converter is not installed in this build
                predictor, reason = None, "ONNX conversion is not available in this installation"
            else:
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
            # the native model answers: deserialize it now, inside the load (and a hot reload's
            # load timeout), not in the first request after the switch
            self.predictor  # noqa: B018
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
        prediction_id: str | None = None,
        row_ids: Sequence[str] | None = None,
    ) -> Result:
        """Predict ``batch`` now. ``prediction_id`` (default: a new id) and ``row_ids`` name the
        rows in the prediction event, see :class:`~modelport.core.events.PredictionEvent`."""
        start = time.perf_counter()
        result = self._call(batch)
        self._emit(batch, result, start, source, request_id, endpoint, variant, prediction_id,
                   row_ids)
        return result

    def _call(self, batch: Batch) -> Result:
        self.calls += 1
        start = time.perf_counter()
        try:
            result = self.predictor.predict(batch)
        except ModelportError:
            raise
        except Exception as exc:
            raise PredictionError(f"model {self.model.ref} failed to predict: {exc}") from exc
        elapsed = (time.perf_counter() - start) * 1000.0
        per_row = elapsed / max(batch.n_rows, 1)
        if self.call_ms is None:
            self.call_ms, self.row_ms = elapsed, per_row
        else:
            # a preempted call looks slow once; cap each sample at twice the estimate so noise
            # cannot flip a fast model to the thread path, while a slow one still gets there
            self.call_ms += _EWMA * (min(elapsed, 2 * self.call_ms + 0.05) - self.call_ms)
            self.row_ms += _EWMA * (min(per_row, 2 * self.row_ms + 0.05) - self.row_ms)
        return result

    def _emit(self, batch: Batch, result: Result, start: float, source: str,
              request_id: str | None, endpoint: str | None, variant: str | None,
              prediction_id: str | None = None, row_ids: Sequence[str] | None = None) -> None:
        if self.events.has_observers:
            self.events.publish(PredictionEvent(
                model=self.model.name, version=self.model.version, inputs=batch, outputs=result,
                latency_ms=(time.perf_counter() - start) * 1000.0, source=source,
                endpoint=endpoint, variant=variant, request_id=request_id,
                id=prediction_id or new_id(), row_ids=row_ids,
            ))

    # ------------------------------------------------------------------ micro-batched path
    @property
    def runs_inline(self) -> bool:
        """Whether ``submit`` calls the model on the event loop for a one-row request."""
        return self._inline(1)

    def _inline(self, n_rows: int) -> bool:
        # a fast model, idle, and a request small enough not to hold the loop up
        if self.call_ms is None or self._pending or self._running:
            return False
        expected = self.call_ms if n_rows == 1 else max(self.call_ms, self.row_ms * n_rows)
        return expected < self.options.inline_below_ms

    async def submit(
        self,
        batch: Batch,
        *,
        source: str = "rest",
        request_id: str | None = None,
        endpoint: str | None = None,
        variant: str | None = None,
        timeout: float | None = None,
        prediction_id: str | None = None,
        row_ids: Sequence[str] | None = None,
    ) -> Result:
        """Predict ``batch`` as part of the next vectorized call and return its slice.

        Raises ``OverloadedError`` when queued work would wait too long, ``RequestTimeoutError``
        when ``timeout`` seconds pass before the answer.
        """
        if self._inline(batch.n_rows):
            start = time.perf_counter()
            result = self._call(batch)
            if self.on_batch is not None:
                self.on_batch(self, batch.n_rows)
            self._emit(batch, result, start, source, request_id, endpoint, variant,
                       prediction_id, row_ids)
            return result
        self._admit(batch)
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._start_worker(loop)
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append(_Pending(batch, future, request_id, source, endpoint, variant,
                                      time.monotonic(), prediction_id, row_ids))
        self._pending_rows += batch.n_rows
        self._drained.clear()
        assert self._wake is not None
        self._wake.set()
        if timeout is None:
            return await future
        timer = loop.call_later(timeout, _fail, future, RequestTimeoutError(
            f"model {self.model.ref} did not answer within {timeout:g} s; retry, send fewer "
            "rows, or raise the request timeout"))
        try:
            return await future
        finally:
            timer.cancel()

    def _admit(self, batch: Batch) -> None:
        opts = self.options
        if batch.n_rows > opts.max_queue_rows:  # it could never fit: retrying cannot help
            raise InvalidInputError(
                f"{batch.n_rows} rows in one request; model {self.model.ref} queues at most "
                f"{opts.max_queue_rows} rows. Split the rows over several requests")
        if self._pending_rows + batch.n_rows > opts.max_queue_rows:
            raise OverloadedError(
                f"model {self.model.ref} has {self._pending_rows} rows queued; try again shortly",
                retry_after=1.0,
            )
        if not self._pending:
            return
        waited = (time.monotonic() - self._pending[0].enqueued) * 1000.0
        expected = self._pending_rows * self.row_ms + (self.call_ms or 0.0)
        wait = max(waited, expected)
        if wait > opts.max_queue_wait_ms:
            raise OverloadedError(
                f"model {self.model.ref} is overloaded (queued work would wait {wait:.0f} ms); "
                "try again shortly",
                retry_after=max(1.0, round(wait / 1000.0)),
            )

    def _start_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"runner-{self.model.name}")
        self._loop = loop
        self._wake = asyncio.Event()
        self._worker = loop.create_task(self._work())

    async def _work(self) -> None:
        assert self._wake is not None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    if self.options.max_wait_ms > 0 and self._pending_rows < \
                            self.options.max_batch_rows:
                        await asyncio.sleep(self.options.max_wait_ms / 1000.0)
                    group = self._take_group()
                    self._running = sum(p.batch.n_rows for p in group)
                    try:
                        await self._run_group(group)
                    finally:
                        self._running = 0
                self._drained.set()
                if self._closing:
                    self._release()
                    return
        finally:
            self._drained.set()

    def _take_group(self) -> list[_Pending]:
        group: list[_Pending] = []
        rows = 0
        while self._pending:
            nxt = self._pending[0]
            if group and rows + nxt.batch.n_rows > self.options.max_batch_rows:
                break
            self._pending.popleft()
            self._pending_rows -= nxt.batch.n_rows
            if nxt.future.done():  # timed out or cancelled while queued
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
                results = [await self._execute(group[0].batch)]
            else:
                joined = Batch.concat([p.batch for p in group])
                whole = await self._execute(joined)
                results = list(whole.split([p.batch.n_rows for p in group]))
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0].future, exc)
                return
            # one bad request must not fail the others: answer each on its own
            for item in group:
                await self._run_group([item])
            return
        if self.on_batch is not None:
            self.on_batch(self, sum(p.batch.n_rows for p in group))
        for item, result in zip(group, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
            self._emit(item.batch, result, start, item.source, item.request_id, item.endpoint,
                       item.variant, item.prediction_id, item.row_ids)

    async def _execute(self, batch: Batch) -> Result:
        """One model call for a group: on the event loop when the model is fast enough for
        the whole group (a thread hop costs more than such a call), else on the worker thread.

        Under steady load requests keep queueing behind each other, so a fast model can stay
        on this grouped path for a long time; it must then cost no more than the inline one.
        """
        expected = None if self.call_ms is None else max(self.call_ms,
                                                         self.row_ms * batch.n_rows)
        if expected is not None and expected < self.options.inline_below_ms:
            return self._call(batch)
        return await self._in_thread(batch)

    async def _in_thread(self, batch: Batch) -> Result:
        try:
            return await run_sync(self._executor, self._call, batch)
        except RuntimeError:  # close() in another thread shut the executor down just now;
            # _call itself only raises ModelportError subclasses
            return await run_sync(None, self._call, batch)

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float | None = None) -> bool:
        """Stop taking the thread once every queued and running request is answered.

        Safe to call from any thread (hot reload calls it from its polling thread). With
        ``timeout`` and a call from outside the event loop, wait up to that long for the drain;
        returns whether the runner was drained.
        """
        self._closing = True
        loop, wake = self._loop, self._wake
        worker_alive = self._worker is not None and not self._worker.done()
        if not worker_alive or loop is None or loop.is_closed():
            self._release()
            return True
        assert wake is not None
        try:
            loop.call_soon_threadsafe(wake.set)  # let an idle worker notice and exit
        except RuntimeError:  # loop closed in between
            self._release()
            return True
        on_loop = _running_loop() is loop
        if timeout is None or on_loop:
            return self._drained.is_set()
        return self._drained.wait(timeout)

    def _release(self) -> None:
        for item in self._pending:  # only left when the loop died under us
            _fail(item.future, OverloadedError(f"model {self.model.ref} was unloaded"))
        self._pending.clear()
        self._pending_rows = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def __repr__(self) -> str:
        return f"Runner({self.model.ref!r}, accelerated={self.accelerated})"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _fail(future: asyncio.Future[Result], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
