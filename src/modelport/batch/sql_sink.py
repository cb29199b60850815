"""``SqlSink``: a table in PostgreSQL, MariaDB/MySQL or SQLite, swapped in one transaction.

A run fills a staging table of its own (``<table>__mp_<hash>``); each chunk is inserted in one
transaction together with a row in ``modelport_batch_chunks``, which is the resume checkpoint. The
commit then publishes the staging rows in one transaction, according to ``mode``:

* ``create`` — the table must not exist; the staging table is renamed to it;
* ``replace`` — the old table is dropped and the staging table renamed in its place;
* ``append`` — the staged rows are inserted into the table (created when missing);
* ``upsert`` — rows whose ``key`` exists are updated, others inserted (a table created by
  modelport gets that key as its primary key).

The commit also records the run in ``modelport_batch_runs``, so rerunning a committed run is a
no-op. Both bookkeeping tables live in the connection's default schema unless ``state_schema``
(``--state-schema``) names another one, created when missing. PostgreSQL and SQLite run DDL
inside transactions, so readers see the old table or the new one, never a gap. MariaDB/MySQL
commit DDL implicitly: ``replace`` uses one atomic multi-table ``RENAME TABLE``; the run
record follows it in its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa

from modelport.batch.sink import Sink, Staged
from modelport.batch.source import redact, sql_engine_url
from modelport.core.schema import lists_as_json
from modelport.errors import ConfigurationError, ConflictError, StorageError

Mode = Literal["create", "append", "replace", "upsert"]
MODES: tuple[Mode, ...] = ("create", "append", "replace", "upsert")

def bookkeeping_tables(schema: str | None = None) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The two tables a SQL output keeps beside the user's table, in ``schema`` (``None``: the
    connection's default schema): ``modelport_batch_runs`` (one row per run: its target, its
    meta and, once committed, its summary; a committed run is not run again) and
    ``modelport_batch_chunks`` (one row per chunk staged by a run still in progress: the resume
    checkpoint, deleted at commit)."""
    meta = sa.MetaData(schema=schema)
    runs = sa.Table(
        "modelport_batch_runs", meta,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
    )
    chunks = sa.Table(
        "modelport_batch_chunks", meta,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("rows_in", sa.BigInteger, nullable=False),
        sa.Column("rejected", sa.BigInteger, nullable=False),
    )
    return meta, runs, chunks


_meta, runs_table, chunks_table = bookkeeping_tables()


