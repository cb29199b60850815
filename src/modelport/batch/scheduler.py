"""Scheduled batch jobs: cron rules and run history in the registry database.

``JobStore`` keeps two tables of its own (``modelport_batch_jobs``, ``modelport_batch_history``)
next to the registry's, created idempotently. ``due_slots`` is the pure decision — which cron
slots to run now — and ``Scheduler.tick()`` acts on it: it claims each slot by inserting its
history row (unique per job and slot, so two schedulers never run a slot twice), runs the job with
run id ``<job>-<slot>`` (so a crashed scheduler's rerun of a slot is a no-op or a resume) and
records the outcome.

>>> from datetime import datetime, UTC
>>> t = lambda h, m: datetime(2026, 1, 1, h, m, tzinfo=UTC)
>>> [s.strftime("%H:%M") for s in due_slots("0 * * * *", t(9, 0), t(11, 30), catchup=True)]
['09:00', '10:00', '11:00']
>>> [s.strftime("%H:%M") for s in due_slots("0 * * * *", t(9, 0), t(11, 30), catchup=False)]
['11:00']
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from modelport.batch.job import JobSpec, Summary
from modelport.errors import (
    ConfigurationError,
    ConflictError,
    ModelportError,
    NotFoundError,
    StorageError,
)

log = logging.getLogger("modelport.scheduler")

_meta = sa.MetaData()
jobs_table = sa.Table(
    "modelport_batch_jobs", _meta,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("cron", sa.String(128), nullable=False),
    sa.Column("catchup", sa.Boolean, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("next_slot", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
history_table = sa.Table(
    "modelport_batch_history", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(128), nullable=False),
    sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("rows_in", sa.BigInteger, nullable=True),
    sa.Column("rows_out", sa.BigInteger, nullable=True),
    sa.Column("rejected", sa.BigInteger, nullable=True),
    sa.Column("duration_s", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("job", "slot", name="uq_modelport_batch_history_slot"),
)


def _cron(expression: str, start: datetime) -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ConfigurationError(
            "scheduling needs croniter; run: pip install 'modelport[schedule]'") from None
    if not croniter.is_valid(expression):
        raise ConfigurationError(
            f"--cron {expression!r} is not a cron expression; e.g. '0 * * * *' (hourly)")
    return croniter(expression, start)


def next_slot(expression: str, after: datetime) -> datetime:
    """The first cron slot strictly after ``after``."""
    return _utc(_cron(expression, after).get_next(datetime))


def due_slots(expression: str, first: datetime, now: datetime, *, catchup: bool) -> list[datetime]:
    """The slots from ``first`` (due, inclusive) up to ``now`` that should run now.

    With ``catchup`` every missed slot runs, oldest first; otherwise only the latest one does
    (found directly: a scheduler that was down for months must not walk every minute since).
    """
    if first > now:
        return []
    if not catchup:
        latest = _utc(_cron(expression, now + timedelta(seconds=1)).get_prev(datetime))
        while latest > now:
            latest = _utc(_cron(expression, latest).get_prev(datetime))
        return [max(latest, first)]
    slots: list[datetime] = []
    slot = first
    while slot <= now:
        slots.append(slot)
        slot = next_slot(expression, slot)
    return slots if catchup else slots[-1:]


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cron: str
    catchup: bool
    spec: JobSpec
    next_slot: datetime


class JobStore:
    """Scheduled jobs and their history, in the registry database (``load()`` creates tables)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: sa.engine.Engine | None = None

    def load(self) -> JobStore:
        from modelport.batch.source import redact, sql_engine_url

        if self._engine is None:
            engine = sa.create_engine(sql_engine_url(self.url))
            if engine.dialect.name == "sqlite" and engine.url.database:
                Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
            try:
                try:
                    _meta.create_all(engine, checkfirst=True)
                except sa.exc.IntegrityError:
                    _meta.create_all(engine, checkfirst=True)  # lost a creation race
            except sa.exc.SQLAlchemyError as exc:
                engine.dispose()
                raise StorageError(
                    f"cannot open the scheduler tables in {redact(self.url)}: {_first_line(exc)}"
                ) from None
            self._engine = engine
        return self

    @property
    def engine(self) -> sa.engine.Engine:
        if self._engine is None:
            self.load()
        assert self._engine is not None
        return self._engine

    def add(self, name: str, spec: JobSpec, cron: str, *, catchup: bool, now: datetime,
            replace: bool = False) -> ScheduledJob:
        if not name or len(name) > 128 or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigurationError("--name: use 1-128 letters, digits, '-', '_' or '.'")
        if spec.run_id:
            raise ConfigurationError("a scheduled job names each run itself; drop --run-id")
        first = next_slot(cron, now)
        job = ScheduledJob(name, cron, catchup, spec, first)
        values = {"cron": cron, "catchup": catchup, "spec": json.dumps(spec.to_dict()),
                  "next_slot": first}
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(sa.select(jobs_table.c.name).where(
                    jobs_table.c.name == name)).first()
                if exists and not replace:
                    raise ConflictError(
                        f"a job named {name!r} is already scheduled; pass --replace to change it")
                if exists:
                    conn.execute(jobs_table.update().where(jobs_table.c.name == name)
                                 .values(**values))
                else:
                    conn.execute(jobs_table.insert().values(name=name, created_at=now, **values))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot save the schedule: {_first_line(exc)}") from None
        return job

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            deleted = conn.execute(jobs_table.delete().where(jobs_table.c.name == name)).rowcount
        if not deleted:
            raise NotFoundError(f"no scheduled job named {name!r}; see 'modelport batch jobs'")

    def jobs(self) -> list[ScheduledJob]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs_table).order_by(jobs_table.c.name)).all()
        return [ScheduledJob(r.name, r.cron, bool(r.catchup),
                             JobSpec.from_dict(json.loads(r.spec)), _utc(r.next_slot))
                for r in rows]

    def claim(self, job: ScheduledJob, slot: datetime, run_id: str, now: datetime,
              advance_to: datetime) -> int | None:
        """Insert the slot's history row and move the job on; ``None`` if already claimed."""
        try:
            with self.engine.begin() as conn:
                result = conn.execute(history_table.insert().values(
                    job=job.name, slot=slot, run_id=run_id, status="running", started_at=now))
                conn.execute(jobs_table.update().where(jobs_table.c.name == job.name)
                             .values(next_slot=advance_to))
                key = result.inserted_primary_key
                return int(key[0]) if key else None
        except sa.exc.IntegrityError:
            return None

    def skip(self, job: ScheduledJob, advance_to: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.name == job.name)
                         .values(next_slot=advance_to))

    def finish(self, entry: int, now: datetime, summary: Summary | None,
               error: str | None) -> None:
        values: dict[str, Any] = {"finished_at": now,
                                  "status": "failed" if error else "succeeded", "error": error}
        if summary is not None:
            values.update(rows_in=summary.rows_in, rows_out=summary.rows_out,
                          rejected=summary.rejected, duration_s=summary.duration_s)
        with self.engine.begin() as conn:
            conn.execute(history_table.update().where(history_table.c.id == entry)
                         .values(**values))

    def history(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query = sa.select(history_table).order_by(history_table.c.id.desc()).limit(limit)
        if job:
            query = query.where(history_table.c.job == job)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:  # SQLite hands back naive times: they are UTC, say so
            for key in ("slot", "started_at", "finished_at"):
                if isinstance(row.get(key), datetime):
                    row[key] = _utc(row[key])
        return rows

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


RunFn = Callable[[JobSpec], Summary]


class Scheduler:
    """Runs due jobs. ``tick()`` once (tests, cron-driven hosts); ``run()`` loops."""

    def __init__(self, store: JobStore, run: RunFn,
                 *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.run_job = run
        self.clock = clock
        self.sleep = sleep

    def tick(self) -> list[dict[str, Any]]:
        """Run every due slot of every job; return what happened (one dict per slot)."""
        outcomes: list[dict[str, Any]] = []
        for job in self.store.jobs():
            now = self.clock()
            slots = due_slots(job.cron, job.next_slot, now, catchup=job.catchup)
            if not slots:
                continue
            after = next_slot(job.cron, max(slots[-1], now))
            if slots[0] > job.next_slot:
                log.info("job %s: skipping the slots missed from %s to %s (no catch-up)",
                         job.name, job.next_slot.isoformat(), slots[0].isoformat())
            for i, slot in enumerate(slots):
                advance = after if i == len(slots) - 1 else slots[i + 1]
                outcomes.append(self._run_slot(job, slot, advance))
        return outcomes

    def _run_slot(self, job: ScheduledJob, slot: datetime, advance: datetime) -> dict[str, Any]:
        run_id = f"{job.name}-{slot:%Y%m%dT%H%M%SZ}"
        entry = self.store.claim(job, slot, run_id, self.clock(), advance)
        if entry is None:
            return {"job": job.name, "slot": slot, "run_id": run_id, "status": "claimed-elsewhere"}
        summary: Summary | None = None
        error: str | None = None
        try:
            summary = self.run_job(job.spec.with_changes(run_id=run_id, resume=True))
        except ModelportError as exc:
            error = str(exc)
        except Exception as exc:  # a scheduler outlives one job's unexpected failure
            log.exception("job %s slot %s failed", job.name, slot)
            error = repr(exc)
        self.store.finish(entry, self.clock(), summary, error)
        return {"job": job.name, "slot": slot, "run_id": run_id,
                "status": "failed" if error else "succeeded", "error": error,
                "rows_in": summary.rows_in if summary else None}

    def run(self, *, poll_s: float = 30.0, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            for outcome in self.tick():
                log.warning("job %(job)s slot %(slot)s: %(status)s", outcome)
            self.sleep(poll_s)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
