"""Crash safety: SIGKILL a run half-way and inside its commit while another process reads the
output; the reader only ever sees a complete result, and ``--resume`` finishes the same result an
uninterrupted run gives, row for row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from .conftest import frame, write_parquet

HERE = Path(__file__).parent
ROWS, CHUNK = 120_000, 1_200  # 100 chunks


def batch(args: list[str], env: dict[str, str] | None = None, **kw: object
          ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE / "batch_worker.py"), *args],
                            env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def parts(folder: Path) -> int:
    return len(list(folder.glob("part-*.parquet"))) if folder.exists() else 0


@pytest.mark.slow
def test_sigkill_half_way_and_in_commit_then_resume(slow_bundle: Path, tmp_path: Path,
                                                    home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(ROWS, seed=3))
    out = tmp_path / "out"
    common = ["batch", "run", str(slow_bundle), "--input", str(tmp_path / "in.parquet"),
              "--output", str(out), "--keep", "id", "--chunk-rows", str(CHUNK),
              "--accelerate", "off", "--workers", "1", "--no-progress", "--json"]
    finish(batch([*common, "--run-id", "run-old"]))  # the complete result readers start with

    stop, log = tmp_path / "stop", tmp_path / "seen.jsonl"
    poller = subprocess.Popen([sys.executable, str(HERE / "output_poller.py"), str(out),
                               str(stop), str(log)])
    try:
        staging = tmp_path / ".out.modelport" / "run-new"
        run = [*common, "--run-id", "run-new"]
        proc = batch(run, env={"BATCH_CHUNK_DELAY": "0.03"})
        deadline = time.monotonic() + 240
        while parts(staging) < 50 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        half = parts(staging)
        assert 50 <= half < 100, half
        assert os.readlink(out).endswith("run-old")

        proc = batch([*run, "--resume"], env={"BATCH_PAUSE_BEFORE_SWITCH": "1"})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SWITCHING"  # every chunk staged, not published
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert parts(staging) == 100 and os.readlink(out).endswith("run-old")

        summary = json.loads(finish(batch([*run, "--resume"])))
        assert summary["resumed_chunks"] == 100 and summary["rows_out"] == ROWS
        assert os.readlink(out).endswith("run-new")
        time.sleep(0.2)
    finally:
        stop.touch()
        poller.wait(30)

    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) > 10
    assert not [s for s in seen if "error" in s or "absent" in s]
    seen = [s for s in seen if "retry" not in s]
    bad = [s for s in seen if s["rows"] != ROWS or not s["ids_ok"] or len(s["runs"]) != 1]
    assert not bad, bad[:5]
    assert {s["runs"][0] for s in seen} == {"run-old", "run-new"}

    clean = tmp_path / "clean"
    finish(batch([*common[:5], "--output", str(clean), *common[7:], "--run-id", "run-clean"]))
    resumed = pq.read_table(out).drop_columns(["prediction_id", "predicted_at"])
    uninterrupted = pq.read_table(clean).drop_columns(["prediction_id", "predicted_at"])
    assert resumed.equals(uninterrupted)


@pytest.mark.slow
def test_postgres_output_sigkill_half_way_and_in_the_swap_then_resume(
        classifier_bundle: Path, tmp_path: Path, home: Path, pg_table: str) -> None:
    import sqlalchemy as sa

    from .conftest import PG_URL

    rows, chunk = 20_000, 500  # 40 chunks
    write_parquet(tmp_path / "in.parquet", frame(rows, seed=4))
    common = ["batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.parquet"),
              "--output", PG_URL, "--table", pg_table, "--keep", "id", "--chunk-rows",
              str(chunk), "--workers", "1", "--no-progress", "--json"]
    finish(batch([*common, "--run-id", f"{pg_table}-old"]))
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(url)

    def staged() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM modelport_batch_chunks WHERE run_id = :r"),
                {"r": f"{pg_table}-new"}).scalar() or 0)

    stop, log = tmp_path / "stop", tmp_path / "seen.jsonl"
    poller = subprocess.Popen([sys.executable, str(HERE / "table_poller.py"), url, pg_table,
                               str(stop), str(log)])
    try:
        run = [*common, "--run-id", f"{pg_table}-new"]
        proc = batch(run, env={"BATCH_CHUNK_DELAY": "0.05"})
        deadline = time.monotonic() + 240
        while staged() < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert 20 <= staged() < 40

        proc = batch([*run, "--resume"], env={"BATCH_PAUSE_IN_SQL_SWAP": "1"})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SWITCHING"
        time.sleep(1.0)  # the swap's DROP and RENAME have run; its COMMIT has not
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert staged() == 40
        with engine.connect() as conn:  # waits for the killed swap to roll back
            runs = conn.execute(sa.text(
                "SELECT DISTINCT regexp_replace(prediction_id, '-[0-9]+$', '') "
                f'FROM "{pg_table}"')).all()
        assert runs == [(f"{pg_table}-old",)]

        summary = json.loads(finish(batch([*run, "--resume"])))
        assert summary["resumed_chunks"] == 40 and summary["rows_out"] == rows
        time.sleep(0.2)
    finally:
        stop.touch()
        poller.wait(30)

    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) > 10 and not [s for s in seen if "error" in s]
    assert all(s["rows"] == rows and len(s["runs"]) == 1 for s in seen), \
        [s for s in seen if s["rows"] != rows or len(s["runs"]) != 1][:3]
    assert {s["runs"][0] for s in seen} == {f"{pg_table}-old", f"{pg_table}-new"}
    with engine.connect() as conn:
        resumed = conn.execute(sa.text(
            f'SELECT id, prediction, probability_1 FROM "{pg_table}" ORDER BY id')).all()
        left = conn.execute(sa.text(
            'SELECT count(*) FROM modelport_batch_chunks WHERE run_id = :r'),
            {"r": f"{pg_table}-new"}).scalar()
    engine.dispose()
    assert left == 0  # checkpoints are dropped with the commit
    clean = tmp_path / "clean"
    finish(batch([*common[:5], "--output", str(clean), *common[9:], "--run-id", "clean"]))
    expected = pq.read_table(clean).select(["id", "prediction", "probability_1"]).to_pylist()
    assert [tuple(r.values()) for r in expected] == [tuple(r) for r in resumed]


@pytest.mark.slow
def test_redis_output_sigkill_half_way_and_before_the_pointer_switch_then_resume(
        classifier_bundle: Path, tmp_path: Path, home: Path, redis_prefix: str) -> None:
    import redis

    from .conftest import REDIS_URL

    rows, chunk = 20_000, 500  # 40 chunks
    write_parquet(tmp_path / "in.parquet", frame(rows, seed=5))
    common = ["batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.parquet"),
              "--output", REDIS_URL, "--prefix", redis_prefix, "--key", "id", "--keep", "id",
              "--chunk-rows", str(chunk), "--workers", "1", "--no-progress", "--json"]
    finish(batch([*common, "--run-id", "run-old"]))
    client = redis.Redis.from_url(REDIS_URL)

    def staged() -> int:
        return int(client.hlen(f"{redis_prefix}__chunks__:run-new"))

    def pointer() -> str:
        return str(client.hget(f"{redis_prefix}__published__",
                               f"{redis_prefix}predictions").decode())

    stop, log = tmp_path / "stop", tmp_path / "seen.jsonl"
    poller = subprocess.Popen([sys.executable, str(HERE / "redis_poller.py"), REDIS_URL,
                               redis_prefix, str(rows), str(stop), str(log)])
    try:
        run = [*common, "--run-id", "run-new"]
        proc = batch(run, env={"BATCH_CHUNK_DELAY": "0.05"})
        deadline = time.monotonic() + 240
        while staged() < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert 20 <= staged() < 40 and pointer() == "run-old"

        proc = batch([*run, "--resume"], env={"BATCH_PAUSE_BEFORE_REDIS_SWITCH": "1"})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SWITCHING"  # the MULTI is queued, not run
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert staged() == 40 and pointer() == "run-old"

        summary = json.loads(finish(batch([*run, "--resume"])))
        assert summary["resumed_chunks"] == 40 and summary["rows_out"] == rows
        assert pointer() == "run-new"
        time.sleep(0.2)
    finally:
        stop.touch()
        poller.wait(30)

    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) > 10 and not [s for s in seen if "error" in s]
    bad = [s for s in seen if s["missing"] or s["runs"] != [s["run"]]]
    assert not bad, bad[:3]
    assert {s["run"] for s in seen} == {"run-old", "run-new"}

    clean = redis_prefix + "clean:"
    finish(batch([*common[:8], clean, *common[9:], "--run-id", "run-clean"]))
    ids = [str(i) for i in range(rows)]
    resumed = client.hmget(f"{redis_prefix}predictions", ids)
    uninterrupted = client.hmget(f"{clean}predictions", ids)
    assert all(r is not None for r in resumed)

    def comparable(raw: bytes) -> dict[str, object]:
        record = json.loads(raw)
        assert record.pop("prediction_id").rsplit("-", 1)[1] == str(record["id"])
        return {k: v for k, v in record.items() if k != "predicted_at"}

    assert [comparable(r) for r in resumed] == [comparable(u) for u in uninterrupted]
    client.close()


@pytest.mark.slow
def test_s3_output_sigkill_half_way_and_before_the_pointer_put_then_resume(
        classifier_bundle: Path, tmp_path: Path, home: Path, s3_server: dict[str, Any]) -> None:
    import s3fs

    from modelport.batch import read_output

    options = s3_server["options"]
    fs = s3fs.S3FileSystem(**options)
    rows, chunk = 20_000, 500  # 40 chunks
    write_parquet(tmp_path / "in.parquet", frame(rows, seed=6))
    out = "s3://scores/crash"
    common = ["batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.parquet"),
              "--output", out, "--keep", "id", "--chunk-rows", str(chunk), "--workers", "1",
              "--no-progress", "--json"]
    env = {"MODELPORT_STORAGE_OPTIONS": json.dumps(options)}
    finish(batch([*common, "--run-id", "run-old"], env=env))

    def staged() -> int:
        try:
            names = fs.ls("scores/crash/_modelport/run-new", detail=False, refresh=True)
        except FileNotFoundError:
            return 0
        return sum(1 for n in names if n.rsplit("/", 1)[-1].startswith("part-"))

    def pointer() -> str:
        return str(fs.cat("scores/crash/_modelport/CURRENT").decode())

    stop, log = tmp_path / "stop", tmp_path / "seen.jsonl"
    poller = subprocess.Popen([sys.executable, str(HERE / "output_poller.py"), out, str(stop),
                               str(log), json.dumps(options)])
    try:
        run = [*common, "--run-id", "run-new"]
        proc = batch(run, env={**env, "BATCH_CHUNK_DELAY": "0.05"})
        deadline = time.monotonic() + 240
        while staged() < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert 20 <= staged() < 40 and pointer() == "run-old"

        proc = batch([*run, "--resume"], env={**env, "BATCH_PAUSE_BEFORE_SWITCH": "1"})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SWITCHING"  # every chunk staged
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert staged() == 40 and pointer() == "run-old"

        summary = json.loads(finish(batch([*run, "--resume"], env=env)))
        assert summary["resumed_chunks"] == 40 and summary["rows_out"] == rows
        assert pointer() == "run-new"
        time.sleep(0.5)
    finally:
        stop.touch()
        poller.wait(60)

    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) > 5
    assert not [s for s in seen if "error" in s or "retry" in s]
    bad = [s for s in seen if s["rows"] != rows or not s["ids_ok"] or len(s["runs"]) != 1]
    assert not bad, bad[:5]
    assert {s["runs"][0] for s in seen} == {"run-old", "run-new"}

    clean = tmp_path / "clean"
    finish(batch([*common[:5], "--output", str(clean), *common[7:], "--run-id", "run-clean"]))
    drop = ["prediction_id", "predicted_at"]
    assert read_output(out, storage_options=options).drop_columns(drop).equals(
        pq.read_table(clean).drop_columns(drop))
