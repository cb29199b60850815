"""``PostgresStore``: the prediction log in PostgreSQL, for teams that query it with SQL.

Two tables (names prefixed by ``log_prefix`` from the URL's query, default ``modelport_``)::

    <prefix>predictions  prediction_id text PRIMARY KEY, predicted_at timestamptz, model text,
                         version bigint, endpoint text, variant text, request_id text,
                         source text, entity_key text, latency_ms double precision,
                         inputs jsonb, prediction jsonb, probabilities jsonb, outputs jsonb
                         + index (model, predicted_at) and a BRIN index on predicted_at
    <prefix>feedback     the columns of the feedback table, + index (prediction_id)

The primary key makes reruns idempotent (a stream redelivery or a resumed batch writes the same
ids: ``ON CONFLICT DO NOTHING``). Each flush is one transaction. Reading hands DuckDB Arrow
tables, with the model and time range pushed down to PostgreSQL.

    postgresql://user@host:5432/db?log_prefix=team_a_
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import pyarrow as pa

from modelport.errors import ConfigurationError, StorageError
from modelport.log.schema import FEEDBACK_SCHEMA, PREDICTION_COLUMNS, probability_column

_FIXED = [n for n, _ in PREDICTION_COLUMNS if n != "date"]


class PostgresStore:
    readable = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("log_prefix", "modelport_")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", self.prefix):
            raise ConfigurationError(f"log_prefix {self.prefix!r} must be a plain SQL name")
        scheme = "postgresql"
        self.dsn = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))
        self.name = f"postgresql:{parts.hostname}{parts.path}/{self.prefix}*"
        self._conn: Any = None

    @property
    def predictions_table(self) -> str:
        return f"{self.prefix}predictions"

    @property
    def feedback_table(self) -> str:
        return f"{self.prefix}feedback"

    def _connect(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            try:
                # autocommit: reads hold no transaction (and no locks) open between flushes;
                # writes take one explicit transaction each
                self._conn = psycopg.connect(self.dsn, autocommit=True)
            except psycopg.Error as exc:
                raise StorageError(f"cannot reach the prediction log database: {exc}") from exc
            self._create()
        return self._conn

    def _create(self) -> None:
        p, f = self.predictions_table, self.feedback_table
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (p,))
            cur.execute(f"""CREATE TABLE IF NOT EXISTS {p} (
                prediction_id text PRIMARY KEY, predicted_at timestamptz NOT NULL,
                model text NOT NULL, version bigint, endpoint text, variant text,
                request_id text, source text, entity_key text, latency_ms double precision,
                inputs jsonb, prediction jsonb, probabilities jsonb, outputs jsonb)""")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {p}_model_time ON {p} (model, predicted_at)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {p}_time ON {p} USING brin (predicted_at)")
            cur.execute(f"""CREATE TABLE IF NOT EXISTS {f} (
                prediction_id text, model text, entity_key text, at timestamptz,
                window_s double precision, label text, value double precision,
                reward double precision, received_at timestamptz NOT NULL, source text,
                date text)""")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {f}_pid ON {f} (prediction_id)")

    # ------------------------------------------------------------------ writing
    def append_predictions(self, model: str, table: pa.Table) -> None:
        names = table.column_names
        probas = [n for n in names if n.startswith("probability_")]
        extras = [n for n in names if n not in _FIXED and n not in probas
                  and n not in ("date", "inputs", "prediction")]
        rows = []
        for row in table.to_pylist():
            rows.append((
                *[row[n] for n in _FIXED],
                _json(row.get("inputs")), _json(row.get("prediction")),
                _json({n[len("probability_"):]: row[n] for n in probas}) if probas else None,
                _json({n: row[n] for n in extras}) if extras else None,
            ))
        columns = ", ".join([*_FIXED, "inputs", "prediction", "probabilities", "outputs"])
        marks = ", ".join(["%s"] * (len(_FIXED) + 4))
        self._run(f"INSERT INTO {self.predictions_table} ({columns}) VALUES ({marks}) "
                  "ON CONFLICT (prediction_id) DO NOTHING", rows)

    def append_feedback(self, table: pa.Table) -> None:
        table = table.select(FEEDBACK_SCHEMA.names)
        rows = [tuple(r.values()) for r in table.to_pylist()]
        marks = ", ".join(["%s"] * len(FEEDBACK_SCHEMA.names))
        self._run(f"INSERT INTO {self.feedback_table} ({', '.join(FEEDBACK_SCHEMA.names)}) "
                  f"VALUES ({marks})", rows)

    def _run(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        import psycopg

        if not rows:
            return
        try:
            conn = self._connect()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows)
        except psycopg.Error as exc:
            self.close()
            raise StorageError(f"the prediction log database refused a write: {exc}") from exc

    # ------------------------------------------------------------------ reading
    def models(self) -> list[str]:
        with self._connect().cursor() as cur:
            cur.execute(f"SELECT DISTINCT model FROM {self.predictions_table} ORDER BY 1")
            return [r[0] for r in cur.fetchall()]

    def predictions(self, model: str, since: datetime | None = None,
                    until: datetime | None = None) -> Any:
        where, params = ["model = %s"], [model]
        if since is not None:
            where.append("predicted_at >= %s")
            params.append(since)  # type: ignore[arg-type]
        if until is not None:
            where.append("predicted_at < %s")
            params.append(until)  # type: ignore[arg-type]
        with self._connect().cursor() as cur:
            cur.execute(f"SELECT {', '.join(_FIXED)}, inputs, prediction, probabilities, outputs "
                        f"FROM {self.predictions_table} WHERE {' AND '.join(where)} "
                        "ORDER BY predicted_at", params)
            rows = cur.fetchall()
        if not rows:
            return None
        data: dict[str, list[Any]] = {n: [r[i] for r in rows] for i, n in enumerate(_FIXED)}
        k = len(_FIXED)
        data["date"] = [r[1].strftime("%Y-%m-%d") for r in rows]
        inputs = [r[k] for r in rows]
        data["inputs"] = inputs if any(v for v in inputs) else [None] * len(rows)
        data["prediction"] = [r[k + 1] for r in rows]
        classes: list[str] = []
        for r in rows:
            for c in (r[k + 2] or {}):
                if c not in classes:
                    classes.append(c)
        for c in classes:
            data[probability_column(c)] = [(r[k + 2] or {}).get(c) for r in rows]
        extras: list[str] = []
        for r in rows:
            extras.extend(n for n in (r[k + 3] or {}) if n not in extras)
        for n in extras:
            data[n] = [(r[k + 3] or {}).get(n) for r in rows]
        types = dict(PREDICTION_COLUMNS)
        return pa.table({n: pa.array(v, types.get(n)) for n, v in data.items()})

    def feedback(self) -> Any:
        with self._connect().cursor() as cur:
            cur.execute(f"SELECT {', '.join(FEEDBACK_SCHEMA.names)} FROM {self.feedback_table}")
            rows = cur.fetchall()
        return pa.table({n: pa.array([r[i] for r in rows], FEEDBACK_SCHEMA.field(n).type)
                         for i, n in enumerate(FEEDBACK_SCHEMA.names)})

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()


__all__ = ["PostgresStore"]
