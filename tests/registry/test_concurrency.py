"""Concurrent registration from several OS processes, and a crash in the middle of publishing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from modelport.errors import NotFoundError

from .conftest import Store

WORKER = Path(__file__).with_name("register_worker.py")
PROCESSES, THREADS = 2, 20


def test_two_processes_registering_at_once_get_consecutive_versions(
        sql_store: Store, iris_bundle: Path, tmp_path: Path) -> None:
    """2 processes x 20 threads on a fresh database (so the schema upgrade races too)."""
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "register", sql_store.url, sql_store.artifacts,
             str(iris_bundle), str(THREADS), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    time.sleep(0.5)  # let both import modelport, so they really start together
    go.touch()
    results = []
    for proc in workers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    everything = sorted(v for versions in results for v in versions)
    assert everything == list(range(1, PROCESSES * THREADS + 1))
    assert all(len(versions) == THREADS for versions in results)

    reg = sql_store.registry()
    listed = reg.list_versions("iris")
    assert [mv.version for mv in listed] == list(range(1, PROCESSES * THREADS + 1))
    assert len({mv.artifact_uri for mv in listed}) == PROCESSES * THREADS
    assert len([e for e in reg.audit("iris", limit=1000) if e.action == "register"]) == 40
    assert reg.state_token().endswith(":40")
    assert reg.load("iris").version == 40


def test_concurrent_registrations_of_one_explicit_version_let_exactly_one_win(
        sql_store: Store, iris_bundle: Path, tmp_path: Path) -> None:
    """2 processes x 20 threads all register iris:7: one succeeds, 39 get ConflictError and
    their uploads are removed."""
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "register", sql_store.url, sql_store.artifacts,
             str(iris_bundle), str(THREADS), str(go), "7"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    time.sleep(0.5)
    go.touch()
    everything = []
    for proc in workers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        everything += json.loads(out)
    assert sorted(everything) == [0] * (PROCESSES * THREADS - 1) + [7]
    reg = sql_store.registry()
    (only,) = reg.list_versions("iris")
    assert only.version == 7
    assert len(sql_store.prefixes("iris")) == 1
    assert [e.version for e in reg.audit("iris", limit=1000)] == [7]
    assert reg.register(iris_bundle).version == 8


def test_crash_between_upload_and_commit_leaves_no_visible_version(
        sql_store: Store, iris_bundle: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(WORKER), "crash", sql_store.url, sql_store.artifacts,
         str(iris_bundle)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert len(sql_store.prefixes("iris")) == 1  # the upload happened ...
    reg = sql_store.registry()
    assert reg.list_models() == []  # ... but nothing of it is visible
    with pytest.raises(NotFoundError):
        reg.resolve("iris")
    assert reg.audit() == []
    assert reg.register(iris_bundle).version == 1
    orphans = reg.prune_uploads(older_than=timedelta(0))  # the crashed upload can be cleaned
    assert len(orphans) == 1 and orphans[0] != reg.resolve("iris:1").artifact_uri
    assert len(sql_store.prefixes("iris")) == 1
