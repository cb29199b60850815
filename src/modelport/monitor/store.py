"""``MonitorStore``: the monitor's configuration, alert states and history in the registry database.

Every ``modelport monitor apply`` stores the whole document as a new revision (and an audit row
naming who applied it), so ``monitor run`` processes pick up the change at their next
evaluation; alert states live here too, so a restarted ``monitor run`` continues a pending or
firing alert instead of starting over (and does not notify twice).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import Connection

from modelport.errors import NotFoundError, StorageError
from modelport.monitor.config import MonitorConfig
from modelport.monitor.rules import AlertState
from modelport.registry import schema as t
from modelport.registry.metadata import safe_url

if TYPE_CHECKING:
    from modelport.registry import Registry


class MonitorStore:
    """The monitor's tables of one registry. The constructor only stores."""

    def __init__(self, registry: Registry, *, actor: str | None = None) -> None:
        self.registry = registry
        self._actor = actor

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[Connection]:
        engine = self.registry.engine()
        try:
            with (engine.begin() if write else engine.connect()) as conn:
                yield conn
        except sa_exc.SQLAlchemyError as exc:
            raise StorageError(
                f"the registry database at {safe_url(self.registry.url)} failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None

    def actor(self) -> str:
        if self._actor:
            return self._actor
        try:
            return getpass.getuser()
        except (OSError, KeyError):
            return "unknown"

    # ------------------------------------------------------------------ configuration
    def apply(self, document: dict[str, Any]) -> int:
        """Validate and store ``document`` as the new configuration; returns its revision."""
        MonitorConfig.from_document(document)  # refuses a broken document before storing it
        with self._connect(write=True) as conn:
            latest = conn.execute(sa.select(sa.func.max(t.monitor_config.c.revision))).scalar()
            revision = int(latest or 0) + 1
            conn.execute(t.monitor_config.insert().values(
                revision=revision, document=document, applied_at=datetime.now(UTC),
                applied_by=self.actor()))
        self.registry.record_audit("monitor.apply", {"revision": revision,
                                                     "rules": len(document.get("rules") or [])},
                                   actor=self.actor())
        return revision

    def document(self) -> tuple[int, dict[str, Any]]:
        """The newest applied document and its revision."""
        with self._connect() as conn:
            row = conn.execute(sa.select(t.monitor_config.c.revision,
                                         t.monitor_config.c.document)
                               .order_by(t.monitor_config.c.revision.desc()).limit(1)).first()
        if row is None:
            raise NotFoundError("no monitor rules are applied yet; write a rules file and run "
                                "'modelport monitor apply rules.yaml'")
        return int(row[0]), dict(row[1])

    def config(self) -> tuple[int, MonitorConfig]:
        revision, document = self.document()
        return revision, MonitorConfig.from_document(document)

    # ------------------------------------------------------------------ alert states
    def states(self) -> dict[str, tuple[AlertState, float | None, float]]:
        """Rule name → (state, last value, when it was last evaluated)."""
        with self._connect() as conn:
            rows = conn.execute(sa.select(t.monitor_alerts)).mappings().all()
        return {r["rule"]: (AlertState(r["status"], r["since"], r["fired_at"]), r["value"],
                            r["evaluated_at"]) for r in rows}

    def save_state(self, rule: str, state: AlertState, value: float | None,
                   at: float) -> None:
        values = {"status": state.status, "since": state.since, "fired_at": state.fired_at,
                  "value": value, "evaluated_at": at}
        with self._connect(write=True) as conn:
            done = conn.execute(t.monitor_alerts.update()
                                .where(t.monitor_alerts.c.rule == rule).values(**values))
            if done.rowcount == 0:
                conn.execute(t.monitor_alerts.insert().values(rule=rule, **values))

    # ------------------------------------------------------------------ history
    def record(self, kind: str, status: str, *, at: float, rule: str | None = None,
               value: float | None = None, details: dict[str, Any] | None = None) -> None:
        with self._connect(write=True) as conn:
            conn.execute(t.monitor_history.insert().values(
                at=at, kind=kind, rule=rule, status=status, value=value,
                details=details or {}))

    def history(self, *, limit: int = 50, kind: str | None = None,
                rule: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        query = sa.select(t.monitor_history).order_by(t.monitor_history.c.id.desc())
        if kind:
            query = query.where(t.monitor_history.c.kind == kind)
        if rule:
            query = query.where(t.monitor_history.c.rule == rule)
        with self._connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def last_trigger_run(self, trigger: str) -> float | None:
        """When ``trigger`` last ran (rate limits survive a restarted ``monitor run``)."""
        query = (sa.select(sa.func.max(t.monitor_history.c.at))
                 .where(t.monitor_history.c.kind == "trigger")
                 .where(t.monitor_history.c.status.in_(("ok", "failed")))
                 .where(t.monitor_history.c.details["trigger"].as_string() == trigger))
        with self._connect() as conn:
            value = conn.execute(query).scalar()
        return float(value) if value is not None else None


__all__ = ["MonitorStore"]
