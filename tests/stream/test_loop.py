"""``StreamLoop`` logic with in-memory endpoints: ordering, dead letters, retries, metrics.

The brokers are real in the delivery tests; here the source and sink are lists so that each
decision of the loop can be checked on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from modelport.bundle.model import load_bundle
from modelport.core.batch import Batch, Result
from modelport.core.runner import Runner
from modelport.errors import ConfigurationError
from modelport.stream import (
    Backoff,
    Message,
    Output,
    RefusedOutputs,
    SinkError,
    StreamLoop,
    StreamMetrics,
    fastcodec,
)
from modelport.stream import codec as codec_module
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
        sink.outputs[3].record["prediction"]  # type: ignore[index]
    assert sink.outputs[3].record["prediction_id"] == "in-0-3"  # type: ignore[index]


def test_the_compiled_reader_and_the_python_path_write_the_same_outputs(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fastcodec.COMPILED:
        pytest.skip("the compiled codec was not built (no C compiler)")
    messages = [_msg(i, record(i), key=None if i == 3 else f"k{i}".encode()) for i in range(20)]

    def run() -> tuple[list[bytes], bool]:
        sink = ListSink([])
        loop = StreamLoop(runner, ListSource(messages, []), sink,
                          options=StreamOptions(passthrough=("id", "absent")),
                          clock=lambda: 0.0)
        loop.codec.now = lambda: datetime(2026, 12, 4, tzinfo=UTC)  # one time in both runs
        taken = loop._rows.read([m.value for m in messages]) is not None
        loop.run_once()
        return [o.value for o in sink.outputs], taken

    compiled, taken = run()
    assert taken and len(compiled) == 20
    monkeypatch.setattr(fastcodec, "COMPILED", False)
    monkeypatch.setattr(codec_module, "fill", fastcodec.fill_python)
    python, taken = run()
    assert not taken
    assert compiled == python


def test_a_message_with_a_list_gets_one_output_per_record(runner: Runner) -> None:
    journal: list[str] = []
    sink = ListSink(journal)
    loop = StreamLoop(runner, ListSource([_msg(5, [record(1), record(2), record(3)])], journal),
                      sink)
    loop.run_once()
    records = [o.record for o in sink.outputs]
    assert [r["prediction_id"] for r in records if r] == ["in-0-5-0", "in-0-5-1", "in-0-5-2"]
    assert [dict(o.headers)["request-id"] for o in sink.outputs] == [
        b"in/0/5", b"in/0/5#1", b"in/0/5#2"]
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


class RefusesOffsets(ListSink):
    """Stores every output except those of the given input offsets, which it refuses for good
    (as a database refuses a value too long for its column)."""

    def __init__(self, journal: list[str], refuse: set[int]) -> None:
        super().__init__(journal)
        self.refuse = refuse

    def write(self, outputs: Sequence[Output]) -> None:
        refused = [(o, "value too long for type character varying(255)") for o in outputs
                   if o.source.offset in self.refuse]
        self.journal.append(f"write {len(outputs) - len(refused)}")
        self.outputs.extend(o for o in outputs if o.source.offset not in self.refuse)
        if refused:
            raise RefusedOutputs("refused", refused)


def test_outputs_a_sink_refuses_for_good_become_dead_letters_and_the_stream_moves_on(
    runner: Runner
) -> None:
    journal: list[str] = []
    source = ListSource([_msg(i, record(i)) for i in range(5)], journal)
    sink, dead_letters = RefusesOffsets(journal, {1, 3}), ListSink(journal)
    loop = StreamLoop(runner, source, sink, dead_letters=dead_letters,
                      dead_letter_topic="in.dlq")
    report = loop.run_once()
    assert (report.outputs, report.dead_letters) == (3, 2)
    assert journal == ["write 3", "write 2", "commit 5"]  # dead letters durable before commit
    assert [o.source.offset for o in sink.outputs] == [0, 2, 4]
    headers = [dict(o.headers) for o in dead_letters.outputs]
    assert [h["source-offset"] for h in headers] == [b"1", b"3"]
    assert {h["error"] for h in headers} == {b"sink-refused"}
    assert b"character varying(255)" in headers[0]["error-message"]
    assert [o.value for o in dead_letters.outputs] == [source.committed[1].value,
                                                        source.committed[3].value]


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
    with pytest.raises(ConfigurationError, match="prediction"):
        StreamLoop(runner, ListSource([], journal), ListSink(journal),
                   options=StreamOptions(passthrough=("prediction",)))


# ---------------------------------------------------------------------------- pipelined sinks
class PipelinedListSink(ListSink):
    """A broker-like sink: ``send`` queues, ``flush`` makes the queue durable — or fails, and
    then what was queued is lost, as when a broker never acknowledged it."""

    def __init__(self, journal: list[str], failures: Sequence[SinkError] = (),
                 label: str = "") -> None:
        super().__init__(journal, failures)
        self.label = label
        self.queued: list[Output] = []

    def send(self, outputs: Sequence[Output]) -> None:
        self.journal.append(f"send{self.label} {len(outputs)}")
        self.queued.extend(outputs)

    def flush(self) -> None:
        if self.failures:
            self.journal.append(f"flush{self.label} failed")
            self.queued = []
            raise self.failures.pop(0)
        self.journal.append(f"flush{self.label}")
        self.outputs.extend(self.queued)
        self.queued = []


class JournalingSource(ListSource):
    """Journals each poll and close; ``revoke_at`` makes the n-th poll revoke partitions first,
    calling the worker's hook from inside ``poll`` as a Kafka consumer does."""

    def __init__(self, messages: Sequence[Message], journal: list[str],
                 revoke_at: int | None = None) -> None:
        super().__init__(messages, journal)
        self.revoke_at = revoke_at
        self.polls = 0
        self.on_revoke: Any = None

    def start(self, on_revoke: Any = None) -> None:
        self.on_revoke = on_revoke

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        self.polls += 1
        if self.polls == self.revoke_at:
            self.journal.append("revoke")
            self.on_revoke([("in", 0)])
        out = super().poll(max_messages, timeout_s)
        self.journal.append(f"poll {len(out)}")
        return out

    def close(self) -> None:
        self.journal.append("close")
        super().close()


