"""``PredictionLog``: the event-bus observer that writes predictions to the log's stores.

Subscribe it to the core's ``EventBus``; it never blocks a prediction::

    log = PredictionLog([open_store("delta")], LogConfig())
    service.events.subscribe(log)          # every PredictionEvent from now on
    ...
    log.close()                            # flush what is waiting (SIGTERM does this)

``__call__`` only appends the event to a bounded buffer (``max_pending_rows``); a flush thread
turns the waiting events into Arrow tables and appends them to every store every
``flush_seconds`` or as soon as ``flush_rows`` rows wait. When the buffer is full, or a store
keeps refusing (a full disk, a log folder that is not writable), rows are dropped, counted in
``modelport_log_dropped_rows_total{model,reason}`` and reported in a warning line at most once
every 10 s: never silently. A failed flush is kept and retried at the next one while memory
allows, so a short outage loses nothing. After ``kill -9`` only the rows waiting since the last
flush are lost; each flush is one atomic commit, so the table stays readable.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter

from modelport.core.events import PredictionEvent
from modelport.errors import ModelportError
from modelport.log.config import LogConfig, ModelLogPolicy
from modelport.log.rows import group_events, to_table
from modelport.log.store import LogStore

log = logging.getLogger("modelport.log")

_WARN_EVERY_S = 10.0


@dataclass
class _Failed:
    """Rows a store refused, kept for the next flush."""

    store: LogStore
    model: str
    table: pa.Table


@dataclass
class LogCounters:
    """What the log did (also exported as Prometheus counters when a registry is given)."""

    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    flushes: int = 0
    failed_flushes: int = 0


class PredictionLog:
    """Observer of ``PredictionEvent`` that appends them to ``stores`` off the hot path."""

    def __init__(self, stores: Sequence[LogStore], config: LogConfig | None = None, *,
                 metrics_registry: CollectorRegistry | None = None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stores = list(stores)
        self.config = config or LogConfig()
        self.counters = LogCounters()
        self._rng = rng or random.Random()
        self._clock = clock
        self._pending: deque[PredictionEvent] = deque()
        self._pending_rows = 0
        self._retry: list[_Failed] = []
        self._retry_rows = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_warning = -_WARN_EVERY_S
        self._policies: dict[str, ModelLogPolicy] = {}
        self._max_pending_rows = self.config.max_pending_rows
        self._flush_rows = self.config.flush_rows
        self._written_metric: Counter | None = None
        self._dropped_metric: Counter | None = None
        if metrics_registry is not None:
            self._written_metric = Counter(
                "modelport_log_rows_written", "Predictions written to the prediction log.",
                ["model"], registry=metrics_registry)
            self._dropped_metric = Counter(
                "modelport_log_dropped_rows",
                "Predictions the prediction log dropped (buffer full, store refused).",
                ["model", "reason"], registry=metrics_registry)

    # ------------------------------------------------------------------ observer
    def start(self) -> PredictionLog:
        """Start the flush thread (``__call__`` starts it too)."""
        for store in self.stores:  # heavy imports at start, not in the first flush
            prepare = getattr(store, "prepare", None)
            if prepare is not None:
                prepare()
        with self._lock:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="modelport-log",
                                                daemon=True)
                self._thread.start()
        return self

    def __call__(self, event: PredictionEvent) -> None:
        # called once per request: attribute look-ups only, the conversion waits for the flush
        policy = self._policies.get(event.model)
        if policy is None:
            policy = self._policies[event.model] = self.config.policy(event.model)
        if not policy.enabled or policy.sample_rate == 0.0:
            return
        if self._thread is None:
            self.start()
        rows = event.inputs.n_rows
        with self._lock:
            full = self._pending_rows + self._retry_rows + rows > self._max_pending_rows
            if not full:
                self._pending.append(event)
                self._pending_rows += rows
        if full:
            self._drop(event.model, "buffer_full", rows)
        elif self._pending_rows >= self._flush_rows and not self._wake.is_set():
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        return self._pending_rows + self._retry_rows

    # ------------------------------------------------------------------ flushing
    def _run(self) -> None:
        next_flush = self._clock() + self.config.flush_seconds
        while not self._stopping:
            self._wake.wait(max(0.0, next_flush - self._clock()))
            self._wake.clear()
            if self._stopping:
                break
            if self._pending_rows >= self.config.flush_rows or self._clock() >= next_flush:
                self.flush()
                next_flush = self._clock() + self.config.flush_seconds

    def flush(self) -> int:
        """Write every waiting event now; returns the rows written. Safe from any thread."""
        with self._flush_lock:
            with self._lock:
                events = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
            retry, self._retry, self._retry_rows = self._retry, [], 0
            by_model: dict[str, list[pa.Table]] = {}
            for group in group_events(events):
                model = group[0].model
                try:
                    table = to_table(group, self._policies.get(model)
                                     or self.config.policy(model), salt=self.config.hash_salt,
                                     rng=self._rng)
                except Exception as exc:  # a model output the log cannot store: say so
                    self._drop(model, "unconvertible", sum(e.n_rows for e in group), exc)
                    continue
                by_model.setdefault(model, []).append(table)
            written = 0
            for item in retry:
                written += self._write(item.store, item.model, item.table)
            for model, tables in by_model.items():
                table = _concat(tables)
                for store in self.stores:
                    written += self._write(store, model, table)
            self.counters.flushes += 1
            return written

    def _write(self, store: LogStore, model: str, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        try:
            store.append_predictions(model, table)
        except Exception as exc:
            self.counters.failed_flushes += 1
            message = str(exc) if isinstance(exc, ModelportError) else repr(exc)
            if self._retry_rows + self._pending_rows + table.num_rows \
                    <= self.config.max_pending_rows and not self._stopping:
                self._retry.append(_Failed(store, model, table))
                self._retry_rows += table.num_rows
                self._warn(f"prediction log flush to {store.name} failed, {table.num_rows} rows "
                           f"kept for the next flush: {message}")
            else:
                self._drop(model, "store_failed", table.num_rows, message)
            return 0
        self.counters.written += table.num_rows
        if self._written_metric is not None:
            self._written_metric.labels(model).inc(table.num_rows)
        return int(table.num_rows)

    def _drop(self, model: str, reason: str, rows: int, why: object = None) -> None:
        self.counters.dropped[reason] = self.counters.dropped.get(reason, 0) + rows
        if self._dropped_metric is not None:
            self._dropped_metric.labels(model, reason).inc(rows)
        detail = f": {why}" if why is not None else ""
        self._warn(f"prediction log dropped {rows} rows of model {model} ({reason}); "
                   f"{sum(self.counters.dropped.values())} dropped so far{detail}")

    def _warn(self, message: str) -> None:
        now = self._clock()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(message)

    @property
    def dropped(self) -> int:
        return int(sum(self.counters.dropped.values()))

    def close(self) -> None:
        """Stop the flush thread and write what is waiting (the last chance on shutdown)."""
        thread, self._thread = self._thread, None
        self._stopping = True
        self._wake.set()
        if thread is not None:
            thread.join(60)
        self._stopping = False
        self.flush()
        self._stopping = True
        if self._retry:
            rows = self._retry_rows
            for item in self._retry:
                self._drop(item.model, "store_failed", item.table.num_rows)
            self._retry, self._retry_rows = [], 0
            log.error("prediction log: %d rows could not be written at shutdown", rows)
        for store in self.stores:
            try:
                store.close()
            except Exception:
                log.exception("closing prediction log store %s failed", store.name)


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


__all__ = ["LogCounters", "PredictionLog"]