class SqlSink(Sink):
    def __init__(self, url: str, table: str, *, mode: Mode = "replace",
                 key: Sequence[str] = (), state_schema: str | None = None) -> None:
        if mode not in MODES:
            raise ConfigurationError(f"unknown --mode {mode!r}; use one of {', '.join(MODES)}")
        if mode == "upsert" and not key:
            raise ConfigurationError("--mode upsert needs --key COLUMN (the row id to match on)")
        if not table or not all(c.isalnum() or c == "_" for c in table):
            raise ConfigurationError(
                f"--table {table!r}: use letters, digits and '_' only")
        if state_schema is not None and not all(c.isalnum() or c == "_" for c in state_schema):
            raise ConfigurationError(
                f"--state-schema {state_schema!r}: use letters, digits and '_' only")
        self.url = url
        self.table = table
        self.mode = mode
        self.key = list(key)
        self.state_schema = state_schema
        self._meta, self._runs, self._chunks = bookkeeping_tables(state_schema)
        self._client: sa.engine.Engine | None = None
        self._client_lock: threading.Lock | None = None

    @property
    def engine(self) -> sa.engine.Engine:
        if self._client is None:
            try:
                self._client = sa.create_engine(sql_engine_url(self.url), pool_pre_ping=True)
            except Exception as exc:
                raise ConfigurationError(
                    f"bad database URL {redact(self.url)!r}: {exc}") from None
        return self._client

    @property
    def _lock(self) -> threading.Lock:
        if self._client_lock is None:
            self._client_lock = threading.Lock()
        return self._client_lock

    @property
    def dialect(self) -> str:
        return str(self.engine.dialect.name)

    def staging_name(self, run_id: str) -> str:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
        return f"{self.table[:40]}__mp_{digest}"

    def _ensure_meta(self) -> None:
        if self.state_schema is not None:
            if self.dialect == "sqlite":
                raise ConfigurationError(
                    "--state-schema needs PostgreSQL or MySQL/MariaDB; SQLite has no schemas")
            create = "SCHEMA" if self.dialect == "postgresql" else "DATABASE"
            with self.engine.begin() as conn:
                conn.execute(sa.text(
                    f"CREATE {create} IF NOT EXISTS {self._q(self.state_schema)}"))
        try:
            self._meta.create_all(self.engine, checkfirst=True)
        except sa.exc.SQLAlchemyError:
            # lost a race with another process
            self._meta.create_all(self.engine, checkfirst=True)

    def _exists(self, name: str) -> bool:
        return bool(sa.inspect(self.engine).has_table(name))

    # ------------------------------------------------------------------ protocol
    def committed(self, run_id: str) -> dict[str, Any] | None:
        try:
            self._ensure_meta()
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(self._runs.c.summary).where(
                    self._runs.c.run_id == run_id)).first()
        except sa.exc.SQLAlchemyError as exc:
            raise _storage(exc, self.url) from None
        if row is None or row[0] is None:
            return None
        return dict(json.loads(row[0]))

    def open(self, run_id: str, *, resume: bool, meta: dict[str, Any]) -> Staged:
        try:
            self._ensure_meta()
            if self.mode == "create" and self._exists(self.table):
                raise ConflictError(
                    f"table {self.table!r} already exists and --mode is create; use --mode "
                    "replace, append or upsert")
            staging = self.staging_name(run_id)
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(self._runs.c.meta).where(
                    self._runs.c.run_id == run_id)).first()
                if resume and row is not None:
                    done = {int(r[0]): (int(r[1]), int(r[2])) for r in conn.execute(
                        sa.select(self._chunks.c.chunk, self._chunks.c.rows_in,
                                  self._chunks.c.rejected).where(
                            self._chunks.c.run_id == run_id))}
                    return Staged(dict(json.loads(row[0])), done)
                conn.execute(self._chunks.delete().where(self._chunks.c.run_id == run_id))
                conn.execute(self._runs.delete().where(self._runs.c.run_id == run_id))
                conn.execute(self._runs.insert().values(
                    run_id=run_id, target=self.table, meta=json.dumps(meta), summary=None))
            if self._exists(staging):
                with self.engine.begin() as conn:
                    conn.execute(sa.text(f"DROP TABLE {self._q(staging)}"))
        except sa.exc.SQLAlchemyError as exc:
            raise _storage(exc, self.url) from None
        return Staged(meta, {})

    def write(self, run_id: str, index: int, table: pa.Table, counts: tuple[int, int]) -> None:
        table = lists_as_json(table)  # multi-element outputs as JSON text
        staging = self._staging_table(run_id, table.schema)
        try:
            with self.engine.begin() as conn:
                seen = conn.execute(sa.select(self._chunks.c.chunk).where(
                    self._chunks.c.run_id == run_id, self._chunks.c.chunk == index)).first()
                if seen is not None:
                    return
                if table.num_rows and self.dialect == "postgresql":
                    self._copy(conn, staging, table)
                elif table.num_rows:
                    conn.execute(staging.insert(), table.to_pylist())
                conn.execute(self._chunks.insert().values(
                    run_id=run_id, chunk=index, rows_in=counts[0], rejected=counts[1]))
        except sa.exc.SQLAlchemyError as exc:
            raise _storage(exc, self.url) from None

    def _copy(self, conn: sa.Connection, staging: sa.Table, table: pa.Table) -> None:
        """PostgreSQL's COPY: several times faster than INSERTs, in the same transaction."""
        driver = conn.connection.driver_connection
        names = ", ".join(self._q(n) for n in table.column_names)
        statement = f"COPY {self._q(staging.name)} ({names}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
                copy.write_row(row)

    def _staging_table(self, run_id: str, schema: pa.Schema) -> sa.Table:
        name = self.staging_name(run_id)
        table = self._table(name, schema)
        with self._lock:
            try:
                table.create(self.engine, checkfirst=True)
            except sa.exc.SQLAlchemyError:
                if not self._exists(name):  # not merely another process creating it first
                    raise
        return table

    def _table(self, name: str, schema: pa.Schema) -> sa.Table:
        columns = [sa.Column(f.name, _sql_type(f.type, key=f.name in self.key),
                             primary_key=f.name in self.key, autoincrement=False,
                             nullable=f.name not in self.key)
                   for f in schema]
        return sa.Table(name, sa.MetaData(), *columns)

    def commit(self, run_id: str, summary: dict[str, Any]) -> None:
        staging = self.staging_name(run_id)
        target = self.table
        try:
            if not self._exists(staging):
                raise StorageError(
                    f"the staging table of run {run_id} is gone; rerun without --resume")
            src = sa.Table(staging, sa.MetaData(), autoload_with=self.engine)
            record = (self._runs.update().where(self._runs.c.run_id == run_id)
                      .values(summary=json.dumps(summary)))
            forget = self._chunks.delete().where(self._chunks.c.run_id == run_id)
            if self.mode in ("create", "replace"):
                self._swap(staging, target, [record, forget])
                return
            with self.engine.begin() as conn:
                if not self._exists(target):
                    conn.execute(sa.text(
                        f"ALTER TABLE {self._q(staging)} RENAME TO {self._q(target)}"))
                else:
                    dst = sa.Table(target, sa.MetaData(), autoload_with=conn)
                    conn.execute(self._merge(src, dst))
                    if self.dialect != "mysql":
                        conn.execute(sa.text(f"DROP TABLE {self._q(staging)}"))
                conn.execute(record)
                conn.execute(forget)
            if self.dialect == "mysql" and self._exists(staging):
                with self.engine.begin() as conn:
                    conn.execute(sa.text(f"DROP TABLE {self._q(staging)}"))
        except sa.exc.SQLAlchemyError as exc:
            raise _storage(exc, self.url) from None

    def _swap(self, staging: str, target: str, after: list[Any]) -> None:
        old = f"{target[:40]}__mp_old"
        if self.dialect == "mysql":
            with self.engine.begin() as conn:
                if self._exists(target):
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {self._q(old)}"))
                    conn.execute(sa.text(  # one atomic statement: no moment without a table
                        f"RENAME TABLE {self._q(target)} TO {self._q(old)}, "
                        f"{self._q(staging)} TO {self._q(target)}"))
                else:
                    conn.execute(sa.text(f"RENAME TABLE {self._q(staging)} TO {self._q(target)}"))
                for stmt in after:
                    conn.execute(stmt)
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {self._q(old)}"))
            return
        with self.engine.begin() as conn:  # transactional DDL: one atomic switch
            if self.mode == "create" and self._exists(target):
                raise ConflictError(f"table {target!r} appeared while the run was staging")
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self._q(target)}"))
            conn.execute(sa.text(f"ALTER TABLE {self._q(staging)} RENAME TO {self._q(target)}"))
            if self.dialect == "postgresql" and self.key:
                # the primary key's index keeps the staging name; give it the table's
                conn.execute(sa.text(
                    f"ALTER INDEX IF EXISTS {self._q(staging + '_pkey')} "
                    f"RENAME TO {self._q(target[:58] + '_pkey')}"))
            for stmt in after:
                conn.execute(stmt)

    def _merge(self, src: sa.Table, dst: sa.Table) -> Any:
        names = [c.name for c in src.columns]
        missing = [n for n in names if n not in dst.c]
        if missing:
            raise ConfigurationError(
                f"table {dst.name!r} has no column(s) {missing}; use --mode replace or another "
                "table")
        select = sa.select(*[src.c[n] for n in names])
        if self.mode == "append":
            return dst.insert().from_select(names, select)
        updates = [n for n in names if n not in self.key]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg = pg_insert(dst).from_select(names, select)
            return pg.on_conflict_do_update(index_elements=self.key,
                                            set_={n: pg.excluded[n] for n in updates})
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as lite_insert

            lite = lite_insert(dst).from_select(names, select.where(sa.true()))
            return lite.on_conflict_do_update(index_elements=self.key,
                                              set_={n: lite.excluded[n] for n in updates})
        if self.dialect == "mysql":
            from sqlalchemy.dialects.mysql import insert as my_insert

            my = my_insert(dst).from_select(names, select)
            return my.on_duplicate_key_update({n: my.inserted[n] for n in updates})
        raise ConfigurationError(f"--mode upsert is not supported on {self.dialect}")

    def _q(self, name: str) -> str:
        return str(self.engine.dialect.identifier_preparer.quote(name))

    def close(self) -> None:
        if self._client is not None:
            self._client.dispose()
            self._client = None

    def describe(self) -> str:
        return f"table {self.table} on {redact(self.url)} ({self.mode})"


def _sql_type(dtype: pa.DataType, *, key: bool) -> Any:
    if pa.types.is_boolean(dtype):
        return sa.Boolean()
    if pa.types.is_integer(dtype):
        return sa.BigInteger()
    if pa.types.is_floating(dtype):
        return sa.Float(precision=53)
    if pa.types.is_timestamp(dtype):
        return sa.DateTime(timezone=dtype.tz is not None)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return sa.String(255) if key else sa.Text()
    raise ConfigurationError(
        f"cannot store Arrow type {dtype} in SQL; keep only scalar columns for SQL outputs")


def _storage(exc: sa.exc.SQLAlchemyError, url: str) -> StorageError:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return StorageError(f"database {redact(url)} failed: {detail}")
