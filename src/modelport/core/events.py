"""Prediction events and the bus that hands them to observers off the hot path.

The core publishes one ``PredictionEvent`` per model call (a request, a micro-batch slice, a batch
chunk or a stream batch). Observers (prediction log, metrics, drift, online learners) subscribe to
an ``EventBus``; ``publish`` never blocks and never does I/O: a background thread delivers events.
When observers fall behind and the bounded queue is full, the event is counted in ``dropped``
rather than stalling predictions; that counter is exported as a metric so a drop is never silent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from modelport.core.batch import Batch, Result

log = logging.getLogger("modelport.events")


@dataclass(frozen=True)
class PredictionEvent:
    model: str
    version: int | None
    inputs: Batch
    outputs: Result
    latency_ms: float
    source: str = "python"
    endpoint: str | None = None
    variant: str | None = None
    request_id: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)

    @property
    def n_rows(self) -> int:
        return self.inputs.n_rows


Observer = Callable[[PredictionEvent], None]
_STOP = object()


class EventBus:
    """Fan-out of prediction events to observers on one background thread."""

    def __init__(self, *, max_pending: int = 10_000) -> None:
        self._observers: list[Observer] = []
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.published = 0
        self.dropped = 0
        self.failed = 0

    def subscribe(self, observer: Observer) -> None:
        with self._lock:
            self._observers.append(observer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelport-events",
                                                daemon=True)
                self._thread.start()

    def unsubscribe(self, observer: Observer) -> None:
        with self._lock:
            self._observers.remove(observer)

    @property
    def has_observers(self) -> bool:
        return bool(self._observers)

    def publish(self, event: PredictionEvent) -> None:
        if not self._observers:
            return
        self.published += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every published event has been delivered (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self.flush(timeout)
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                for observer in list(self._observers):
                    try:
                        observer(item)  # type: ignore[arg-type]
                    except Exception:
                        self.failed += 1
                        log.exception("prediction observer %r failed", observer)
            finally:
                self._queue.task_done()
