"""Prediction events and the bus that hands them to observers off the hot path.

The core publishes one ``PredictionEvent`` per model call (a request, a micro-batch slice, a batch
chunk or a stream batch). Observers (prediction log, metrics, drift, online learners) subscribe to
an ``EventBus``; ``publish`` never blocks and never does I/O: a background thread delivers events.
When observers fall behind and the bounded buffer is full, the event is counted in ``dropped``
rather than stalling predictions; that counter is exported as a metric so a drop is never silent.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
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
    #: the request's prediction id ``P``: rows are ``P`` (one row) or ``P-0`` … ``P-<n-1>``
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)
    #: per-row prediction ids when the adapter has its own (batch ``<run>-<row>``, stream
    #: ``<topic>-<partition>-<offset>``); ``None``: derived from ``id``
    row_ids: Sequence[str] | None = None

    @property
    def n_rows(self) -> int:
        return self.inputs.n_rows


Observer = Callable[[PredictionEvent], None]


class EventBus:
    """Fan-out of prediction events to observers on one background thread.

    ``publish`` appends to a bounded buffer and wakes the thread only when it sleeps; the thread
    delivers whatever gathered every ``interval`` seconds at most. Waking a thread per event
    costs a lock hand-off and a GIL switch (tens of microseconds), as much as a fast model call.
    """

    def __init__(self, *, max_pending: int = 10_000, interval: float = 0.005) -> None:
        self._observers: list[Observer] = []
        self._inline: list[Observer] = []
        self._pending: deque[PredictionEvent] = deque()
        self._max_pending = max_pending
        self._interval = interval
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._delivered = 0
        self.published = 0
        self.dropped = 0
        self.failed = 0

    def subscribe(self, observer: Observer, *, inline: bool = False) -> None:
        """Deliver events to ``observer``: on the background thread, or with ``inline=True``
        right inside ``publish`` — only for observers that take microseconds and never block
        (a counter); a thread wake-up per batch costs more than such an observer on a busy box.
        """
        with self._lock:
            if inline:
                self._inline.append(observer)
                return
            self._observers.append(observer)
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="modelport-events",
                                                daemon=True)
                self._thread.start()

    def unsubscribe(self, observer: Observer) -> None:
        with self._lock:
            if observer in self._inline:
                self._inline.remove(observer)
            else:
                self._observers.remove(observer)

    @property
    def has_observers(self) -> bool:
        return bool(self._observers or self._inline)

    def publish(self, event: PredictionEvent) -> None:
        for observer in self._inline:
            try:
                observer(event)
            except Exception:
                self.failed += 1
                log.exception("prediction observer %r failed", observer)
        if not self._observers:
            return
        self.published += 1
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._pending.append(event)  # deque.append is atomic: no lock on the hot path
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every published event has been delivered (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._delivered + self.dropped < self.published and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.002)
        return self._delivered + self.dropped >= self.published

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self.flush(timeout)
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            self._deliver()
            time.sleep(self._interval)  # let the next events gather
        self._deliver()

    def _deliver(self) -> None:
        pending = self._pending
        while pending:
            event = pending.popleft()
            for observer in list(self._observers):
                try:
                    observer(event)
                except Exception:
                    self.failed += 1
                    log.exception("prediction observer %r failed", observer)
            self._delivered += 1
