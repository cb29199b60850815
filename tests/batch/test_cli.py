"""``modelport batch …`` and ``modelport scheduler`` as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from .conftest import frame, write_parquet


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    env.pop("MODELPORT_REGISTRY_URL", None)
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_batch_run_prints_a_json_summary_and_logs_progress(
        classifier_bundle: Path, tmp_path: Path) -> None:
    data = frame(3000)
    data.loc[[5], "f0"] = None
    write_parquet(tmp_path / "in.parquet", data)
    done = cli("batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.parquet"),
               "--output", str(tmp_path / "out"), "--keep", "id", "--chunk-rows", "500",
               "--json", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rows_in"], summary["rows_out"], summary["rejected"]) == (3000, 2999, 1)
    assert summary["rows_per_s"] > 0 and summary["duration_s"] > 0
    assert pq.read_table(tmp_path / "out").num_rows == 2999
    again = cli("batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.parquet"),
                "--output", str(tmp_path / "out"), "--keep", "id", "--chunk-rows", "500",
                home=tmp_path / "home")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_user_mistakes_are_one_line_and_a_nonzero_exit(classifier_bundle: Path,
                                                       tmp_path: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(10).drop(columns=["f2"]))
    cases = [
        (["--input", str(tmp_path / "missing*.parquet"), "--output", str(tmp_path / "o")], 4,
         "no input files"),
        (["--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o")], 3,
         "no column 'f2'"),
        (["--input", str(tmp_path / "in.parquet"), "--output", "sqlite:///x.db"], 2, "--table"),
        (["--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o"),
          "--max-reject-rate", "7"], 2, "fraction"),
    ]
    for args, code, text in cases:
        done = cli("batch", "run", str(classifier_bundle), *args, home=tmp_path / "home")
        assert done.returncode == code, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and text in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_schedule_jobs_scheduler_history(classifier_bundle: Path, tmp_path: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(20))
    home = tmp_path / "home"
    # a yearly slot: the test makes it due by hand, and no new slot comes due while it runs
    # (every minute did, when the test crossed a minute boundary on a busy machine)
    done = cli("batch", "schedule", str(classifier_bundle), "--cron", "0 0 1 1 *", "--name",
               "every-minute", "--input", str(tmp_path / "in.parquet"), "--output",
               str(tmp_path / "out"), "--keep", "id", "--json", home=home)
    assert done.returncode == 0, done.stderr
    jobs = json.loads(cli("batch", "jobs", "--json", home=home).stdout)
    assert [j["name"] for j in jobs] == ["every-minute"]
    bad = cli("batch", "schedule", str(classifier_bundle), "--cron", "soon", "--input", "x",
              "--output", "y", home=home)
    assert bad.returncode == 2 and "cron" in bad.stderr
    # the first slot is the next minute; make slots due, as if the scheduler had been down
    import sqlite3

    with sqlite3.connect(home / "registry.db") as db:
        db.execute("UPDATE modelport_batch_jobs SET next_slot = '2026-01-01 00:00:00.000000'")
    tick = cli("scheduler", "--once", "--json", home=home)
    assert tick.returncode == 0, tick.stderr
    ticked = json.loads(tick.stdout)
    assert [(o["status"], o["rows_in"]) for o in ticked] == [("succeeded", 20)]
    assert datetime.fromisoformat(ticked[0]["slot"]) <= datetime.now(UTC)  # the latest missed
    history = json.loads(cli("batch", "history", "every-minute", "--json", home=home).stdout)
    assert [h["run_id"] for h in history] == [o["run_id"] for o in ticked]
    assert [h["status"] for h in history] == ["succeeded"]
    assert cli("scheduler", "--once", "--json", home=home).stdout.strip() == "[]"  # done
    removed = cli("batch", "unschedule", "every-minute", home=home)
    assert removed.returncode == 0
    assert cli("batch", "unschedule", "every-minute", home=home).returncode == 4
