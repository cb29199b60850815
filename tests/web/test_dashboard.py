"""The dashboard in real headless Chromium, against a real server with logging and live drift."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelport.monitor.reference import References
from modelport.monitor.sources import LogMetrics
from tests.serving.conftest import Home, launch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def requests_of(text: str, model: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "modelport_requests_total" and s.labels.get("model") == model \
                    and s.labels.get("version"):
                total += s.value
    return total


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_dashboard_in_chromium(tmp_path: Path, cancer_frame: tuple[pd.DataFrame, pd.Series],
                               cancer_pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import sync_playwright

    x, _ = cancer_frame
    home = Home(tmp_path / "home")
    home.register(cancer_pipeline, "cancer", x.head(5), reference=x)
    (tmp_path / "log.yaml").write_text("flush_seconds: 0.3\n")
    server = launch(home, tmp_path, "cancer", "--log", "delta", "--log-config",
                    str(tmp_path / "log.yaml"), "--drift-window", "100")
    rows = x.sample(300, replace=True, random_state=5).reset_index(drop=True)
    rows.loc[150:, "mean radius"] *= 1.6
    try:
        for start in range(0, 300, 10):
            records = rows.iloc[start:start + 10].to_dict(orient="records")
            assert httpx.post(f"{server.url}/predict/cancer", json=records,
                              timeout=30).status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the log holds all 300 rows
            answer = httpx.get(f"{server.url}/dashboard/api/drift",
                               params={"model": "cancer", "range": "1h", "window": "1h"},
                               timeout=30)
            if answer.status_code == 200 and sum(
                    w["rows"] for w in answer.json()["windows"]) == 300:
                break
            time.sleep(0.3)
        assert answer.status_code == 200, answer.text
        expected = {f for f, s in zip(answer.json()["features"], answer.json()["scores"][-1],
                                      strict=True) if s is not None and s >= 1}
        assert "mean radius" in expected
        for name, value in home.env.items():  # the same log, read here for the expected set
            if name.startswith("MODELPORT_"):
                monkeypatch.setenv(name, value)
        registry = home.registry()
        now = time.time()
        found = LogMetrics(registry, references=References(registry)).drift_report(
            "cancer", now - 3600, now + 1)
        assert found is not None and set(found[1].drifted_features) == expected

        console_errors: list[str] = []
        outside: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.on("console", lambda m: console_errors.append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("response", lambda r: console_errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 else None)
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith(server.url) else None)
            page.goto(f"{server.url}/dashboard")
            assert page.url == f"{server.url}/dashboard/"
            page.wait_for_selector("#total-cancer", timeout=30_000)
            page.wait_for_selector("#heatmap rect.cell", timeout=60_000)
            page.wait_for_timeout(2500)  # one more live poll: the rate charts get a point
            shown = float(page.get_attribute("#total-cancer", "data-total") or "nan")
            scraped = requests_of(httpx.get(f"{server.url}/metrics", timeout=10).text,
                                  "cancer")
            drifted = set(page.eval_on_selector_all(
                "#heatmap rect.drifted", "rs => rs.map(r => r.dataset.feature)"))
            models = page.inner_text("#models")
            histogram_bars = page.locator("#histogram rect.bar").count()
            screenshots = Path(os.environ.get("MODELPORT_SCREENSHOTS", tmp_path))
            screenshots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    assert console_errors == []
    assert outside == []
    assert shown == scraped == 30  # the page's count is the server's /metrics count
    assert drifted == expected
    assert "cancer" in models
    assert histogram_bars == 40  # reference and current bars of 20 bins for one feature