class JournalingModel:
    """Wraps a predictor and journals each prediction call with its batch size."""

    def __init__(self, inner: Any, journal: list[str]) -> None:
        self.inner = inner
        self.journal = journal

    def predict(self, batch: Batch) -> Result:
        self.journal.append(f"predict {batch.n_rows}")
        return self.inner.predict(batch)  # type: ignore[no-any-return]


def _most_in_flight(journal: list[str]) -> int:
    """The most batches ever sent but not yet committed, going through the journal."""
    in_flight = most = 0
    for entry in journal:
        if entry.startswith("send "):
            in_flight += 1
            most = max(most, in_flight)
        elif entry.startswith("commit"):
            in_flight -= 1
    return most


def test_a_pipelined_sink_acknowledges_a_batch_while_the_next_one_is_predicted(
    runner: Runner
) -> None:
    journal: list[str] = []
    runner.predictor = JournalingModel(runner.predictor, journal)  # type: ignore[assignment]
    messages = [_msg(i, record(i)) for i in range(5)]
    source = JournalingSource(messages, journal)
    sink = PipelinedListSink(journal)
    registry = CollectorRegistry()
    loop = StreamLoop(runner, source, sink, options=StreamOptions(max_batch=2),
                      metrics=StreamMetrics(registry))
    loop.start()
    for _ in range(4):
        loop.run_once()
    assert journal == [
        "poll 2", "predict 2", "send 2",
        "poll 2", "predict 2", "flush", "commit 2", "send 2",  # batch 1 durable, then committed
        "poll 1", "predict 1", "flush", "commit 2", "send 1",
        "poll 0", "flush", "commit 1",  # idle: the last batch is not left uncommitted
    ]
    assert _most_in_flight(journal) == 1
    assert [o.source.offset for o in sink.outputs] == list(range(5))
    assert source.committed == messages
    assert registry.get_sample_value("modelport_stream_commits_total") == 3
    assert registry.get_sample_value("modelport_stream_processing_seconds_count") == 3


def test_stop_finishes_the_batch_in_flight_of_a_pipelined_sink_before_closing(
    runner: Runner
) -> None:
    journal: list[str] = []

    class StopsWhilePolling(JournalingSource):
        def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
            loop.stop()
            return super().poll(max_messages, timeout_s)

    source = StopsWhilePolling([_msg(i, record(i)) for i in range(5)], journal)
    loop = StreamLoop(runner, source, PipelinedListSink(journal),
                      options=StreamOptions(max_batch=3))
    totals = loop.run()
    assert journal == ["poll 3", "send 3", "flush", "commit 3", "close"]
    assert totals.messages == 3 and len(source.committed) == 3


def test_a_revocation_during_poll_commits_the_batch_in_flight_before_the_partitions_go(
    runner: Runner
) -> None:
    journal: list[str] = []
    source = JournalingSource([_msg(i, record(i)) for i in range(4)], journal, revoke_at=2)
    sink = PipelinedListSink(journal)
    loop = StreamLoop(runner, source, sink, options=StreamOptions(max_batch=2))
    loop.start()
    for _ in range(3):
        loop.run_once()
    assert journal == [
        "poll 2", "send 2",
        "revoke", "flush", "commit 2", "poll 2", "send 2",  # committed inside poll
        "poll 0", "flush", "commit 2",
    ]
    assert _most_in_flight(journal) == 1
    assert len(source.committed) == 4


