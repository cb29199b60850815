"""The monitor's evaluation loop over a real registry database and a real webhook receiver."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import ConfigurationError, NotFoundError
from modelport.monitor.evaluate import Monitor
from modelport.monitor.rules import Rule
from modelport.monitor.store import MonitorStore
from modelport.registry import Registry
from tests.monitor.receivers import RecordingServer


class ScriptedSource:
    """Values per rule name, changed by the test between evaluations (the log-backed source
    has its own tests; this one isolates the alert life cycle)."""

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}

    def value(self, rule: Rule, now: float) -> float | None:
        return self.values.get(rule.name)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def document(url: str, runs: Path) -> dict[str, Any]:
    script = f"import sys; open({str(runs)!r}, 'a').write(sys.stdin.read() + '\\n')"
    return {
        "receivers": [{"name": "hook", "type": "webhook", "url": url}],
        "triggers": [{"name": "retrain", "command": [sys.executable, "-c", script],
                      "min_interval": "1h"}],
        "rules": [
            {"name": "churn-quality", "model": "churn", "metric": "accuracy", "op": "<",
             "threshold": 0.8, "for": "5m", "severity": "critical", "notify": ["hook"],
             "retrain": "retrain"},
            {"name": "churn-p99", "model": "churn", "metric": "latency_p99_ms", "op": ">",
             "threshold": 50, "notify": ["hook"]},
        ],
    }


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(f"sqlite:///{tmp_path}/registry.db", tmp_path / "artifacts")


def test_an_alert_fires_after_its_for_duration_notifies_retrains_and_resolves(
        registry: Registry, tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    with RecordingServer().running() as receiver:
        store = MonitorStore(registry, actor="tester")
        store.apply(document(receiver.url, runs))
        source, clock = ScriptedSource(), Clock()
        monitor = Monitor(store, source, clock=clock)
        source.values = {"churn-quality": 0.7, "churn-p99": 10.0}
        first = {e.rule: e.status for e in monitor.evaluate()}
        assert first == {"churn-quality": "pending", "churn-p99": "inactive"}
        clock.now += 300
        assert {e.rule: e.status for e in monitor.evaluate()}["churn-quality"] == "firing"
        clock.now += 60
        monitor.evaluate()  # still firing: no second message
        # a restarted monitor continues from the stored state and does not notify again
        monitor.dispatcher.wait()  # type: ignore[union-attr]
        monitor.close()
        monitor = Monitor(store, source, clock=clock)
        clock.now += 60
        source.values["churn-quality"] = 0.9
        assert {e.rule: e.status for e in monitor.evaluate()}["churn-quality"] == "resolved"
        monitor.dispatcher.wait()  # type: ignore[union-attr]
        monitor.close()
    statuses = [body["status"] for _, body in receiver.posts]
    assert statuses == ["firing", "resolved"]
    assert receiver.posts[0][1]["alerts"][0]["labels"]["alertname"] == "churn-quality"
    assert len(runs.read_text().splitlines()) == 1 and '"model": "churn"' in runs.read_text()
    kinds = [(h["kind"], h["status"]) for h in store.history(limit=100)]
    assert ("notification", "ok") in kinds and ("trigger", "ok") in kinds
    assert kinds.count(("evaluation", "firing")) == 2
    assert any(e.action == "monitor.apply" and e.actor == "tester" for e in registry.audit())


def test_no_data_keeps_the_state_and_errors_are_recorded(registry: Registry,
                                                         tmp_path: Path) -> None:
    class Failing(ScriptedSource):
        def value(self, rule: Rule, now: float) -> float | None:
            if rule.name == "churn-p99":
                raise NotFoundError("no predictions logged for churn")
            return None

    store = MonitorStore(registry)
    store.apply(document("http://127.0.0.1:9/none", tmp_path / "runs"))
    monitor = Monitor(store, Failing(), clock=Clock())
    outcome = {e.rule: e for e in monitor.evaluate()}
    monitor.close()
    assert outcome["churn-quality"].status == "inactive" and outcome["churn-quality"].value is None
    assert outcome["churn-p99"].error == "no predictions logged for churn"
    assert store.history(kind="evaluation", rule="churn-p99")[0]["status"] == "error"


def test_a_broken_document_is_refused_and_the_running_one_kept(registry: Registry,
                                                                tmp_path: Path) -> None:
    store = MonitorStore(registry)
    with pytest.raises(NotFoundError, match="monitor apply"):
        store.config()
    good = document("http://127.0.0.1:9/x", tmp_path / "runs")
    assert store.apply(good) == 1
    bad = {**good, "rules": [{**good["rules"][0], "notify": ["nobody"]}]}
    with pytest.raises(ConfigurationError, match="not under `receivers:`"):
        store.apply(bad)
    bad = {**good, "rules": [{**good["rules"][0], "retrain": "nothing"}]}
    with pytest.raises(ConfigurationError, match="not under `triggers:`"):
        store.apply(bad)
    with pytest.raises(ConfigurationError, match="unknown top-level"):
        store.apply({**good, "rulez": []})
    revision, config = store.config()
    assert revision == 1 and [r.name for r in config.rules] == ["churn-quality", "churn-p99"]
