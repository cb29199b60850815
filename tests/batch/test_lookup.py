"""Offline serving: ``modelport serve`` answers /lookup from a batch job's Redis and SQL outputs
(real server process, real Redis, SQLite), with a live fallback on a miss."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import modelport
from modelport.batch import JobSpec, run_job
from modelport.batch.progress import Progress
from modelport.serving.lookup import LookupEndpoint, load_endpoints
from tests.conftest import free_port

from .conftest import FEATURES, REDIS_URL, frame, write_parquet


@pytest.fixture
def server(classifier_bundle: Path, tmp_path: Path, redis_prefix: str) -> Iterator[str]:
    from modelport.registry import Registry
    from modelport.settings import Settings

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS",
                        "MODELPORT_STORAGE_OPTIONS")}
    env.update(MODELPORT_HOME=str(home), OMP_NUM_THREADS="1")
    with Registry.from_settings(Settings.from_env(env)) as registry:
        registry.register(classifier_bundle)
        registry.set_alias("lr", "production", 1)

    write_parquet(tmp_path / "in.parquet", frame(40))
    quiet = Progress(enabled=False)
    for output, extra in ((REDIS_URL, {"prefix": redis_prefix}),
                          (f"sqlite:///{tmp_path / 'scores.db'}", {"table": "scores"})):
        run_job(JobSpec(ref="lr@production", input=str(tmp_path / "in.parquet"), output=output,
                        key=("id",), keep=("id",), **extra),  # type: ignore[arg-type]
                settings=Settings.from_env(env), progress=quiet)
    config = tmp_path / "lookup.yaml"
    config.write_text(
        f"endpoints:\n"
        f"  lr:\n    redis: {REDIS_URL}\n    prefix: '{redis_prefix}'\n"
        f"    fallback: lr@production\n"
        f"  lr-sql:\n    sql: sqlite:///{tmp_path / 'scores.db'}\n    table: scores\n"
        f"    key: id\n")
    env["MODELPORT_LOOKUP"] = str(config)
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "modelport.cli.main", "serve", "lr@production",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_lookup_from_redis_and_sql_with_live_fallback(server: str,
                                                      classifier_bundle: Path) -> None:
    model = modelport.load(str(classifier_bundle))
    data = frame(40)
    expected = model.predict_proba(data[FEATURES])[:, 1]

    response = httpx.get(f"{server}/lookup/lr/7")
    assert response.status_code == 200, response.text
    hit = response.json()
    assert hit["found"] and hit["source"] == "precomputed"
    assert hit["model"] == "lr" and hit["version"] == 1 and hit["prediction_id"]
    assert hit["probabilities"]["1"] == pytest.approx(expected[7], abs=1e-5)

    sql_hit = httpx.get(f"{server}/lookup/lr-sql/7").json()
    assert sql_hit["prediction_id"].startswith("run-")
    assert sql_hit["prediction_id"] != hit["prediction_id"]  # two runs, two outputs
    assert sql_hit["version"] == 1 and sql_hit["source"] == "precomputed"
    assert sql_hit["predicted_at"].endswith("Z")
    assert sql_hit["probabilities"]["1"] == pytest.approx(expected[7], abs=1e-5)

    miss = httpx.get(f"{server}/lookup/lr/999")
    assert miss.status_code == 404 and "features" in miss.json()["error"]
    features = {"f0": 0.5, "f1": -1.0, "f2": 0.0, "f3": 2.0}
    live = httpx.post(f"{server}/lookup/lr/999", json={"features": features}).json()
    assert live["source"] == "live" and live["version"] == 1 and live["prediction_id"]
    assert live["probabilities"]["1"] == pytest.approx(
        model.predict_proba([features])[0, 1], abs=1e-5)
    assert httpx.get(f"{server}/lookup/lr-sql/999").status_code == 404

    batch = httpx.post(f"{server}/lookup/lr", json={"rows": [
        {"key": "1"}, {"key": "12345"}, {"key": "777", "features": features}]}).json()
    assert [r["found"] for r in batch["results"]] == [True, False, True]
    assert batch["results"][2]["source"] == "live"
    keys = httpx.post(f"{server}/lookup/lr-sql", json={"keys": [3, 4]}).json()
    assert [r["key"] for r in keys["results"]] == ["3", "4"]
    assert httpx.get(f"{server}/lookup/nope/1").status_code == 404


def test_lookup_configuration_is_checked() -> None:
    endpoints = load_endpoints({"endpoints": {"a": {"redis": "redis://x", "prefix": "p:"}}})
    assert endpoints["a"] == LookupEndpoint(name="a", redis="redis://x", prefix="p:")
    from modelport.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="exactly one"):
        load_endpoints({"endpoints": {"a": {"prefix": "p:"}}})
    with pytest.raises(ConfigurationError, match="unknown"):
        load_endpoints({"endpoints": {"a": {"redis": "redis://x", "ttl": 3}}})