def test_a_failed_flush_sends_the_batch_again_and_loses_nothing(runner: Runner) -> None:
    journal: list[str] = []
    sleeps: list[float] = []
    messages = [_msg(i, record(i)) for i in range(3)]
    source = JournalingSource(messages, journal)
    sink = PipelinedListSink(journal, failures=[SinkError("broker unreachable")])
    loop = StreamLoop(runner, source, sink,
                      options=StreamOptions(backoff=Backoff(initial_s=0.5)),
                      sleep=sleeps.append)
    loop.start()
    loop.run_once()
    loop.run_once()
    assert journal == ["poll 3", "send 3", "poll 0", "flush failed", "send 3", "flush",
                       "commit 3"]
    assert sleeps == [0.5]
    assert [o.source.offset for o in sink.outputs] == [0, 1, 2]
    assert source.committed == messages


def test_a_batch_whose_flush_fails_for_good_is_never_committed(runner: Runner) -> None:
    journal: list[str] = []
    source = JournalingSource([_msg(0, record(0))], journal)
    sink = PipelinedListSink(journal, failures=[SinkError("topic deleted", transient=False)])
    loop = StreamLoop(runner, source, sink)
    loop.start()
    loop.run_once()
    with pytest.raises(SinkError, match="topic deleted"):
        loop.run_once()
    loop.close()  # does not try the failed batch again, and does not commit it
    assert journal == ["poll 1", "send 1", "poll 0", "flush failed", "close"]
    assert source.committed == []


def test_dead_letters_on_their_own_pipelined_sink_are_flushed_before_the_commit(
    runner: Runner
) -> None:
    journal: list[str] = []
    source = JournalingSource([_msg(0, record(0)), _msg(1, b"{broken")], journal)
    sink = PipelinedListSink(journal, label=" out")
    dead = PipelinedListSink(journal, label=" dlq")
    loop = StreamLoop(runner, source, sink, dead_letters=dead, dead_letter_topic="in.dlq")
    loop.start()
    loop.run_once()
    loop.run_once()
    assert journal == ["poll 2", "send out 1", "send dlq 1", "poll 0", "flush out",
                       "flush dlq", "commit 2"]
    assert [o.dead_letter for o in sink.outputs + dead.outputs] == [False, True]


def test_exactly_once_keeps_one_transaction_per_batch_without_pipelining(
    runner: Runner
) -> None:
    journal: list[str] = []

    class TransactionalListSink(PipelinedListSink):
        def write_and_commit(self, outputs: Sequence[Output], messages: Sequence[Message],
                             source: Any) -> None:
            self.journal.append(f"transaction {len(outputs)}/{len(messages)}")

    source = JournalingSource([_msg(i, record(i)) for i in range(3)], journal)
    loop = StreamLoop(runner, source, TransactionalListSink(journal),
                      options=StreamOptions(max_batch=2, exactly_once=True))
    loop.start()
    for _ in range(3):
        loop.run_once()
    assert journal == ["poll 2", "transaction 2/2", "poll 1", "transaction 1/1", "poll 0"]


def test_extra_fields_are_ignored_copied_or_refused_as_the_option_says(runner: Runner) -> None:
    messages = [_msg(i, {**record(i), "segment": f"s{i}"}) for i in range(4)]
    by_mode = {}
    for mode in ("ignore", "passthrough", "refuse"):
        sink = ListSink([])
        options = StreamOptions(passthrough=("id",), extra_columns=mode,
                                allow_extra=mode != "refuse")
        StreamLoop(runner, ListSource(messages, []), sink, options=options).run_once()
        by_mode[mode] = sink.outputs
    assert all("segment" not in (o.record or {}) for o in by_mode["ignore"])
    copied = [o.record for o in by_mode["passthrough"]]
    assert [(r["id"], r["segment"]) for r in copied if r] == [(i, f"s{i}") for i in range(4)]
    assert list(copied[0] or {})[:3] == ["id", "segment", "prediction_id"]
    assert all(o.dead_letter for o in by_mode["refuse"])
    assert b"unexpected column 'segment'" in dict(by_mode["refuse"][0].headers)["error-message"]
    # a kept field is part of the contract: refuse still accepts it, as batch run does
    sink = ListSink([])
    plain = [_msg(i, record(i)) for i in range(4)]  # inputs and the kept "id"
    StreamLoop(runner, ListSource(plain, []), sink, options=StreamOptions(
        passthrough=("id",), extra_columns="refuse", allow_extra=False)).run_once()
    assert [o.record["id"] for o in sink.outputs if o.record and not o.dead_letter] == [
        0, 1, 2, 3]
