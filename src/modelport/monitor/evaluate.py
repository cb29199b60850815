"""``Monitor``: one evaluation of every rule — compute, decide, record, notify, trigger.

``Monitor.evaluate()`` asks a ``MetricSource`` for each rule's value over the rule's window,
advances the rule's ``AlertState`` (kept in the ``MonitorStore`` between runs and processes),
records the evaluation, hands firing and just-resolved alerts to the ``Dispatcher`` (which sends
off this thread) and fires a rule's retraining trigger when its alert starts firing.
``modelport monitor run`` calls it every ``--interval`` seconds; ``--once`` calls it once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from modelport.errors import ModelportError
from modelport.monitor.config import MonitorConfig
from modelport.monitor.dispatch import Delivery, Dispatcher
from modelport.monitor.notify import Alert
from modelport.monitor.rules import AlertState, Rule
from modelport.monitor.store import MonitorStore

log = logging.getLogger("modelport.monitor")


class MetricSource(Protocol):
    """Computes a rule's metric over its window ending at ``now`` (epoch seconds).

    Returns ``None`` when there is too little data for a value (the alert then stays as it is).
    Raises ``ModelportError`` when the value cannot be computed at all (recorded as an error).
    """

    def value(self, rule: Rule, now: float) -> float | None: ...


@dataclass(frozen=True)
class Evaluation:
    rule: str
    value: float | None
    status: str
    changed: bool
    error: str | None = None


class Monitor:
    """Evaluates the rules stored in ``store`` against ``source``. Constructor only stores."""

    def __init__(self, store: MonitorStore, source: MetricSource, *,
                 clock: Callable[[], float] = time.time,
                 dispatcher_factory: Callable[[MonitorConfig], Dispatcher] | None = None,
                 on_evaluation: Callable[[Rule, Evaluation], None] | None = None,
                 on_delivery: Callable[[Delivery], None] | None = None) -> None:
        self.store = store
        self.source = source
        self.clock = clock
        self._dispatcher_factory = dispatcher_factory
        self._on_evaluation = on_evaluation
        self._on_delivery = on_delivery
        self._revision: int | None = None
        self._config: MonitorConfig | None = None
        self.dispatcher: Dispatcher | None = None

    @property
    def config(self) -> MonitorConfig | None:
        """The configuration of the last evaluation (None before the first)."""
        return self._config

    def _load(self) -> MonitorConfig:
        revision, config = self.store.config()
        if revision != self._revision or self._config is None:
            if self.dispatcher is not None:
                self.dispatcher.close()
            self._revision, self._config = revision, config
            self.dispatcher = (self._dispatcher_factory(config) if self._dispatcher_factory
                               else Dispatcher(config.receivers, group_by=config.group_by,
                                               repeat_interval=config.repeat_interval,
                                               silences=config.silences, clock=self.clock,
                                               record=self._record_delivery))
            for name, trigger in config.triggers.items():
                trigger.last_run = self.store.last_trigger_run(name)
            states = self.store.states()
            self.dispatcher.remember([
                (self._alert(rule, states[rule.name][0], states[rule.name][1],
                             states[rule.name][2]), rule.notify)
                for rule in config.rules
                if rule.name in states and states[rule.name][0].status == "firing"])
            log.info("monitor configuration revision %s: %d rule(s)", revision,
                     len(config.rules))
        return config

    def evaluate(self) -> list[Evaluation]:
        config = self._load()
        assert self.dispatcher is not None
        now = self.clock()
        states = self.store.states()
        outcomes: list[Evaluation] = []
        alerts: list[tuple[Alert, tuple[str, ...]]] = []
        for rule in config.rules:
            state = states.get(rule.name, (AlertState(), None, 0.0))[0]
            error = None
            try:
                value = self.source.value(rule, now)
            except ModelportError as exc:
                value, error = None, str(exc)
            if value is not None and math.isnan(value):
                value = None
            transition = state.step(rule, None if value is None else rule.holds(value), now)
            self.store.save_state(rule.name, state, value, now)
            evaluation = Evaluation(rule.name, value, transition.status, transition.changed,
                                    error)
            outcomes.append(evaluation)
            self.store.record("evaluation", "error" if error else transition.status, at=now,
                              rule=rule.name, value=value,
                              details={"error": error} if error else {})
            if self._on_evaluation is not None:
                self._on_evaluation(rule, evaluation)
            if state.status == "firing" or (transition.changed and state.status == "resolved"):
                alerts.append((self._alert(rule, state, value, now), rule.notify))
            if transition.changed and state.status == "firing" and rule.retrain:
                self._retrain(config, rule, value, now)
        if alerts:
            for group in self.dispatcher.dispatch(alerts):
                log.info("alert %s %s: %d alert(s)", group.key, group.status, len(group.alerts))
        return outcomes

    def _alert(self, rule: Rule, state: AlertState, value: float | None,
               now: float) -> Alert:
        started = state.fired_at if state.fired_at is not None else now
        resolved = state.status == "resolved"
        return Alert(
            rule=rule.name, status="resolved" if resolved else "firing",
            labels=rule.alert_labels, summary=rule.describe(value), value=value,
            threshold=rule.threshold, starts_at=datetime.fromtimestamp(started, UTC),
            ends_at=datetime.fromtimestamp(now, UTC) if resolved else None)

    def _retrain(self, config: MonitorConfig, rule: Rule, value: float | None,
                 now: float) -> None:
        assert rule.retrain is not None
        trigger = config.triggers[rule.retrain]
        context: dict[str, Any] = {"rule": rule.name, "model": rule.model, "metric": rule.metric,
                                   "feature": rule.feature, "value": value,
                                   "threshold": rule.threshold, "status": "firing",
                                   "at": datetime.fromtimestamp(now, UTC).isoformat()}
        outcome = trigger.fire(context, clock=lambda: now)
        status = "skipped" if not outcome.ran else "ok" if outcome.ok else "failed"
        self.store.record("trigger", status, at=now, rule=rule.name, value=value,
                          details={"trigger": trigger.name, "detail": outcome.detail,
                                   "code": outcome.code})
        log.info("retraining trigger %s for %s: %s", trigger.name, rule.name, status)

    def _record_delivery(self, delivery: Delivery) -> None:
        self.store.record("notification", "ok" if delivery.ok else "failed", at=delivery.at,
                          details={"receiver": delivery.receiver, "group": delivery.group,
                                   "alert_status": delivery.status,
                                   "attempts": delivery.attempts, "error": delivery.error,
                                   "alerts": delivery.alerts})
        if self._on_delivery is not None:
            self._on_delivery(delivery)

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close()


__all__ = ["Evaluation", "MetricSource", "Monitor"]
