"""Per-key rate limits and daily row quotas are one limit per server, not one per worker, and a
daily quota outlives a restart.

The counting table is shared by real processes over a real file; daily counts are summed in
SQLite and PostgreSQL; and a real ``modelport serve --workers 2`` is asked from many
connections at once, then restarted.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import Home, Server, launch, sum_example, sum_model

from modelport.serving.auth import FileKeyStore, KeyLimits, new_key
from modelport.serving.limits import LimitTable, SqlUsageStore

PG_URL = os.environ.get("MODELPORT_TEST_POSTGRES",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _hammer(path: str, start: float, tries: int, out: multiprocessing.Queue) -> None:
    table = LimitTable(path)
    while time.time() < start:
        time.sleep(0.001)
    admitted = sum(table.take("k1", 10.0, 10.0, now=100.0) == 0.0 for _ in range(tries))
    counted = sum(table.charge("k2", day=7, rows=3, quota=100) < 0 for _ in range(tries))
    out.put((admitted, counted))
    table.close()


def test_workers_draw_from_one_bucket_and_one_quota(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.bin")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 1.5
    procs = [ctx.Process(target=_hammer, args=(path, start, 200, out)) for _ in range(3)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    # the clock is frozen: the bucket holds 10 for all three processes, the quota 33 charges
    assert sum(admitted for admitted, _ in results) == 10, results
    assert sum(counted for _, counted in results) == 33, results
    table = LimitTable(path)
    assert table.used("k2", day=7) == 99 and table.used("k2", day=8) == 0


def test_a_bucket_refills_at_its_rate_and_says_how_long_to_wait() -> None:
    table = LimitTable()
    assert [table.take("k", 2.0, 2.0, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert table.take("k", 2.0, 2.0, now=0.5) == 0.0  # one token back after 0.5 s
    assert table.take("other", 2.0, 2.0, now=0.5) == 0.0  # per key


def test_a_full_table_gives_the_least_recently_used_slot_to_a_new_key() -> None:
    table = LimitTable(slots=4)
    slow = 0.001  # a token per 1000 s: a used token stays used in this test
    for i in range(4):
        table.take(f"k{i}", slow, 1.0, now=float(i + 1))
    assert table.take("k0", slow, 1.0, now=4.5) > 0  # k0's token is used (k1 is now oldest)
    assert table.take("new", slow, 1.0, now=5.0) == 0.0  # takes the oldest slot (k1's)
    assert table.take("k3", slow, 1.0, now=5.0) > 0  # k3 kept its slot and state
    assert table.take("k1", slow, 1.0, now=6.0) == 0.0  # k1 starts again with a full bucket


def test_long_key_ids_are_counted_under_a_digest() -> None:
    long_id = "jwt:" + "x" * 100
    table = LimitTable()
    assert table.charge(long_id, 1, 5, 10) == -1
    assert table.charge(long_id, 1, 6, 10) == 5
    stored = next(iter(table._pending(1)))
    assert stored.startswith("h:") and len(stored) == 34


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    from modelport.registry.schema import key_usage

    url = f"sqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite" else PG_URL
    engine = sa.create_engine(url)
    key_usage.create(engine, checkfirst=True)
    yield engine
    engine.dispose()


def test_daily_rows_are_summed_across_hosts_and_outlive_a_restart(engine: sa.Engine) -> None:
    day = random.randrange(10**6, 10**9)  # a day no other test counts on
    store = SqlUsageStore(engine)
    host_a, host_b = LimitTable(), LimitTable()
    assert host_a.charge("key", day, 30, 100) == -1
    assert host_b.charge("key", day, 50, 100) == -1
    host_a.sync(day, store)
    host_b.sync(day, store)
    host_a.sync(day, store)
    assert host_a.used("key", day) == host_b.used("key", day) == 80
    assert host_a.charge("key", day, 30, 100) == 80  # 110 > 100: refused, nothing counted
    assert host_a.charge("key", day, 20, 100) == -1
    host_a.sync(day, store)
    host_a.sync(day, store)  # nothing new: counted once
    restarted = LimitTable()
    restarted.sync(day, store)
    assert restarted.used("key", day) == 100
    assert restarted.charge("key", day, 1, 100) == 100
    with engine.connect() as conn:
        from modelport.registry.schema import key_usage as t

        rows = conn.execute(sa.select(t.c.rows).where((t.c.key_id == "key") & (t.c.day == day)))
        assert [r for (r,) in rows] == [100]


def test_a_failed_sync_keeps_the_rows_for_the_next(engine: sa.Engine) -> None:
    day = random.randrange(10**6, 10**9)

    class Down:
        def add(self, day: int, rows: dict[str, int]) -> dict[str, int]:
            raise OSError("database down")

    table = LimitTable()
    table.charge("key", day, 7, 100)
    with pytest.raises(OSError):
        table.sync(day, Down())
    table.sync(day, SqlUsageStore(engine))
    table.sync(day, SqlUsageStore(engine))
    assert SqlUsageStore(engine).add(day, {}) == {"key": 7}


# ------------------------------------------------------------------ a real server, 2 workers
def _serve(home: Home, log_dir: Path, keys_file: Path) -> Server:
    log_dir.mkdir(exist_ok=True)
    config = log_dir / "serve.yaml"
    config.write_text(json.dumps({"auth": {"enabled": True, "keys_file": str(keys_file),
                                           "refresh_s": 0.2}, "poll_interval_s": 0}))
    return launch(home, log_dir, "sum", "--config", str(config), "--workers", "2")


def _ask(server: Server, token: str) -> int:
    with httpx.Client() as client:  # a connection of its own: any worker may take it
        return client.post(server.url + "/predict/sum", json={"a": 1.0, "b": 2.0},
                           headers={"authorization": f"Bearer {token}"}).status_code


def test_two_workers_keep_one_limit_per_key_and_the_quota_survives_a_restart(
        tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.register(sum_model(), "sum", sum_example())
    keys_file = tmp_path / "keys.json"
    store = FileKeyStore(keys_file)
    tokens = {}
    for name, limits in [("rated", KeyLimits(requests_per_s=4)),
                         ("quota", KeyLimits(rows_per_day=40))]:
        tokens[name], key = new_key(name, ["predict"], limits=limits)
        store.add(key)
    server = _serve(home, tmp_path / "first", keys_file)
    try:
        with ThreadPoolExecutor(8) as pool:
            started = time.monotonic()
            rated = list(pool.map(lambda t: _ask(server, t), [tokens["rated"]] * 40))
            elapsed = time.monotonic() - started
            quota = list(pool.map(lambda t: _ask(server, t), [tokens["quota"]] * 60))
        assert set(rated) == {200, 429} and set(quota) == {200, 429}, (rated, quota)
        # one bucket of 4 (+4/s) for both workers; one per worker would admit twice that
        assert rated.count(200) <= 4 + 4 * elapsed + 1, (rated.count(200), elapsed)
        assert quota.count(200) == 40, quota.count(200)
        time.sleep(0.6)  # the first worker writes the day's counts to the registry
    finally:
        server.stop()
    server = _serve(home, tmp_path / "second", keys_file)
    try:
        assert _ask(server, tokens["quota"]) == 429  # the 40 rows were counted before
        assert _ask(server, tokens["rated"]) == 200
    finally:
        server.stop()


def test_auth_list_shows_each_keys_limits_and_rows_today(
        modelport_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime

    from modelport.cli.main import main
    from modelport.registry import Registry
    from modelport.settings import Settings

    assert main(["auth", "create-key", "--scope", "predict", "--name", "shop",
                 "--rows-per-day", "1000", "--requests-per-s", "5"]) == 0
    assert main(["auth", "create-key", "--scope", "read", "--name", "viewer"]) == 0
    capsys.readouterr()
    assert main(["--json", "auth", "list"]) == 0
    keys = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    assert keys["shop"]["rows_today"] == keys["viewer"]["rows_today"] == 0
    with Registry.from_settings(Settings.from_env()) as registry:  # what a server writes
        SqlUsageStore(registry.engine()).add(datetime.now(UTC).toordinal(),
                                             {keys["shop"]["id"]: 17})
    assert main(["auth", "list"]) == 0
    listed = capsys.readouterr().out
    shop = next(line for line in listed.splitlines() if "shop" in line)
    assert "5/s, 1000 rows/day" in shop and " 17 " in f"{shop} "
    viewer = next(line for line in listed.splitlines() if "viewer" in line)
    assert "server default" in viewer
