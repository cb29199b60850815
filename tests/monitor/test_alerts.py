"""Alert rules, grouping and delivery to real receivers (HTTP and SMTP servers on loopback)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from modelport.errors import ConfigurationError
from modelport.monitor.dispatch import Dispatcher, Silence
from modelport.monitor.notify import (
    Alert,
    AlertmanagerNotifier,
    EmailNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    notifier_from_dict,
)
from modelport.monitor.retrain import RetrainTrigger
from modelport.monitor.rules import AlertState, Rule, load_rules, parse_duration
from tests.conftest import free_port
from tests.monitor.receivers import RecordingServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer().running() as server:
        yield server


def alert(status: str = "firing", *, feature: str = "f1", value: float = 0.4) -> Alert:
    return Alert(rule="churn-drift", status=status,  # type: ignore[arg-type]
                 labels={"alertname": "churn-drift", "model": "churn", "feature": feature,
                         "severity": "critical", "metric": "feature_drift"},
                 summary=f"churn: {feature} drifted", value=value, threshold=0.1,
                 starts_at=datetime(2026, 12, 4, 12, 0, tzinfo=UTC))


# ---------------------------------------------------------------- rules
def test_rule_life_cycle_follows_prometheus() -> None:
    rule = Rule.from_dict({"name": "q", "model": "churn", "metric": "accuracy", "op": "<",
                           "threshold": 0.8, "for": "2m"})
    state = AlertState()
    assert not rule.holds(0.9) and rule.holds(0.7)
    steps = [(True, 0), (None, 30), (True, 60), (True, 120), (True, 180), (False, 240),
             (False, 300), (True, 360), (False, 370)]
    seen = [(state.step(rule, h, t).status) for h, t in steps]
    assert seen == ["pending", "pending", "pending", "firing", "firing", "resolved",
                    "resolved", "pending", "inactive"]


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "model": "m", "metric": "nonsense", "threshold": 1}, "unknown metric"),
    ({"name": "x", "model": "m", "metric": "psi", "threshold": 1}, "needs `feature`"),
    ({"name": "x", "model": "m", "metric": "accuracy", "threshold": "a"}, "must be a number"),
    ({"name": "x", "model": "m", "metric": "accuracy", "threshold": 1, "op": "=="}, "op must"),
    ({"name": "x", "model": "m", "metric": "accuracy", "threshold": 1, "for": "ten"},
     "not a duration"),
    ({"name": "x", "model": "m", "metric": "accuracy", "threshold": 1, "severity": "meh"},
     "severity"),
    ({"name": "x", "model": "m", "metric": "accuracy", "threshold": 1, "oops": 1},
     "unknown field"),
    ({"model": "m", "metric": "accuracy", "threshold": 1}, "needs `name`"),
])
def test_bad_rules_are_refused_with_a_reason(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Rule.from_dict(data)


def test_rule_names_are_unique_and_durations_parse() -> None:
    rule = {"name": "a", "model": "m", "metric": "error_rate", "threshold": 0.1}
    with pytest.raises(ConfigurationError, match="twice"):
        load_rules({"rules": [rule, rule]})
    with pytest.raises(ConfigurationError, match="`rules:`"):
        load_rules({"rule": []})
    assert parse_duration("90s") == 90 and parse_duration("1d") == 86400


# ---------------------------------------------------------------- receivers
def test_webhook_slack_and_alertmanager_payloads_reach_a_real_server(
        receiver: RecordingServer) -> None:
    clock = Clock()
    receivers = {
        "hook": WebhookNotifier("hook", receiver.url + "/hook"),
        "slack": SlackNotifier("slack", receiver.url + "/slack"),
        "am": AlertmanagerNotifier("am", receiver.url + "/am"),
    }
    dispatcher = Dispatcher(receivers, clock=clock, sleep=lambda s: None)
    try:
        names = ("hook", "slack", "am")
        sent = dispatcher.dispatch([(alert(feature="f1"), names), (alert(feature="f2"), names)])
        assert len(sent) == 3  # one group (same alertname and model), one message per receiver
        assert all(d.ok for d in dispatcher.wait())
    finally:
        dispatcher.close()
    bodies = dict(receiver.posts)
    assert [a["labels"]["feature"] for a in bodies["/hook"]["alerts"]] == ["f1", "f2"]
    assert bodies["/hook"]["status"] == "firing"
    slack = bodies["/slack"]
    assert "churn-drift" in slack["text"] and slack["blocks"][0]["type"] == "header"
    am = bodies["/am"]
    assert am["version"] == "4" and am["status"] == "firing"
    assert am["commonLabels"] == {"alertname": "churn-drift", "model": "churn",
                                  "severity": "critical", "metric": "feature_drift"}
    assert {a["endsAt"] for a in am["alerts"]} == {"0001-01-01T00:00:00Z"}


def test_pagerduty_triggers_then_resolves_with_one_dedup_key(receiver: RecordingServer) -> None:
    clock = Clock()
    pager = PagerDutyNotifier("pd", "R0UTING", url=receiver.url + "/v2/enqueue")
    dispatcher = Dispatcher({"pd": pager}, clock=clock, sleep=lambda s: None)
    try:
        dispatcher.dispatch([(alert(), ["pd"])])
        dispatcher.wait()
        clock.now += 60
        assert dispatcher.dispatch([(alert(), ["pd"])]) == []  # unchanged: not sent again
        dispatcher.dispatch([(alert("resolved"), ["pd"])])
        dispatcher.wait()
    finally:
        dispatcher.close()
    events = [body for _, body in receiver.posts]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"]
    assert events[0]["routing_key"] == "R0UTING"
    assert events[0]["payload"]["severity"] == "critical"
    assert events[0]["payload"]["summary"] == "churn: f1 drifted"


def test_repeat_interval_and_silences(receiver: RecordingServer) -> None:
    clock = Clock()
    hook = WebhookNotifier("hook", receiver.url)
    dispatcher = Dispatcher({"hook": hook}, clock=clock, repeat_interval=3600,
                            sleep=lambda s: None)
    try:
        dispatcher.dispatch([(alert(), ["hook"])])
        clock.now += 1800
        assert dispatcher.dispatch([(alert(), ["hook"])]) == []
        clock.now += 1800
        assert len(dispatcher.dispatch([(alert(), ["hook"])])) == 1  # repeated after an hour
        dispatcher.silences.append(Silence({"model": "churn"}, until=clock.now + 7200))
        clock.now += 3600
        assert dispatcher.dispatch([(alert(), ["hook"])]) == []  # silenced
        dispatcher.wait()
    finally:
        dispatcher.close()
    assert len(receiver.posts) == 2


def test_a_failing_receiver_is_retried_with_backoff_and_recorded(
        receiver: RecordingServer) -> None:
    receiver.status = 500
    waits: list[float] = []
    recorded = []
    dispatcher = Dispatcher({"hook": WebhookNotifier("hook", receiver.url)}, retries=3,
                            backoff=0.5, sleep=waits.append, record=recorded.append)
    try:
        dispatcher.dispatch([(alert(), ["hook"])])
        (delivery,) = dispatcher.wait()
    finally:
        dispatcher.close()
    assert not delivery.ok and delivery.attempts == 3 and "HTTP 500" in (delivery.error or "")
    assert waits == [0.5, 1.0] and receiver.hits == 3 and recorded == [delivery]


def test_a_hanging_receiver_times_out_without_blocking_dispatch(
        receiver: RecordingServer) -> None:
    receiver.delay = 2.0
    dispatcher = Dispatcher({"hook": WebhookNotifier("hook", receiver.url, timeout=0.3)},
                            retries=1, sleep=lambda s: None)
    try:
        sent = dispatcher.dispatch([(alert(), ["hook"])])  # returns at once
        assert len(sent) == 1
        (delivery,) = dispatcher.wait()
    finally:
        dispatcher.close()
    assert not delivery.ok and "could not be reached" in (delivery.error or "")


def test_email_reaches_a_real_smtp_server() -> None:
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mail = EmailNotifier("mail", host="127.0.0.1", port=port, sender="mp@example.com",
                             to=["oncall@example.com"])
        dispatcher = Dispatcher({"mail": mail}, sleep=lambda s: None)
        dispatcher.dispatch([(alert(), ["mail"])])
        (delivery,) = dispatcher.wait()
        dispatcher.close()
    finally:
        controller.stop()
    assert delivery.ok
    message = message_from_bytes(received[0])
    assert message["To"] == "oncall@example.com"
    assert "FIRING" in message["Subject"] and "churn-drift" in message["Subject"]
    assert "churn: f1 drifted" in message.get_payload()


def test_receivers_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="unknown type"):
        notifier_from_dict({"name": "x", "type": "carrier-pigeon"})
    with pytest.raises(ConfigurationError, match="needs `routing_key`"):
        notifier_from_dict({"name": "x", "type": "pagerduty"})
    assert isinstance(notifier_from_dict({"name": "s", "type": "slack", "url": "http://x"}),
                      SlackNotifier)


# ---------------------------------------------------------------- retraining
def test_retrain_command_runs_once_per_window_with_context(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    script = ("import json, os, sys; ctx = json.load(sys.stdin); "
              f"open({str(out)!r}, 'a').write(ctx['model'] + ' ' + "
              "os.environ['MODELPORT_ALERT_RULE'] + '\\n')")
    trigger = RetrainTrigger.from_dict({"name": "retrain", "command": [sys.executable, "-c",
                                                                        script],
                                        "min_interval": "1h"})
    clock = Clock()
    context = {"rule": "churn-drift", "model": "churn", "value": 0.4, "status": "firing"}
    first = trigger.fire(context, clock=clock)
    clock.now += 600
    second = trigger.fire(context, clock=clock)
    clock.now += 3600
    third = trigger.fire(context, clock=clock)
    assert (first.ran, first.ok, second.ran, third.ran) == (True, True, False, True)
    assert "next run allowed" in second.detail
    assert out.read_text().splitlines() == ["churn churn-drift", "churn churn-drift"]


def test_retrain_url_and_failures_are_recorded(receiver: RecordingServer) -> None:
    ok = RetrainTrigger.from_dict({"name": "dag", "url": receiver.url + "/dag"}).fire(
        {"model": "churn"})
    assert ok.ok and ok.code == 200 and receiver.posts == [("/dag", {"model": "churn"})]
    missing = RetrainTrigger.from_dict({"name": "x", "command": ["/nonexistent/train"]})
    outcome = missing.fire({})
    assert outcome.ran and not outcome.ok and "not found" in outcome.detail
    with pytest.raises(ConfigurationError, match="exactly one"):
        RetrainTrigger.from_dict({"name": "x"})
    with pytest.raises(ConfigurationError, match="list of strings"):
        RetrainTrigger.from_dict({"name": "x", "command": "python train.py"})
