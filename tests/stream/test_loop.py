"""``StreamLoop`` logic with in-memory endpoints: ordering, dead letters, retries, metrics.

The brokers are real in the delivery tests; here the source and sink are lists so that each
decision of the loop can be checked on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from modelport.bundle.model import load_bundle
from modelport.core.batch import Batch, Result
from modelport.core.runner import Runner
from modelport.errors import ConfigurationError
from modelport.stream import Backoff, Message, Output, SinkError, StreamLoop, StreamMetrics
from modelport.stream.loop import StreamOptions
from tests.stream.conftest import record  # type: ignore[import-not-found]


class ListSource:
    name = "list"

    def __init__(self, messages: Sequence[Message], journal: list[str]) -> None:
        self.pending = list(messages)
        self.committed: list[Message] = []
        self.journal = journal
        self.closed = False

    def start(self, on_revoke: Any = None) -> None:
        pass

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        out, self.pending = self.pending[:max_messages], self.pending[max_messages:]
        return out

    def commit(self, messages: Sequence[Message]) -> None:
        self.journal.append(f"commit {len(messages)}")
        self.committed.extend(messages)

    def lag(self) -> dict[tuple[str, int], int]:
        return {("in", 0): len(self.pending)}

    def close(self) -> None:
        self.closed = True


class ListSink:
    name = "list"

    def __init__(self, journal: list[str], failures: Sequence[SinkError] = ()) -> None:
        self.outputs: list[Output] = []
        self.journal = journal
        self.failures = list(failures)

    def start(self) -> None:
        pass

    def write(self, outputs: Sequence[Output]) -> None:
        if self.failures:
            self.journal.append("write failed")
            raise self.failures.pop(0)
        self.journal.append(f"write {len(outputs)}")
        self.outputs.extend(outputs)

    def close(self) -> None:
        pass


class FailsOnHugeF0:
    """Wraps a predictor; any batch containing f0 > 1000 raises, like a model bug would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict(self, batch: Batch) -> Result:
        if (batch.column("f0") > 1000).any():
            raise ValueError("f0 out of range")
        return self.inner.predict(batch)  # type: ignore[no-any-return]


def _msg(offset: int, value: Any, key: bytes | None = None) -> Message:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return Message("in", 0, offset, key if key is not None else f"k{offset}".encode(), raw)


@pytest.fixture
def runner(classifier_bundle: Path) -> Runner:
    return Runner(load_bundle(classifier_bundle))


def test_outputs_are_written_before_the_commit_and_in_one_prediction_call(
    runner: Runner
) -> None:
    journal: list[str] = []
    source = ListSource([_msg(i, record(i)) for i in range(10)], journal)
    sink = ListSink(journal)
    loop = StreamLoop(runner, source, sink, options=StreamOptions(passthrough=("id",)))
    report = loop.run_once()
    assert (report.messages, report.outputs, report.dead_letters) == (10, 10, 0)
    assert journal == ["write 10", "commit 10"]
    assert runner.calls == 1
    assert [o.record["id"] for o in sink.outputs if o.record] == list(range(10))
    assert runner.model.predict([{k: v for k, v in record(3).items() if k != "id"}])[0] == \
        sink.outputs[3].record["label"]  # type: ignore[index]


def test_a_message_with_a_list_gets_one_output_per_record(runner: Runner) -> None:
    journal: list[str] = []
    sink = ListSink(journal)
    loop = StreamLoop(runner, ListSource([_msg(5, [record(1), record(2), record(3)])], journal),
                      sink)
    loop.run_once()
    records = [o.record for o in sink.outputs]
    assert [r["input_index"] for r in records if r] == [0, 1, 2]
    assert [r["request_id"] for r in records if r] == ["in/0/5", "in/0/5#1", "in/0/5#2"]
    assert {o.key for o in sink.outputs} == {b"k5"}


