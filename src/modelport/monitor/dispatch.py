"""From alerts to messages: grouping, dedup, repeat intervals, silences and delivery with retries.

The evaluator hands the dispatcher every alert that is firing or has just resolved, each with
the receivers its rule names. Per receiver, alerts that share the ``group_by`` labels form one
group and one message. A group is sent again only when it changed (an alert joined, left or
resolved) or when it is still firing after ``repeat_interval``; when every alert of a group has
resolved, one resolve message goes out and the group is forgotten. Silenced alerts are left out.

Delivery runs on a small thread pool with retries and exponential backoff, so a receiver that
hangs or answers 500 never blocks the evaluation; every attempt's outcome is handed to
``record`` (the monitor store writes it to the history).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from modelport.monitor.notify import Alert, AlertGroup, NotificationError, Notifier

log = logging.getLogger("modelport.monitor")


@dataclass(frozen=True)
class Silence:
    """Alerts whose labels match every matcher stay quiet until ``until`` (epoch seconds)."""

    matchers: dict[str, str]
    until: float
    comment: str = ""

    def mutes(self, alert: Alert, now: float) -> bool:
        return now < self.until and all(alert.labels.get(k) == v
                                        for k, v in self.matchers.items())


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one group to one receiver."""

    receiver: str
    group: str
    status: str
    ok: bool
    attempts: int
    at: float
    error: str | None = None
    alerts: int = 0


@dataclass
class _Sent:
    signature: frozenset[tuple[str, str]]
    at: float


class Dispatcher:
    def __init__(
        self,
        receivers: Mapping[str, Notifier],
        *,
        group_by: Sequence[str] = ("alertname", "model"),
        repeat_interval: float = 4 * 3600.0,
        retries: int = 3,
        backoff: float = 0.5,
        silences: Sequence[Silence] = (),
        record: Callable[[Delivery], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_workers: int = 4,
    ) -> None:
        self.receivers = dict(receivers)
        self.group_by = tuple(group_by)
        self.repeat_interval = repeat_interval
        self.retries = retries
        self.backoff = backoff
        self.silences = list(silences)
        self.record = record
        self.clock = clock
        self.sleep = sleep
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._sent: dict[tuple[str, str], _Sent] = {}
        self._futures: list[Future[Delivery]] = []
        self._lock = threading.Lock()

    def group_key(self, alert: Alert) -> tuple[str, dict[str, str]]:
        labels = {k: alert.labels[k] for k in self.group_by if k in alert.labels}
        return "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}", labels

    def dispatch(self, alerts: Sequence[tuple[Alert, Sequence[str]]]) -> list[AlertGroup]:
        """Send what changed; return the groups handed to receivers (for the history).

        ``alerts`` are the alerts firing now and those that resolved at this evaluation, each
        with the names of its receivers. Unknown receiver names are refused when rules are
        applied, so here they are only logged.
        """
        now = self.clock()
        out: list[AlertGroup] = []
        for name, group in self._groups(alerts, now):
            notifier = self.receivers.get(name)
            if notifier is None:
                log.error("alert group %s names receiver %r, which is not configured",
                          group.key, name)
                continue
            if self._due(name, group, now):
                out.append(group)
                self._submit(notifier, group)
        return out

    def remember(self, alerts: Sequence[tuple[Alert, Sequence[str]]]) -> None:
        """Take ``alerts`` as already sent (a restarted monitor whose stored alerts fire):
        they are not sent again before the repeat interval, and their resolve is sent."""
        now = self.clock()
        for name, group in self._groups(alerts, now):
            if group.status == "firing":
                self._due(name, group, now)

    def _groups(self, alerts: Sequence[tuple[Alert, Sequence[str]]],
                now: float) -> list[tuple[str, AlertGroup]]:
        groups: dict[tuple[str, str], list[Alert]] = {}
        labels_of: dict[str, dict[str, str]] = {}
        for alert, names in alerts:
            if any(s.mutes(alert, now) for s in self.silences):
                continue
            key, labels = self.group_key(alert)
            labels_of[key] = labels
            for name in names:
                groups.setdefault((name, key), []).append(alert)
        return [(name, AlertGroup(key, labels_of[key], tuple(members)))
                for (name, key), members in groups.items()]

    def _due(self, receiver: str, group: AlertGroup, now: float) -> bool:
        signature = frozenset((a.fingerprint, a.status) for a in group.alerts)
        slot = (receiver, group.key)
        sent = self._sent.get(slot)
        if group.status == "resolved":
            if sent is None:  # nobody heard of it firing (silenced, or resolved before sending)
                return False
            del self._sent[slot]
            return True
        if sent is not None and sent.signature == signature \
                and now - sent.at < self.repeat_interval:
            return False
        self._sent[slot] = _Sent(signature, now)
        return True

    def _submit(self, notifier: Notifier, group: AlertGroup) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers,
                                                thread_name_prefix="modelport-notify")
            self._futures = [f for f in self._futures if not f.done()]
            self._futures.append(self._pool.submit(self._deliver, notifier, group))

    def _deliver(self, notifier: Notifier, group: AlertGroup) -> Delivery:
        error: str | None = None
        attempt = 0
        for attempt in range(1, self.retries + 1):
            try:
                notifier.send(group)
                error = None
                break
            except NotificationError as exc:
                error = str(exc)
            except Exception as exc:  # a notifier bug must not kill the delivery thread
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self.sleep(self.backoff * 2 ** (attempt - 1))
        delivery = Delivery(notifier.name, group.key, group.status, error is None, attempt,
                            self.clock(), error, len(group.alerts))
        if error is not None:
            log.warning("alert %s to %s failed after %d attempt(s): %s", group.key,
                        notifier.name, attempt, error)
        if self.record is not None:
            try:
                self.record(delivery)
            except Exception:
                log.exception("recording the delivery of %s failed", group.key)
        return delivery

    def wait(self, timeout: float = 30.0) -> list[Delivery]:
        """Wait for the deliveries under way (tests, shutdown) and return their outcomes."""
        with self._lock:
            futures = list(self._futures)
        return [f.result(timeout=timeout) for f in futures]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


__all__ = ["Delivery", "Dispatcher", "Silence"]
