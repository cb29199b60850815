"""``modelport log`` and ``modelport feedback`` on the command line: formats, files, tables and
label topics, and one ``error:`` line for each user mistake."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import modelport.log as ml
from modelport.cli.main import main
from modelport.log import PredictionLog
from modelport.log.delta import DeltaStore
from modelport.log.rows import row_ids

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def logged(modelport_home: Path, churn_bundle: Path, make_events: Any) -> list[str]:
    """A registry holding churn:1 and a log of 12 of its predictions; their ids."""
    from modelport.registry import Registry
    from modelport.settings import Settings

    with Registry.from_settings(Settings.from_env()) as reg:
        reg.register(churn_bundle)
    events = make_events([1, 5, 6])
    plog = PredictionLog([DeltaStore(str(modelport_home / "log"))])
    for e in events:
        plog(e)
    plog.flush()
    return [i for e in events for i in row_ids(e)]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_query_formats_and_outputs(logged: list[str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT prediction_id, prediction, inputs FROM predictions ORDER BY prediction_id"
    code, out, _ = run(capsys, "log", "query", sql, "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(r["prediction_id"] for r in rows) == sorted(logged)
    assert set(rows[0]["inputs"]) == {"tenure", "spend", "calls"}
    code, out, _ = run(capsys, "log", "query", sql, "--format", "csv")
    frame = pd.read_csv(pd.io.common.StringIO(out))
    assert list(frame.columns) == ["prediction_id", "prediction", "inputs"] and len(frame) == 12
    assert json.loads(frame["inputs"][0])["tenure"] is not None  # nested values as JSON text
    target = tmp_path / "out.parquet"
    assert run(capsys, "log", "query", sql, "--format", "parquet", "--output", str(target))[0] == 0
    assert pq.read_table(target).num_rows == 12
    code, out, _ = run(capsys, "log", "query", "SELECT count(*) AS n FROM predictions")
    assert code == 0 and "12" in out and out.splitlines()[0].strip() == "N"


@pytest.mark.parametrize(("args", "words"), [
    (["log", "query", "SELECT nope FROM labeled"], "rerun 'modelport log query'"),
    (["log", "query", "SELECT 1", "--format", "parquet"], "add --output FILE"),
    (["log", "query", "SELECT 1", "--since", "last tuesday"], "ISO 8601"),
    (["log", "metrics", "churn", "--by", "colour"], "cannot group by colour"),
    (["log", "metrics", "fraud"], "no predictions of model 'fraud'"),
    (["log", "compact", "--retention", "forever"], "30d"),
    (["feedback", "send", "p1", "--label", "7", "--model", "churn"], "not a class"),
    (["feedback", "send", "p1", "--label", "1", "--model", "nosuch"], "not in the registry"),
    (["feedback", "load"], "FILE or --input"),
    (["feedback", "consume", "--source", "nats://x/y"], "kafka://host:port/topic"),
])
def test_mistakes_get_one_error_line(logged: list[str], args: list[str], words: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *args)
    assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert words in err


def test_tail_metrics_compact_and_models(logged: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "log", "tail", "churn", "--no-follow", "-n", "3")
    assert code == 0 and len(out.splitlines()) == 3
    assert {json.loads(line)["prediction_id"] for line in out.splitlines()} <= set(logged)
    code, out, _ = run(capsys, "feedback", "send", logged[0], "--label", "1", "--model", "churn")
    assert code == 0 and "stored 1" in out
    code, out, _ = run(capsys, "log", "metrics", "churn", "--window", "1h", "--json")
    metrics = json.loads(out)
    assert code == 0 and metrics[0]["labeled"] == 1 and metrics[0]["predictions"] == 12
    code, out, _ = run(capsys, "log", "compact", "--retention", "30d", "--json")
    assert code == 0 and {r["table"] for r in json.loads(out)} == {"predictions/churn",
                                                                  "feedback"}
    code, out, _ = run(capsys, "log", "models", "--json")
    assert json.loads(out)[0]["model"] == "churn" and json.loads(out)[0]["predictions"] == 12


def test_feedback_load_from_files_and_a_table(logged: list[str], tmp_path: Path,
                                              modelport_home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"prediction_id": logged[:3], "label": [1, 0, "maybe"]}).to_csv(bad, index=False)
    code, _, err = run(capsys, "feedback", "load", str(bad), "--model", "churn")
    assert code == 3 and "row 2" in err and "label" in err and "nothing was stored" in err
    good = tmp_path / "labels.parquet"
    pd.DataFrame({"prediction_id": logged[:4], "label": [1, 0, 1, 0]}).to_parquet(good)
    assert run(capsys, "feedback", "load", str(good), "--model", "churn")[0] == 0
    table = f"labels_{uuid.uuid4().hex[:8]}"
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    pd.DataFrame({"prediction_id": logged[4:8], "label": [1, 1, 0, 0]}).to_sql(
        table, engine, index=False)
    try:
        code, out, _ = run(capsys, "feedback", "load", "--input", PG_URL, "--table", table,
                           "--model", "churn")
    finally:
        with engine.begin() as con:
            con.execute(sa.text(f'DROP TABLE "{table}"'))
        engine.dispose()
    assert code == 0 and "stored 4" in out
    labeled = ml.read(model="churn", labeled=True,
                      store=DeltaStore(str(modelport_home / "log"))).to_pylist()
    assert sum(r["label"] is not None for r in labeled) == 8


def test_feedback_consume_from_a_redis_stream(logged: list[str], modelport_home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import redis

    stream = f"labels-{uuid.uuid4().hex[:8]}"
    client = redis.Redis()
    try:
        client.xadd(stream, {"value": json.dumps({"prediction_id": logged[0], "label": 1})})
        client.xadd(stream, {"prediction_id": logged[1], "label": "0"})  # fields as an item
        client.xadd(stream, {"value": "not json"})
        code, out, _ = run(capsys, "feedback", "consume", "--source",
                           f"redis://127.0.0.1:6379/{stream}", "--idle-exit", "1", "--json",
                           "--model", "churn")
        assert code == 0 and json.loads(out) == {"messages": 3, "stored": 2, "invalid": 1}
        pending = client.xpending(stream, "modelport-feedback")
        assert pending["pending"] == 0  # acknowledged once stored
    finally:
        client.delete(stream)
        client.close()
    labels = {r["prediction_id"]: r["label"] for r in ml.read(
        model="churn", labeled=True, store=DeltaStore(str(modelport_home / "log"))).to_pylist()}
    assert labels[logged[0]] == 1 and labels[logged[1]] == 0