def test_bad_messages_become_dead_letters_and_the_rest_still_predict_together(
    runner: Runner
) -> None:
    runner.predictor = FailsOnHugeF0(runner.predictor)  # type: ignore[assignment]
    journal: list[str] = []
    messages = [_msg(i, record(i)) for i in range(6)]
    messages[1] = _msg(1, b"[1, 2")
    messages[2] = _msg(2, {**record(2), "f3": "abc"})
    messages[3] = _msg(3, {**record(3), "f0": 5000.0})
    messages[4] = _msg(4, [])
    source = ListSource(messages, journal)
    sink = ListSink(journal)
    registry = CollectorRegistry()
    loop = StreamLoop(runner, source, sink, dead_letter_topic="in.dlq",
                      metrics=StreamMetrics(registry))
    report = loop.run_once()
    assert (report.outputs, report.dead_letters) == (2, 4)
    assert len(source.committed) == 6  # dead letters are done too: the stream moves on
    dead = {o.source.offset: dict(o.headers) for o in sink.outputs if o.dead_letter}
    assert {k: v["error"] for k, v in dead.items()} == {
        1: b"malformed", 2: b"invalid-input", 3: b"prediction-failed", 4: b"malformed"}
    assert b"f3" in dead[2]["error-message"]
    assert all(o.topic == "in.dlq" for o in sink.outputs if o.dead_letter)
    assert dead[3]["source-offset"] == b"3" and dead[3]["source-topic"] == b"in"
    value = registry.get_sample_value
    assert value("modelport_stream_dead_letters_total", {"reason": "malformed"}) == 2
    assert value("modelport_stream_dead_letters_total", {"reason": "prediction-failed"}) == 1
    assert value("modelport_stream_messages_in_total", {"topic": "in"}) == 6
    assert value("modelport_stream_messages_out_total") == 2
    assert value("modelport_stream_batch_size_count") == 1


def test_transient_sink_errors_are_retried_with_backoff_before_the_commit(
    runner: Runner
) -> None:
    journal: list[str] = []
    sleeps: list[float] = []
    sink = ListSink(journal, failures=[SinkError("down"), SinkError("still down")])
    loop = StreamLoop(runner, ListSource([_msg(0, record(0))], journal), sink,
                      options=StreamOptions(backoff=Backoff(initial_s=0.5, max_s=0.8)),
                      sleep=sleeps.append)
    loop.run_once()
    assert journal == ["write failed", "write failed", "write 1", "commit 1"]
    assert sleeps == [0.5, 0.8]


def test_a_permanent_sink_error_stops_the_worker_without_committing(runner: Runner) -> None:
    journal: list[str] = []
    source = ListSource([_msg(0, record(0))], journal)
    sink = ListSink(journal, failures=[SinkError("table is read-only", transient=False)])
    with pytest.raises(SinkError, match="read-only"):
        StreamLoop(runner, source, sink).run_once()
    assert source.committed == []


def test_stop_finishes_the_batch_in_flight_then_closes_the_source(runner: Runner) -> None:
    journal: list[str] = []

    class StopsWhilePolling(ListSource):
        def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
            loop.stop()  # SIGTERM arrives while this batch is being read
            return super().poll(max_messages, timeout_s)

    source = StopsWhilePolling([_msg(i, record(i)) for i in range(5)], journal)
    loop = StreamLoop(runner, source, ListSink(journal), options=StreamOptions(max_batch=3))
    totals = loop.run()
    assert journal == ["write 3", "commit 3"]
    assert totals.messages == 3 and source.closed


def test_exactly_once_needs_a_transactional_sink(runner: Runner) -> None:
    journal: list[str] = []
    with pytest.raises(ConfigurationError, match="exactly-once"):
        StreamLoop(runner, ListSource([], journal), ListSink(journal),
                   options=StreamOptions(exactly_once=True))


def test_passthrough_fields_may_not_shadow_output_fields(runner: Runner) -> None:
    journal: list[str] = []
    with pytest.raises(ConfigurationError, match="label"):
        StreamLoop(runner, ListSource([], journal), ListSink(journal),
                   options=StreamOptions(passthrough=("label",)))
