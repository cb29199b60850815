"""``modelport monitor`` end to end: a logging server with live drift gauges, the drift report,
rules applied and evaluated by ``monitor run`` into a real webhook, Prometheus rules checked by
promtool, and the Grafana dashboard's metric names found in live scrapes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelport.monitor.exports import dashboard_metric_names
from modelport.stream.metrics import StreamMetrics
from tests.conftest import free_port
from tests.monitor.receivers import RecordingServer
from tests.serving.conftest import Home, launch


class Cli:
    """``modelport`` commands in this process (the CLI's own ``main``), with stdout, stderr and
    the exit code; the server and ``monitor run`` are real subprocesses."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        from modelport.cli.main import main

        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"{args} exited {code}: {err}")
        return code, out, err


def names_in(text: str) -> set[str]:
    """Metric family names and sample names of a Prometheus exposition."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_monitor_end_to_end(tmp_path: Path, cancer_frame: tuple[pd.DataFrame, pd.Series],
                            cancer_pipeline: Any, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = cancer_frame
    home = Home(tmp_path / "home")
    for name, value in home.env.items():
        if name.startswith("MODELPORT_"):
            monkeypatch.setenv(name, value)
    cli = Cli(capsys)
    version = home.register(cancer_pipeline, "cancer", x.head(5), reference=x)
    server = launch(home, tmp_path, "cancer", "--log", "delta", "--drift-window", "100")
    rows = x.sample(300, replace=True, random_state=5).reset_index(drop=True)
    rows.loc[150:, "mean radius"] *= 1.6
    try:
        for start in range(0, 300, 10):
            records = rows.iloc[start:start + 10].to_dict(orient="records")
            answer = httpx.post(f"{server.url}/predict/cancer", json=records, timeout=30)
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # events reach the gauges off the request path
            served = httpx.get(f"{server.url}/metrics", timeout=10).text
            if sample(served, "modelport_drift_windows_total", model="cancer") == 3:
                break
            time.sleep(0.2)
        psi = sample(served, "modelport_drift_psi", model="cancer", version=str(version),
                     feature="mean radius")
        assert psi is not None and psi > 0.25  # the last window is all shifted rows
    finally:
        assert server.stop() == 0  # SIGTERM flushes the prediction log
    serve_names = names_in(served)

    drift = json.loads(cli("monitor", "drift", "cancer", "--since", "1h", "--json")[1])
    assert drift[0]["rows"] == 300 and "mean radius" in drift[0]["drifted_features"]
    windows = json.loads(cli("monitor", "drift", "cancer", "--since", "1h", "--window", "20m",
                             "--json")[1])
    assert sum(w["rows"] for w in windows) == 300
    sliding = json.loads(cli("monitor", "drift", "cancer", "--since", "1h", "--window", "40m",
                             "--step", "20m", "--json")[1])
    assert [w["rows"] for w in sliding] == [300, 300]  # the two windows overlapping now

    with RecordingServer().running() as receiver:
        rules = {
            "receivers": [{"name": "hook", "type": "webhook", "url": receiver.url}],
            "rules": [
                {"name": "radius-drift", "model": "cancer", "metric": "feature_drift",
                 "feature": "mean radius", "op": ">=", "threshold": 1, "window": "1h",
                 "severity": "critical", "notify": ["hook"]},
                {"name": "slow", "model": "cancer", "metric": "latency_p99_ms", "op": ">",
                 "threshold": 60000, "window": "1h", "for": "5m"},
            ]}
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
        bad = {**rules, "rules": [{**rules["rules"][0], "feature": "mean radiu"}]}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        code, _, err = cli("monitor", "apply", str(tmp_path / "bad.yaml"), check=False)
        assert code == 3 and "no input feature 'mean radiu'" in err and "Traceback" not in err
        assert "revision 1" in cli("monitor", "apply", str(tmp_path / "rules.yaml"))[1]

        port = free_port()
        runner = subprocess.Popen(
            [sys.executable, "-m", "modelport.cli.main", "monitor", "run", "--interval", "0.5",
             "--metrics-port", str(port)], env=home.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        monitored = ""
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert runner.poll() is None, runner.communicate()
                if receiver.posts:
                    monitored = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                    if sample(monitored, "modelport_model_quality", model="cancer"):
                        break
                time.sleep(0.2)
            assert receiver.posts, "no alert reached the webhook"
        finally:
            runner.send_signal(signal.SIGTERM)
            _, err = runner.communicate(timeout=30)
        assert runner.returncode == 0, err
    alert = receiver.posts[0][1]
    assert alert["status"] == "firing"
    assert [a["labels"]["alertname"] for a in alert["alerts"]] == ["radius-drift"]
    assert sample(monitored, "modelport_alert_state", rule="radius-drift") == 2
    assert sample(monitored, "modelport_model_quality", model="cancer",
                  metric="feedback_coverage") == 0.0, err

    status = json.loads(cli("monitor", "status", "--json")[1])
    assert {r["rule"]: r["status"] for r in status["rules"]} == {
        "radius-drift": "firing", "slow": "inactive"}
    sent = json.loads(cli("monitor", "history", "--kind", "notification", "--json")[1])
    assert sent and sent[0]["status"] == "ok" and sent[0]["details"]["receiver"] == "hook"

    prom_rules = tmp_path / "modelport-rules.yaml"
    prom_rules.write_text(cli("monitor", "prometheus-rules")[1])
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (.ci/run does)")
    checked = subprocess.run([promtool, "check", "rules", str(prom_rules)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 rules found" in checked.stdout

    dashboard = json.loads(cli("monitor", "grafana")[1])
    stream_names = names_in(generate_latest(StreamMetrics(CollectorRegistry()).registry)
                            .decode())
    needed = dashboard_metric_names(dashboard)
    assert needed - (serve_names | names_in(monitored) | stream_names) == set()
    assert {"modelport_drift_psi", "modelport_alert_state", "modelport_model_quality",
            "modelport_requests_total"} <= needed
