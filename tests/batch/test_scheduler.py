"""Scheduled jobs: cron slots decided purely, runs claimed once, history in the registry DB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from modelport.batch import JobSpec, Summary, run_job
from modelport.batch.progress import Progress
from modelport.batch.scheduler import JobStore, Scheduler, due_slots
from modelport.errors import ConfigurationError, ConflictError

from .conftest import PG_URL, frame, write_parquet


def t(h: int, m: int = 0) -> datetime:
    return datetime(2026, 3, 1, h, m, tzinfo=UTC)


def test_due_slots_catch_up_or_take_the_latest() -> None:
    assert due_slots("*/15 * * * *", t(9, 0), t(9, 40), catchup=True) == \
        [t(9, 0), t(9, 15), t(9, 30)]
    assert due_slots("*/15 * * * *", t(9, 0), t(9, 40), catchup=False) == [t(9, 30)]
    assert due_slots("*/15 * * * *", t(9, 0), t(8, 59), catchup=True) == []
    assert due_slots("*/15 * * * *", t(9, 0), t(8, 59), catchup=False) == []
    assert due_slots("*/15 * * * *", t(9, 0), t(9, 30), catchup=False) == [t(9, 30)]  # inclusive
    assert due_slots("*/15 * * * *", t(9, 0), t(9, 0), catchup=False) == [t(9, 0)]
    # a year of missed minutes: only the latest runs, found without walking the year
    year_ago = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert due_slots("* * * * *", year_ago, t(9, 40), catchup=False) == [t(9, 40)]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scheduled(url: str, tmp_path: Path, bundle: Path, catchup: bool, clock: Clock
              ) -> tuple[JobStore, Scheduler, list[JobSpec]]:
    store = JobStore(url).load()
    spec = JobSpec(ref=str(bundle), input=str(tmp_path / "in.parquet"),
                   output=str(tmp_path / "out"), keep=("id",))
    store.add("hourly", spec, "0 * * * *", catchup=catchup, now=clock())
    ran: list[JobSpec] = []

    def run(s: JobSpec) -> Summary:
        ran.append(s)
        return run_job(s, progress=Progress(enabled=False))

    return store, Scheduler(store, run, clock=clock), ran


def test_scheduler_runs_due_slots_once_and_keeps_history(
        classifier_bundle: Path, tmp_path: Path, home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(50))
    clock = Clock(t(8, 30))
    store, scheduler, ran = scheduled(f"sqlite:///{tmp_path / 'reg.db'}", tmp_path,
                                      classifier_bundle, catchup=True, clock=clock)
    assert scheduler.tick() == []  # nothing due before 09:00
    clock.now = t(11, 5)
    outcomes = scheduler.tick()
    assert [o["slot"] for o in outcomes] == [t(9), t(10), t(11)]
    assert [s.run_id for s in ran] == ["hourly-20260301T090000Z", "hourly-20260301T100000Z",
                                       "hourly-20260301T110000Z"]
    assert scheduler.tick() == []  # already done
    assert pq.read_table(tmp_path / "out")["prediction_id"][0].as_py() == \
        "hourly-20260301T110000Z-0"
    history = store.history("hourly")
    assert [h["status"] for h in history] == ["succeeded"] * 3
    assert history[0]["rows_in"] == 50 and history[0]["duration_s"] is not None
    assert store.jobs()[0].next_slot == t(12)

    # a second scheduler racing for the same slot cannot claim it again
    job = store.jobs()[0]
    assert store.claim(job, t(11), "dup", clock(), t(12)) is None


def test_failures_are_recorded_and_missed_slots_skipped(
        classifier_bundle: Path, tmp_path: Path, home: Path) -> None:
    clock = Clock(t(8, 30))  # no input file: every run fails
    store, scheduler, ran = scheduled(f"sqlite:///{tmp_path / 'reg.db'}", tmp_path,
                                      classifier_bundle, catchup=False, clock=clock)
    clock.now = t(12, 1)
    outcomes = scheduler.tick()
    assert [o["slot"] for o in outcomes] == [t(12)]  # 09:00-11:00 skipped
    assert outcomes[0]["status"] == "failed" and len(ran) == 1
    history = store.history()
    assert history[0]["status"] == "failed" and "no input files" in history[0]["error"]


def test_jobs_live_in_postgres_too(classifier_bundle: Path, tmp_path: Path) -> None:
    import uuid

    store = JobStore(PG_URL).load()
    name = f"pg-{uuid.uuid4().hex[:8]}"
    spec = JobSpec(ref=str(classifier_bundle), input="in.parquet", output="out")
    try:
        store.add(name, spec, "*/5 * * * *", catchup=False, now=t(9, 2))
        with pytest.raises(ConflictError, match="--replace"):
            store.add(name, spec, "*/5 * * * *", catchup=False, now=t(9, 2))
        store.add(name, spec, "*/10 * * * *", catchup=False, now=t(9, 2), replace=True)
        job = next(j for j in store.jobs() if j.name == name)
        assert job.cron == "*/10 * * * *" and job.next_slot == t(9, 10)
        assert job.spec == spec
    finally:
        store.remove(name)
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM modelport_batch_history WHERE job = :j"),
                         {"j": name})
        store.close()


def test_bad_cron_is_a_configuration_error(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'reg.db'}").load()
    spec = JobSpec(ref="m", input="i", output="o")
    with pytest.raises(ConfigurationError, match="cron"):
        store.add("x", spec, "every hour", catchup=False, now=t(1) - timedelta(0))
