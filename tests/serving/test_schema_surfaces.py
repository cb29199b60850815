"""The schema test: one model through every surface, with ``--accelerate onnx`` and ``off``.

A regressor (native float64; ONNX Runtime computes in float32) and a classifier with string
classes go through ``modelport predict``, batch (Parquet, CSV, SQL), the stream worker (Redis
Streams in and out, and a SQL table), the REST simple route and V2 (metadata, JSON and binary
``/infer``, and gRPC). The output names and types must be the same on every surface of a kind
(tabular or record form) and the same with and without acceleration; values agree within the
stated tolerances.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import sqlalchemy as sa
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from conftest import Home, Server, free_port, launch

REDIS_URL = "redis://127.0.0.1:6379/0"
MODES = ("onnx", "off")
ROWS = 40
#: what the README states: values within 1e-4 relative, probabilities within 1e-4
VALUE_RTOL, PROBA_ATOL = 1e-4, 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    y_reg = x["a"] * 3e5 + x["b"] * 7.0
    y_clf = np.where(x["a"] + x["c"] > 0, "churn", "stay")
    home = Home(tmp_path_factory.mktemp("surfaces") / "home")
    home.register(HistGradientBoostingRegressor(max_iter=15).fit(x, y_reg), "reg", x.head(50))
    home.register(HistGradientBoostingClassifier(max_iter=10).fit(x, y_clf), "clf", x.head(50))
    data = x.tail(ROWS).reset_index(drop=True)
    data.insert(0, "customer", [f"c{i}" for i in range(ROWS)])
    return {"home": home, "data": data, "dir": home.path.parent}


@pytest.fixture(scope="module")
def servers(models: dict[str, Any]) -> Iterator[dict[str, Server]]:
    started = {}
    for mode in MODES:
        grpc_port = free_port()
        started[mode] = launch(models["home"], models["dir"], "reg", "clf", "--accelerate", mode,
                               "--poll-interval", "0", "--grpc-port", str(grpc_port))
        started[mode].grpc = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    yield started
    for server in started.values():
        server.stop()


def arrow_types(table: pa.Table) -> dict[str, str]:
    return {f.name: str(f.type) for f in table.schema}


def json_types(record: dict[str, Any]) -> dict[str, str]:
    return {k: type(v).__name__ if not isinstance(v, dict) else
            "{" + ",".join(f"{c}:{type(p).__name__}" for c, p in v.items()) + "}"
            for k, v in record.items()}


EXPECTED_TABULAR = {
    "reg": {"customer": "string", "prediction_id": "string", "prediction": "double",
            "model": "string", "version": "int64", "predicted_at": "timestamp[us, tz=UTC]"},
    "clf": {"customer": "string", "prediction_id": "string", "prediction": "string",
            "probability_churn": "double", "probability_stay": "double", "model": "string",
            "version": "int64", "predicted_at": "timestamp[us, tz=UTC]"},
}
EXPECTED_RECORD = {
    "reg": {"prediction_id": "str", "prediction": "float", "model": "str", "version": "int",
            "predicted_at": "str"},
    "clf": {"prediction_id": "str", "prediction": "str",
            "probabilities": "{churn:float,stay:float}", "model": "str", "version": "int",
            "predicted_at": "str"},
}


def _batch(models: dict[str, Any], name: str, mode: str, output: str, **kw: Any) -> Any:
    from modelport.batch import JobSpec, run_job
    from modelport.batch.progress import Progress
    from modelport.settings import Settings

    source = models["dir"] / "in.parquet"
    if not source.exists():
        models["data"].to_parquet(source)
    spec = JobSpec(ref=name, input=str(source), output=output, keep=("customer",),
                   accelerate=mode, **kw)  # type: ignore[arg-type]
    settings = Settings.from_env(models["home"].env)
    return run_job(spec, settings=settings, progress=Progress(enabled=False))


def test_tabular_surfaces_have_one_schema_accelerated_or_not(
        models: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport.cli.main import main

    for key, value in models["home"].env.items():
        if key.startswith("MODELPORT_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MODELPORT_REGISTRY_URL", raising=False)
    out = models["dir"] / "tabular"
    out.mkdir()
    for name in ("reg", "clf"):
        tables: dict[str, pa.Table] = {}
        for mode in MODES:
            summary = _batch(models, name, mode, str(out / f"{name}-{mode}"))
            assert summary.accelerated == (mode == "onnx")
            tables[f"parquet-{mode}"] = pq.read_table(out / f"{name}-{mode}")
            _batch(models, name, mode, str(out / f"{name}-{mode}.csv"))
            with (out / f"{name}-{mode}.csv").open() as fh:
                header = next(csv.reader(fh))
            assert header == list(EXPECTED_TABULAR[name])
            db = f"sqlite:///{out / f'{name}-{mode}.db'}"
            _batch(models, name, mode, db, table="scores")
            engine = sa.create_engine(db)
            columns = {c["name"]: type(c["type"]).__name__
                       for c in sa.inspect(engine).get_columns("scores")}
            engine.dispose()
            assert list(columns) == list(EXPECTED_TABULAR[name])
            tables[f"sql-{mode}"] = pa.table({"types": [json.dumps(columns)]})
            target = out / f"{name}-predict-{mode}.parquet"
            assert main(["predict", name, "-i", str(models["dir"] / "in.parquet"), "-o",
                         str(target), "--keep", "customer", "--accelerate", mode]) == 0
            tables[f"predict-{mode}"] = pq.read_table(target)
        keys = set()
        for key in ("parquet-onnx", "parquet-off", "predict-onnx", "predict-off"):
            types = arrow_types(tables[key])
            keys.add(types.pop("customer"))  # the input's own type, whatever it is
            assert types == {k: v for k, v in EXPECTED_TABULAR[name].items()
                             if k != "customer"}, key
            assert list(tables[key].column_names) == list(EXPECTED_TABULAR[name])
        assert len(keys) == 1
        assert tables["sql-onnx"].to_pylist() == tables["sql-off"].to_pylist()
        native, fast = tables["parquet-off"], tables["parquet-onnx"]
        if name == "reg":
            np.testing.assert_allclose(fast["prediction"].to_numpy(),
                                       native["prediction"].to_numpy(), rtol=VALUE_RTOL)
        else:
            assert fast["prediction"].to_pylist() == native["prediction"].to_pylist()
            np.testing.assert_allclose(fast["probability_churn"].to_numpy(),
                                       native["probability_churn"].to_numpy(), atol=PROBA_ATOL)


def test_rest_simple_and_v2_answer_in_the_same_types_accelerated_or_not(
        models: dict[str, Any], servers: dict[str, Server]) -> None:
    rows = models["data"].drop(columns=["customer"]).head(3)
    for name in ("reg", "clf"):
        seen: dict[str, Any] = {}
        for mode, server in servers.items():
            single = httpx.post(f"{server.url}/predict/{name}",
                                json=rows.iloc[0].to_dict()).json()
            assert json_types(single) == EXPECTED_RECORD[name], (mode, single)
            listed = httpx.post(f"{server.url}/predict/{name}",
                                json=rows.to_dict(orient="records")).json()
            expected = {k: v for k, v in EXPECTED_RECORD[name].items()
                        if k not in ("model", "version")}
            assert [json_types(p) for p in listed["predictions"]] == [expected] * 3
            meta = httpx.get(f"{server.url}/v2/models/{name}").json()
            declared = {o["name"]: o["datatype"] for o in meta["outputs"]}
            client = triton.InferenceServerClient(server.url.removeprefix("http://"))
            try:
                sent = {}
                for binary in (False, True):
                    inputs = []
                    for column in rows.columns:
                        tensor = triton.InferInput(column, [3], "FP64")
                        tensor.set_data_from_numpy(rows[column].to_numpy(np.float64),
                                                   binary_data=binary)
                        inputs.append(tensor)
                    outputs = [triton.InferRequestedOutput(n, binary_data=binary)
                               for n in declared]
                    result = client.infer(name, inputs, outputs=outputs)
                    sent = {o["name"]: o["datatype"] for o in
                            result.get_response()["outputs"]}
                    assert sent == declared, (mode, binary, sent, declared)
            finally:
                client.close()
            by_grpc = triton_grpc.InferenceServerClient(server.grpc)  # type: ignore[attr-defined]
            try:
                grpc_meta = by_grpc.get_model_metadata(name, as_json=True)
                assert {o["name"]: o["datatype"] for o in grpc_meta["outputs"]} == declared
                inputs = []
                for column in rows.columns:
                    tensor = triton_grpc.InferInput(column, [3], "FP64")
                    tensor.set_data_from_numpy(rows[column].to_numpy(np.float64))
                    inputs.append(tensor)
                answer = by_grpc.infer(name, inputs).get_response(as_json=True)
                assert {o["name"]: o["datatype"] for o in answer["outputs"]} == declared
            finally:
                by_grpc.close()
            seen[mode] = (json_types(single), declared)
        assert seen["onnx"] == seen["off"]
    assert seen["off"][1] == {"label": "BYTES", "probabilities": "FP64"}


class _ListSink:
    name = "list"

    def __init__(self) -> None:
        self.outputs: list[Any] = []

    def start(self) -> None:
        pass

    def write(self, outputs: Any) -> None:
        self.outputs.extend(outputs)

    def close(self) -> None:
        pass


def test_stream_messages_and_tables_have_one_schema_accelerated_or_not(
        models: dict[str, Any], tmp_path: Path) -> None:
    from modelport.core.runner import Runner, RunnerOptions
    from modelport.stream import StreamLoop, StreamOptions
    from modelport.stream.redis_streams import RedisStreamSink, RedisStreamSource
    from modelport.stream.sql import SqlSink

    client = redis.Redis.from_url(REDIS_URL)
    records = models["data"].to_dict(orient="records")
    created: list[str] = []
    try:
        for name in ("reg", "clf"):
            with models["home"].registry() as registry:
                model = registry.load(name)
            seen: dict[str, Any] = {}
            for mode in MODES:
                stream = f"schema-in-{name}-{mode}-{tmp_path.name}"
                out = f"schema-out-{name}-{mode}-{tmp_path.name}"
                created += [stream, out]
                pipe = client.pipeline(transaction=False)
                for record in records:  # plain fields, the usual Redis Streams style
                    pipe.xadd(stream, {k: str(v) for k, v in record.items()})
                pipe.execute()
                runner = Runner(model, RunnerOptions(accelerate=mode)).load()
                assert runner.accelerated == (mode == "onnx")
                source = RedisStreamSource(REDIS_URL, stream, "g", "c")
                table = SqlSink(f"sqlite:///{tmp_path / f'{name}-{mode}.db'}", "scores")
                sinks = {"redis": RedisStreamSink(REDIS_URL, out), "sql": table}
                for sink in sinks.values():
                    loop = StreamLoop(runner, source, sink,
                                      dead_letters=_ListSink(),  # type: ignore[arg-type]
                                      options=StreamOptions(passthrough=("customer",),
                                                            max_batch=ROWS))
                    source.start()
                    source._own_pending = False  # both sinks read the same entries again
                    source.client.xgroup_setid(stream, "g", "0")  # type: ignore[union-attr]
                    sink.start()
                    loop.run_once()
                    source.close()
                    sink.close()
                message = json.loads(client.xrange(out, count=1)[0][1][b"value"])
                engine = sa.create_engine(f"sqlite:///{tmp_path / f'{name}-{mode}.db'}")
                with engine.connect() as conn:
                    row = conn.execute(sa.text("SELECT * FROM scores LIMIT 1")).mappings().one()
                    count = conn.execute(sa.text("SELECT count(*) FROM scores")).scalar()
                engine.dispose()
                assert count == ROWS
                assert json_types(message) == {"customer": "str", **EXPECTED_RECORD[name]}
                assert list(row) == list(EXPECTED_TABULAR[name])
                seen[mode] = (json_types(message), [type(v).__name__ for v in row.values()])
            assert seen["onnx"] == seen["off"]
    finally:
        if created:
            client.delete(*created)
        client.close()
