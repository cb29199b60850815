"""``SqlSink``: keep a database table updated as events arrive, one row per input record.

Rows are the tabular form of :mod:`modelport.core.schema` (key / passthrough columns,
``prediction_id``, ``prediction``, ``probability_<class>``, further outputs as JSON, ``model``,
``version``, ``predicted_at``). They are upserted on ``key_columns``: by default
``prediction_id`` (``<topic>-<partition>-<offset>``), so a batch written again after a crash
replaces its own rows and a table never holds two rows for one input. A business key (say
``customer``, given with ``--key``, which also copies it) keeps the latest prediction per key
instead. PostgreSQL, SQLite (``ON CONFLICT``) and MySQL /
MariaDB (``ON DUPLICATE KEY``) are supported. The table is created on first write when missing,
with column types taken from the first outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelport.errors import ConfigurationError
from modelport.stream.message import Output
from modelport.stream.sink import RefusedOutputs, SinkError

log = logging.getLogger("modelport.stream.sql")

#: the prediction id, made from the input's position: unique per input record
POSITION_KEY = ("prediction_id",)

_FIXED: dict[str, sa.types.TypeEngine[Any]] = {
    "prediction_id": sa.String(255),
    "model": sa.String(255),
    "version": sa.BigInteger(),
    "predicted_at": sa.DateTime(timezone=True),
}


class SqlSink:
    def __init__(
        self,
        url: str,
        table: str,
        *,
        key_columns: Sequence[str] = POSITION_KEY,
        engine: Engine | None = None,
    ) -> None:
        if not table.replace("_", "").isalnum():
            raise ConfigurationError(
                f"table name {table!r} must be letters, digits and underscores")
        self.url = url
        self.table_name = table
        self.key_columns = tuple(key_columns)
        self.name = f"{sa.make_url(url).render_as_string(hide_password=True)}#{table}"
        self.engine = engine
        self.table: sa.Table | None = None

    def start(self) -> None:
        if self.engine is None:
            try:
                self.engine = sa.create_engine(self.url, pool_pre_ping=True)
            except (sa.exc.ArgumentError, ImportError) as exc:
                raise ConfigurationError(f"cannot use database URL {self.name}: {exc}") from None
        try:
            self.table = sa.Table(self.table_name, sa.MetaData(), autoload_with=self.engine)
        except sa.exc.NoSuchTableError:
            self.table = None
        except sa.exc.OperationalError as exc:
            raise SinkError(f"database {self.name} unavailable: {exc.orig}") from None

    def write(self, outputs: Sequence[Output]) -> None:
        """Upsert one row per prediction in one transaction.

        Rows the database refuses for their content (PEP 249's data and integrity errors: a value
        too long for its column, a NOT NULL or CHECK constraint) are found by bisection, every
        other row is stored, and :class:`RefusedOutputs` names the refused ones. Any other
        database error is a :class:`SinkError` (transient when the database is unreachable).
        """
        if any(o.dead_letter for o in outputs):
            raise ConfigurationError(
                "a database table cannot hold dead letters (the original messages); give the "
                "worker a dead-letter topic or stream")
        pairs = [(o, _row(o)) for o in outputs if o.record is not None]
        if not pairs:
            return
        try:
            if self.table is None:
                self.table = self._create([row for _, row in pairs])
            names = set(self.table.columns.keys())
            if not set(pairs[0][1]) <= names:
                pairs = [(o, {k: v for k, v in r.items() if k in names}) for o, r in pairs]
            refused = self._upsert_apart(pairs)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise SinkError(f"database {self.name} unavailable: {exc.orig}") from None
        except sa.exc.DBAPIError as exc:
            raise SinkError(f"writing to {self.name} failed: {exc.orig}", transient=False) \
                from None
        if refused:
            raise RefusedOutputs(f"{self.name} refused {len(refused)} of {len(pairs)} rows; "
                                 f"first: {refused[0][1]}", refused)

    def _upsert_apart(self, pairs: list[tuple[Output, dict[str, Any]]]
                      ) -> list[tuple[Output, str]]:
        """Upsert ``pairs`` in one transaction; if the database refuses the content of some,
        store the others (halving the batch until the refused rows stand alone)."""
        try:
            with self._engine().begin() as conn:
                conn.execute(self._upsert(), [row for _, row in pairs])
            return []
        except (sa.exc.DataError, sa.exc.IntegrityError) as exc:
            if len(pairs) == 1:
                reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else \
                    type(exc.orig).__name__
                return [(pairs[0][0], reason[:500])]
        middle = len(pairs) // 2
        return self._upsert_apart(pairs[:middle]) + self._upsert_apart(pairs[middle:])

    def _create(self, rows: list[dict[str, Any]]) -> sa.Table:
        first = rows[0]
        missing = [c for c in self.key_columns if c not in first]
        if missing:
            raise ConfigurationError(
                f"key column {missing[0]!r} is not in the outputs; copy it with --keep "
                f"or key on {', '.join(POSITION_KEY)}")
        columns = [sa.Column(name, _FIXED.get(name) or _infer(rows, name),
                             primary_key=name in self.key_columns,
                             nullable=name not in self.key_columns)
                   for name in first]
        table = sa.Table(self.table_name, sa.MetaData(), *columns)
        table.create(self._engine(), checkfirst=True)
        log.info("created table %s keyed on %s", self.table_name, self.key_columns)
        return table

    def _upsert(self) -> Any:
        assert self.table is not None
        table = self.table
        dialect = self._engine().dialect.name
        update = [c.name for c in table.columns if c.name not in self.key_columns]
        if dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
            stmt = insert(table)
            return stmt.on_conflict_do_update(
                index_elements=list(self.key_columns),
                set_={c: stmt.excluded[c] for c in update})
        if dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as my_insert

            my = my_insert(table)
            return my.on_duplicate_key_update({c: my.inserted[c] for c in update})
        raise ConfigurationError(
            f"the SQL sink supports PostgreSQL, SQLite and MySQL/MariaDB, not {dialect}")

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def _engine(self) -> Engine:
        if self.engine is None:
            raise ConfigurationError("the SQL sink is not started; call start() first")
        return self.engine


def _row(output: Output) -> dict[str, Any]:
    """The output's record in the tabular form: probabilities one column per class."""
    assert output.record is not None
    row: dict[str, Any] = {}
    for name, value in output.record.items():
        if name == "probabilities" and isinstance(value, dict):
            for cls, p in value.items():
                row[f"probability_{cls}"] = p
        elif name == "predicted_at" and isinstance(value, str):
            row[name] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            row[name] = value
    return row


def _infer(rows: Sequence[Mapping[str, Any]], name: str) -> sa.types.TypeEngine[Any]:
    value = next((r[name] for r in rows if r.get(name) is not None), None)
    if isinstance(value, bool):
        return sa.Boolean()
    if isinstance(value, int):
        return sa.BigInteger()
    if isinstance(value, float) or name.startswith("probability_"):
        return sa.Float(precision=53)
    if isinstance(value, str) or value is None:
        return sa.String(255)
    return sa.JSON()
