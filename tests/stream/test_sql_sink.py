"""``SqlSink`` on real PostgreSQL and SQLite: upserts keep one row per input."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelport.stream import Message, MessageCodec, RefusedOutputs, SinkError
from modelport.stream.sql import SqlSink
from tests.stream.conftest import free_port, unique  # type: ignore[import-not-found]

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ops.db'}"
        return
    yield PG_URL


def _outputs(n: int, *, offset0: int = 0, label_shift: int = 0) -> list[Any]:
    codec = MessageCodec(model="fraud", version=2, passthrough=("customer",))
    out = []
    for i in range(n):
        msg = Message("events", i % 2, offset0 + i, f"k{i}".encode(), b"{}")
        out.append(codec.encode(msg, 0, {"customer": i % 3},
                                {"prediction": (i + label_shift) % 2,
                                 "probabilities": {"0": 0.25, "1": 0.75}},
                                predicted_at="2026-12-04T17:03:11.123456Z"))
    return out


def _rows(url: str, table: str) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY prediction_id")))
    finally:
        engine.dispose()


def _drop(url: str, table: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def test_writing_a_batch_twice_leaves_one_row_per_input(database: str) -> None:
    table = unique("preds").replace("-", "_")
    sink = SqlSink(database, table)
    try:
        sink.start()
        sink.write(_outputs(10))
        sink.write(_outputs(10, label_shift=1))  # a redelivered batch, after a crash
        sink.close()
        rows = _rows(database, table)
        assert len(rows) == 10
        first = rows[0]._mapping
        assert list(first) == ["customer", "prediction_id", "prediction", "probability_0",
                               "probability_1", "model", "version", "predicted_at"]
        assert first["prediction_id"] == "events-0-0"
        assert first["prediction"] == 1  # the second write replaced the first
        assert first["model"] == "fraud" and first["version"] == 2
        assert first["customer"] == 0
        assert (first["probability_0"], first["probability_1"]) == (0.25, 0.75)
        stamp = first["predicted_at"]
        if isinstance(stamp, str):  # SQLite keeps times as text
            stamp = datetime.fromisoformat(stamp)
        assert (stamp.year, stamp.microsecond) == (2026, 123456)
    finally:
        _drop(database, table)


def test_a_business_key_keeps_the_latest_prediction_per_key(database: str) -> None:
    table = unique("latest").replace("-", "_")
    sink = SqlSink(database, table, key_columns=("customer",))
    try:
        sink.start()
        sink.write(_outputs(9))
        sink.write(_outputs(3, offset0=100))
        rows = _rows(database, table)
        assert sorted(r._mapping["customer"] for r in rows) == [0, 1, 2]
        assert sorted(r._mapping["prediction_id"] for r in rows) == [
            "events-0-100", "events-0-102", "events-1-101"]
        sink.close()
    finally:
        _drop(database, table)


def test_an_existing_table_is_reused() -> None:
    table = unique("again").replace("-", "_")
    try:
        first = SqlSink(PG_URL, table)
        first.start()
        first.write(_outputs(3))
        first.close()
        second = SqlSink(PG_URL, table)
        second.start()
        assert second.table is not None  # reflected, not created again
        second.write(_outputs(5))
        second.close()
        assert len(_rows(PG_URL, table)) == 5
    finally:
        _drop(PG_URL, table)


def test_an_unreachable_database_is_a_transient_sink_error() -> None:
    port = free_port()  # nothing listens here
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    sink = SqlSink(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", "t")
    with pytest.raises(SinkError) as info:
        sink.start()
    assert info.value.transient


def test_a_key_column_missing_from_the_outputs_is_explained(tmp_path: Path) -> None:
    from modelport.errors import ConfigurationError

    sink = SqlSink(f"sqlite:///{tmp_path / 'x.db'}", "t", key_columns=("order_id",))
    sink.start()
    with pytest.raises(ConfigurationError, match="--keep"):
        sink.write(_outputs(1))


def test_rows_the_database_refuses_are_named_and_the_others_stored(database: str) -> None:
    table = unique("refused").replace("-", "_")
    sink = SqlSink(database, table, key_columns=("customer",))
    outputs = _outputs(9)
    for bad in (outputs[2], outputs[7]):  # no business key: the primary key refuses NULL
        assert bad.record is not None
        bad.record = {**bad.record, "customer": None}
    try:
        sink.start()
        sink.write(outputs[:1])  # creates the table
        with pytest.raises(RefusedOutputs) as refused:
            sink.write(outputs)
        assert [o.source.offset for o, _ in refused.value.refused] == [2, 7]
        assert all(reason for _, reason in refused.value.refused)
        assert not refused.value.transient
        sink.close()
        assert {row._mapping["customer"] for row in _rows(database, table)} == {0, 1, 2}
    finally:
        _drop(database, table)


def test_a_table_does_not_take_dead_letters(database: str) -> None:
    from modelport.errors import ConfigurationError

    codec = MessageCodec(model="fraud", version=2, dead_letter_topic="events.dlq")
    letter = codec.dead_letter(Message("events", 0, 1, b"k", b"{"), "malformed", "not JSON")
    sink = SqlSink(database, unique("dl").replace("-", "_"))
    sink.start()
    with pytest.raises(ConfigurationError, match="dead-letter topic"):
        sink.write([letter])
    sink.close()
