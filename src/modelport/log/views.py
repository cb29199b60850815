"""Reading the log: DuckDB views over the store's Arrow data, ``read`` and ``query``.

A connection made by :func:`connect` has three views:

* ``predictions`` — the predictions table (one model's, or every model's joined by column name),
  one row per prediction id (a rerun that wrote an id again keeps the first row);
* ``feedback`` — every feedback item as it arrived;
* ``labeled`` — ``predictions`` with its feedback: ``label`` (cast to the prediction's type),
  ``label_text``, ``label_value``, ``reward`` and ``feedback_at``; null where no feedback
  arrived. Feedback by prediction id, and feedback by entity key (matched to the latest
  prediction of that key in ``[at - window_s, at]``), the latest received item winning.

and one table-valued view, ``unmatched_feedback``: feedback items whose prediction is not (yet) in
the log — kept, and matched as soon as the prediction is flushed.

DuckDB scans the Delta table's Arrow dataset directly (no DuckDB extension is needed); a
PostgreSQL store hands over Arrow tables read with the time range pushed down.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa

from modelport.errors import ConfigurationError, InvalidInputError, NotFoundError
from modelport.log.store import LogStore


def connect(store: LogStore, *, model: str | None = None, since: datetime | None = None,
            until: datetime | None = None, dedupe: bool = True) -> Any:
    """A DuckDB connection with the ``predictions``, ``feedback`` and ``labeled`` views."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    models = [model] if model else store.models()
    scans = []
    for i, name in enumerate(models):
        data = store.predictions(name, since, until)
        if data is None:
            continue
        con.register(f"_p{i}", data)
        scans.append(f"SELECT * FROM _p{i}")
    if not scans:
        if model:
            raise NotFoundError(f"no predictions of model {model!r} in the log ({store.name}); "
                                "see which models are logged with 'modelport log models'")
        raise NotFoundError(f"the prediction log ({store.name}) holds no predictions yet")
    where = []
    if since is not None:
        where.append(f"predicted_at >= TIMESTAMPTZ '{_iso(since)}'")
    if until is not None:
        where.append(f"predicted_at < TIMESTAMPTZ '{_iso(until)}'")
    body = " UNION ALL BY NAME ".join(scans)
    # one row per prediction id: a rerun (stream redelivery, resumed batch) may have written an
    # id twice with the same prediction; DISTINCT ON keeps one by hashing, without a sort
    sql = f"SELECT {'DISTINCT ON (prediction_id) ' if dedupe else ''}* FROM ({body})"
    if where:
        sql += " WHERE " + " AND ".join(where)
    con.execute(f"CREATE VIEW predictions AS {sql}")
    con.register("_feedback", store.feedback())
    con.execute("CREATE VIEW feedback AS SELECT * FROM _feedback")
    label_type = _prediction_type(con)
    model_key = "coalesce(f.model, p.model)" if len(scans) == 1 else "f.model"
    con.execute(f"""
        CREATE VIEW _resolved AS
        WITH by_id AS (
            SELECT prediction_id, label, value, reward, received_at FROM feedback
            WHERE prediction_id IS NOT NULL
        ), by_entity AS (
            SELECT p.prediction_id, f.label, f.value, f.reward, f.received_at
            FROM (SELECT * FROM feedback WHERE prediction_id IS NULL
                  AND entity_key IS NOT NULL) f
            ASOF JOIN (SELECT prediction_id, predicted_at, entity_key, model FROM predictions
                       WHERE entity_key IS NOT NULL) p
            ON f.entity_key = p.entity_key AND {model_key} = p.model AND f.at >= p.predicted_at
            WHERE p.predicted_at >= f.at - to_seconds(f.window_s)
        )
        SELECT prediction_id,
               arg_max(label, received_at) FILTER (WHERE label IS NOT NULL) AS label,
               arg_max(value, received_at) FILTER (WHERE value IS NOT NULL) AS value,
               arg_max(reward, received_at) FILTER (WHERE reward IS NOT NULL) AS reward,
               max(received_at) AS received_at
        FROM (SELECT * FROM by_id UNION ALL SELECT * FROM by_entity)
        GROUP BY prediction_id
    """)
    cast = f"TRY_CAST(f.label AS {label_type})" if label_type else "f.label"
    con.execute(f"""
        CREATE VIEW labeled AS
        SELECT p.*, {cast} AS label, f.label AS label_text, f.value AS label_value, f.reward,
               f.received_at AS feedback_at
        FROM predictions p LEFT JOIN _resolved f USING (prediction_id)
    """)
    con.execute("""
        CREATE VIEW unmatched_feedback AS
        SELECT f.* FROM feedback f
        WHERE f.prediction_id IS NOT NULL
          AND f.prediction_id NOT IN (SELECT prediction_id FROM predictions)
    """)
    return con


def _prediction_type(con: Any) -> str | None:
    rows = con.execute("SELECT column_name, column_type FROM (DESCRIBE predictions)").fetchall()
    types = dict(rows)
    kind = types.get("prediction")
    if kind is None or kind.startswith(("STRUCT", "MAP")) or kind.endswith("]"):
        return None
    return str(kind)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def query(sql: str, store: LogStore, *, model: str | None = None,
          since: datetime | None = None, until: datetime | None = None) -> pa.Table:
    """Run ``sql`` over the views of :func:`connect`; the result as an Arrow table."""
    import duckdb

    con = connect(store, model=model, since=since, until=until)
    try:
        relation = con.sql(sql)
        table = relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(f"the query failed: {first}; fix the SQL and rerun "
                                "'modelport log query' (views: predictions, feedback, labeled, "
                                "unmatched_feedback)", field="sql") from None
    finally:
        con.close()
    return table


def read(store: LogStore, *, model: str | None = None, since: datetime | None = None,
         until: datetime | None = None, labeled: bool = False) -> pa.Table:
    """The model's predictions (with their feedback when ``labeled``) in ``[since, until)``."""
    view = "labeled" if labeled else "predictions"
    con = connect(store, model=model, since=since, until=until)
    try:
        return con.sql(f"SELECT * FROM {view} ORDER BY predicted_at, prediction_id"
                       ).to_arrow_table()
    except Exception as exc:
        if "Binder" in type(exc).__name__ or "Conversion" in type(exc).__name__:
            raise ConfigurationError(
                f"the logged models do not share column types ({exc}); read one model at a "
                "time (--model)") from None
        raise
    finally:
        con.close()


__all__ = ["connect", "query", "read"]
