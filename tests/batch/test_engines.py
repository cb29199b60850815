"""The same job on Dask (LocalCluster) and Spark (local mode) gives the local engine's output; and
``modelport.spark.predict_udf`` scores inside a user's own Spark job."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import modelport
from modelport.batch import JobSpec, run_job
from modelport.batch.progress import Progress

from .conftest import FEATURES, frame, write_parquet

QUIET = {"progress": Progress(enabled=False)}


def _run(bundle: Path, tmp_path: Path, engine: str, **kw: Any) -> Any:
    data = frame(900)
    data.loc[[7, 500], "f3"] = np.nan  # stored as nulls: the signature rejects these rows
    write_parquet(tmp_path / "in.parquet", data)
    spec = JobSpec(ref=str(bundle), input=str(tmp_path / "in.parquet"),
                   output=str(tmp_path / f"out-{engine}"), keep=("id",), chunk_rows=200,
                   engine=engine, workers=2, run_id=f"run-{engine}", **kw)
    return run_job(spec, **QUIET), pq.read_table(tmp_path / f"out-{engine}")


def _same_as_local(bundle: Path, tmp_path: Path, engine: str) -> None:
    summary, table = _run(bundle, tmp_path, engine)
    _, local = _run(bundle, tmp_path, "local")
    assert (summary.rows_in, summary.rows_out, summary.rejected) == (900, 898, 2)
    assert summary.engine.startswith(engine)
    drop = ["prediction_id", "predicted_at"]
    assert table.drop_columns(drop).equals(local.drop_columns(drop))
    assert pq.read_table(summary.rejects)["id"].to_pylist() == [7, 500]


@pytest.mark.slow
def test_dask_local_cluster_matches_local(classifier_bundle: Path, tmp_path: Path,
                                          home: Path) -> None:
    _same_as_local(classifier_bundle, tmp_path, "dask")


@pytest.mark.slow
def test_dask_scheduler_address(classifier_bundle: Path, tmp_path: Path, home: Path) -> None:
    """A user's own Dask cluster, reached by its scheduler address, gives the same output."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        summary, table = _run(classifier_bundle, tmp_path, "dask",
                              engine_address=cluster.scheduler_address)
    _, local = _run(classifier_bundle, tmp_path, "local")
    assert cluster.scheduler_address in summary.engine
    drop = ["prediction_id", "predicted_at"]
    assert table.drop_columns(drop).equals(local.drop_columns(drop))


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("modelport-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()


@pytest.mark.slow
def test_spark_engine_matches_local(classifier_bundle: Path, tmp_path: Path, home: Path,
                                    spark: Any) -> None:
    _same_as_local(classifier_bundle, tmp_path, "spark")


@pytest.mark.slow
# PySpark 4.3 warns that it does not fully support pandas 3 (installed here) whenever a pandas
# UDF is created; the test below proves the UDF works with it
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_predict_udf_in_a_users_spark_job(classifier_bundle: Path, spark: Any) -> None:
    from pyspark.sql import functions as F

    from modelport.spark import predict_udf

    data = frame(300)
    df = spark.createDataFrame([tuple(r) for r in data.itertuples(index=False)],
                               schema="id long, f0 double, f1 double, f2 double, f3 double")
    score = predict_udf(str(classifier_bundle))
    scored = df.withColumn("s", score(F.struct(*df.columns)))
    assert scored.schema["s"].dataType.fieldNames() == [
        "prediction_id", "prediction", "probability_0", "probability_1", "model", "version",
        "predicted_at"]  # the tabular form of the prediction schema
    rows = (scored.select("id", "s.prediction", "s.probability_1", "s.prediction_id",
                          "s.version").orderBy("id").collect())
    assert len({r["prediction_id"] for r in rows}) == 300
    model = modelport.load(str(classifier_bundle))
    assert [r["id"] for r in rows] == list(range(300))
    np.testing.assert_array_equal([r["prediction"] for r in rows],
                                  model.predict(data[FEATURES]))
    np.testing.assert_allclose([r["probability_1"] for r in rows],
                               model.predict_proba(data[FEATURES])[:, 1], atol=1e-5)
