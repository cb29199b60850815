"""The prediction log and feedback: what which model version said, to whom, when, and was it right.

Writing (every deployment form; see :mod:`modelport.log.writer`)::

    from modelport.log import LogConfig, PredictionLog, open_stores
    plog = PredictionLog(open_stores(LogConfig()), LogConfig())
    service.events.subscribe(plog)           # the core's PredictionEvents, off the hot path

Python API (opt-in): ``modelport.log.enable(model)`` logs every ``model.predict*`` call.

Feedback::

    modelport.feedback("9f3c…", label="yes")
    modelport.log.write_feedback([{"entity_key": "c42", "model": "churn", "label": "no"}])

Reading::

    modelport.log.read(model="churn", since=datetime(2026, 12, 1, tzinfo=UTC))   # Arrow
    modelport.log.query("SELECT version, avg((label = prediction)::int) FROM labeled "
                        "GROUP BY version", model="churn")

The table schema is documented in :mod:`modelport.log.schema` and in the README.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from modelport.log.config import LogConfig, ModelLogPolicy
from modelport.log.feedback_items import FeedbackItem, parse_items
from modelport.log.feedback_items import to_table as feedback_table
from modelport.log.schema import FEEDBACK_SCHEMA, PREDICTION_COLUMNS
from modelport.log.store import LogStore, first_readable, open_store
from modelport.log.writer import PredictionLog

if TYPE_CHECKING:
    from modelport.bundle.model import Model
    from modelport.core.events import EventBus
    from modelport.settings import Settings


def open_stores(config: LogConfig | None = None, settings: Settings | None = None
                ) -> list[LogStore]:
    """Every store of ``config`` (default: ``MODELPORT_LOG*``), opened with ``settings``' home and
    storage options."""
    from modelport.settings import Settings

    config = config or LogConfig.from_env()
    settings = settings or Settings.from_env()
    return [open_store(url, home=str(settings.home), storage_options=settings.storage_options)
            for url in config.stores]


def default_store(store: LogStore | str | None = None) -> LogStore:
    """``store`` itself, the store a URL names, or the first readable configured store."""
    if isinstance(store, str):
        from modelport.settings import Settings

        settings = Settings.from_env()
        return open_store(store, home=str(settings.home),
                          storage_options=settings.storage_options)
    if store is not None:
        return store
    return first_readable(open_stores())


def read(model: str | None = None, since: datetime | None = None,
         until: datetime | None = None, *, labeled: bool = False, pandas: bool = False,
         store: LogStore | str | None = None) -> Any:
    """Logged predictions of ``model`` in ``[since, until)`` as a ``pyarrow.Table`` (a pandas
    DataFrame with ``pandas=True``); ``labeled=True`` adds each row's feedback."""
    from modelport.log.views import read as read_store

    table = read_store(default_store(store), model=model, since=since, until=until,
                       labeled=labeled)
    return table.to_pandas() if pandas else table


def query(sql: str, *, model: str | None = None, since: datetime | None = None,
          until: datetime | None = None, store: LogStore | str | None = None) -> pa.Table:
    """Run SQL over the ``predictions``, ``feedback`` and ``labeled`` views (DuckDB)."""
    from modelport.log.views import query as run

    return run(sql, default_store(store), model=model, since=since, until=until)


def write_feedback(items: Iterable[Mapping[str, Any] | FeedbackItem] | Mapping[str, Any], *,
                   source: str = "python", store: LogStore | str | None = None,
                   model: str | None = None) -> int:
    """Store feedback items (dicts as in :mod:`modelport.log.feedback_items`); returns how many."""
    if isinstance(items, Mapping):
        items = [items]
    parsed: list[FeedbackItem] = []
    raw: list[Mapping[str, Any]] = []
    for item in items:
        if isinstance(item, FeedbackItem):
            parsed.append(item)
        else:
            raw.append(item)
    if raw:
        parsed.extend(parse_items(list(raw), default_model=model))
    target = default_store(store)
    if any(item.reward is not None for item in parsed):  # a bandit's declared reward range
        from modelport.rollout.rewards import registry_guard

        check = registry_guard(store=target)
        if check is not None:
            check(parsed, lambda i: f"items[{i}].reward")
    target.append_feedback(feedback_table(parsed, source=source))
    return len(parsed)


def feedback(prediction_id: str | None = None, *, label: Any = None, value: float | None = None,
             reward: float | None = None, entity_key: str | None = None,
             at: datetime | str | None = None, window: float | str | None = None,
             model: str | None = None, store: LogStore | str | None = None) -> int:
    """Record the truth about one prediction (by id, or by ``entity_key`` + ``at``/``window``).

    ``modelport.feedback("9f3c…", label="yes")``. A repeated item is idempotent and a later one
    for the same prediction replaces the earlier (the latest received wins).
    """
    item = {k: v for k, v in {
        "prediction_id": prediction_id, "label": label, "value": value, "reward": reward,
        "entity_key": entity_key, "at": at, "window": window, "model": model}.items()
        if v is not None}
    return write_feedback([item], store=store)


def start_logging(events: EventBus, *, stores: Sequence[str] | None = None,
                  config_file: str | None = None, settings: Settings | None = None,
                  metrics_registry: Any = None) -> PredictionLog | None:
    """Subscribe a prediction log to ``events`` when ``stores`` (``--log``), ``config_file``
    (``--log-config``) or ``MODELPORT_LOG`` / ``MODELPORT_LOG_CONFIG`` ask for one; ``None``
    otherwise. The caller closes it (``events.flush()`` then ``close()``) when it stops."""
    import os

    wanted = [s for s in (stores or []) if s.strip()]
    env_stores = [s for s in os.environ.get("MODELPORT_LOG", "").split(",") if s.strip()]
    if not (wanted or config_file or env_stores or os.environ.get("MODELPORT_LOG_CONFIG")):
        return None
    if (wanted or env_stores) in (["off"],):
        return None
    config = LogConfig.from_env(stores=wanted or None, config_file=config_file)
    plog = PredictionLog(open_stores(config, settings), config,
                         metrics_registry=metrics_registry).start()
    events.subscribe(plog)
    return plog


def enable(model: Model, config: LogConfig | None = None, *,
           stores: Sequence[LogStore] | None = None) -> PredictionLog:
    """Log every prediction ``model`` makes from now on (Python API, opt-in); returns the log
    (``flush()`` / ``close()`` it, or let the interpreter's exit flush it)."""
    from modelport.core.events import EventBus

    config = config or LogConfig.from_env()
    plog = PredictionLog(list(stores) if stores is not None else open_stores(config), config)
    bus = EventBus()
    bus.subscribe(plog)
    model.events = bus

    def close() -> None:
        bus.close()
        plog.close()

    atexit.register(close)
    return plog


__all__ = [
    "FEEDBACK_SCHEMA",
    "PREDICTION_COLUMNS",
    "FeedbackItem",
    "LogConfig",
    "LogStore",
    "ModelLogPolicy",
    "PredictionLog",
    "default_store",
    "enable",
    "feedback",
    "open_store",
    "open_stores",
    "query",
    "read",
    "start_logging",
    "write_feedback",
]
