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

#: the run a row came from: its prediction id is <run_id>-<row>
RUN = "regexp_replace(prediction_id, '-[0-9]+$', '')"


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
    assert {p.rsplit("-", 1)[0] for p in out["prediction_id"]} == {summary.run_id}
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
    assert {p.rsplit("-", 1)[0] for p in out.loc[out["id"] < 10, "prediction_id"]} == {
        "upsert-2"}
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


MARIADB_URL = "mysql://root@127.0.0.1:3306/test"


def test_mariadb_query_in_mariadb_table_out_replace_then_upsert(
        classifier_bundle: Path, home: Path) -> None:
    import uuid

    table = f"mpt_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/test")
    try:
        frame(120).to_sql(f"{table}_in", engine, index=False)
        spec = JobSpec(ref=str(classifier_bundle), input=MARIADB_URL,
                       query=f"SELECT * FROM {table}_in ORDER BY id", output=MARIADB_URL,
                       table=table, keep=("id",), key=("id",), chunk_rows=50)
        first = run_job(spec, **QUIET)
        second = run_job(spec.with_changes(run_id="replaced"), **QUIET)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                f"SELECT id, {RUN} FROM {table} ORDER BY id")).all()
        assert [r[0] for r in rows] == list(range(120))
        assert {r[1] for r in rows} == {"replaced"} and first.run_id != "replaced"
        assert second.rows_out == 120
        with engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {table}_in WHERE id >= 100"))
        run_job(spec.with_changes(mode="upsert", run_id="upserted"), **QUIET)
        with engine.connect() as conn:
            runs = dict(conn.execute(sa.text(
                f"SELECT {RUN}, count(*) FROM {table} GROUP BY {RUN}")).all())
        assert runs == {"upserted": 100, "replaced": 20}
    finally:
        with engine.begin() as conn:
            names = [r[0] for r in conn.execute(sa.text("SHOW TABLES LIKE :p"),
                                                {"p": f"{table}%"})]
            for name in names:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS `{name}`"))
            if sa.inspect(conn).has_table("modelport_batch_runs"):
                conn.execute(sa.text("DELETE FROM modelport_batch_runs WHERE target LIKE :p"),
                             {"p": f"{table}%"})
        engine.dispose()
