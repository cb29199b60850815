"""SQL in and out on a real PostgreSQL (and SQLite): a staging table, one-transaction swap."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from modelport.batch import JobSpec, run_job
from modelport.batch.progress import Progress
from modelport.errors import ConflictError

from .conftest import PG_URL, frame, write_parquet

QUIET = {"progress": Progress(enabled=False)}


def pg() -> sa.engine.Engine:
    return sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))


def read(table: str, url: str = PG_URL) -> pd.DataFrame:
    engine = pg() if url == PG_URL else sa.create_engine(url)
    with engine.connect() as conn:
        out = pd.read_sql(sa.text(f'SELECT * FROM "{table}" ORDER BY id'), conn)
    engine.dispose()
    return out


def test_postgres_query_in_postgres_table_out_replace_append_upsert(
        classifier_bundle: Path, pg_table: str, home: Path) -> None:
    source = f"{pg_table}_features"
    engine = pg()
    frame(250).to_sql(source, engine, index=False)
    engine.dispose()
    spec = JobSpec(ref=str(classifier_bundle), input=PG_URL,
                   query=f'SELECT * FROM "{source}" ORDER BY id', output=PG_URL,
                   table=pg_table, keep=("id",), chunk_rows=100)
    summary = run_job(spec, **QUIET)
    assert (summary.rows_in, summary.rows_out) == (250, 250)
    out = read(pg_table)
    assert out["id"].tolist() == list(range(250))
    assert set(out["run_id"]) == {summary.run_id}
    assert run_job(spec, **QUIET).noop

    with pytest.raises(ConflictError, match="already exists"):
        run_job(spec.with_changes(mode="create", run_id="create-again"), **QUIET)

    run_job(spec.with_changes(mode="append", run_id="appended"), **QUIET)
    assert len(read(pg_table)) == 500

    upsert_table = f"{pg_table}_up"
    up = spec.with_changes(table=upsert_table, mode="upsert", key=("id",))
    first = run_job(up, **QUIET)
    engine = pg()
    with engine.begin() as conn:
        conn.execute(sa.text(f'UPDATE "{source}" SET f0 = f0 + 100 WHERE id < 10'))
        conn.execute(sa.text(f'INSERT INTO "{source}" SELECT id + 1000, f0, f1, f2, f3 '
                             f'FROM "{source}" WHERE id < 5'))
    engine.dispose()
    second = run_job(up.with_changes(run_id="upsert-2"), **QUIET)
    out = read(upsert_table)
    assert len(out) == 255  # 250 updated or kept + 5 new keys
    assert set(out.loc[out["id"] < 10, "run_id"]) == {"upsert-2"}
    assert first.run_id != second.run_id
    # no staging tables are left behind
    engine = pg()
    names = sa.inspect(engine).get_table_names()
    engine.dispose()
    assert not [n for n in names if n.startswith(pg_table) and "__mp_" in n]


def test_sqlite_output_and_resume_checkpoints(classifier_bundle: Path, tmp_path: Path,
                                              home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(300))
    url = f"sqlite:///{tmp_path / 'out.db'}"
    spec = JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"), output=url,
                   table="scores", keep=("id",), chunk_rows=100, mode="upsert", key=("id",))
    summary = run_job(spec, **QUIET)
    assert summary.rows_out == 300
    out = read("scores", url)
    assert out["id"].tolist() == list(range(300))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        pk = sa.inspect(conn).get_pk_constraint("scores")["constrained_columns"]
        chunks = conn.execute(sa.text("SELECT count(*) FROM modelport_batch_chunks")).scalar()
    engine.dispose()
    assert pk == ["id"] and chunks == 0
