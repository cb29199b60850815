"""``StreamLoop``: read a micro-batch, predict it in one call, write the outputs, then commit.

One iteration::

    source.poll(N messages or T ms)
      → decode JSON            (malformed → dead letter)
      → Signature.coerce       (records that do not fit → dead letter)
      → Runner.predict         (one vectorized call; a failing batch is retried per message)
      → encode                 (passthrough, prediction id, prediction, model, version, time)
      → sink.write             (durable: delivery reports / database commit; retried with backoff)
      → source.commit          (only now)

Because the commit follows the durable write, a crash anywhere loses nothing and repeats at most
the batch in flight (at-least-once); SQL sinks upsert, so they keep one row per input. With
``exactly_once`` a :class:`~modelport.stream.sink.TransactionalSink` writes the outputs and the
commit in one transaction. ``stop()`` (SIGTERM) lets the batch in flight finish and commit.

With a :class:`~modelport.stream.sink.PipelinedSink` (Kafka) the write is split so that the
broker acknowledges batch N while batch N+1 is predicted::

    poll N+1 → decode … encode N+1 → flush N (wait for acks) → commit N → send N+1

Still only one batch is ever sent but not committed, so a crash repeats at most one batch. It is
finished (flushed and committed) when a poll comes back empty, when the source is about to lose
partitions (the revoke hook runs inside ``poll``), on ``stop()`` and on ``close()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from modelport.bundle.model import Model
from modelport.core.batch import Batch, Result
from modelport.core.runner import Runner
from modelport.errors import ConfigurationError, InvalidInputError, ModelportError
from modelport.stream.codec import (
    INVALID_INPUT,
    MALFORMED,
    PREDICTION_FAILED,
    SINK_REFUSED,
    MalformedMessageError,
    MessageCodec,
)
from modelport.stream.fastcodec import RowReader
from modelport.stream.message import Message, Output, column
from modelport.stream.metrics import StreamMetrics
from modelport.stream.sink import (
    PipelinedSink,
    RefusedOutputs,
    Sink,
    SinkError,
    TransactionalSink,
)
from modelport.stream.source import Source

log = logging.getLogger("modelport.stream")

#: called at named points of an iteration ("written": outputs durable, not yet committed)
Failpoint = Callable[[str], None]

#: outputs bound for one sink
Write = tuple[Sink, Sequence[Output]]


@dataclass(frozen=True)
class Backoff:
    """Retry schedule for transient sink errors: ``initial_s`` doubling up to ``max_s``."""

    initial_s: float = 0.1
    max_s: float = 5.0
    attempts: int = 30

    def delays(self) -> list[float]:
        out, delay = [], self.initial_s
        for _ in range(self.attempts - 1):
            out.append(delay)
            delay = min(delay * 2, self.max_s)
        return out


@dataclass(frozen=True)
class StreamOptions:
    """How the loop batches, what it copies through, and how it delivers."""

    max_batch: int = 500
    max_wait_ms: float = 100.0
    passthrough: tuple[str, ...] = ()
    allow_extra: bool = True
    #: input fields the model does not take: ignore, refuse or passthrough (copied into the
    #: output); ``refuse`` is ``allow_extra=False``
    extra_columns: str = "ignore"
    exactly_once: bool = False
    backoff: Backoff = Backoff()
    lag_interval_s: float = 1.0
    refresh_interval_s: float = 10.0


@dataclass(frozen=True)
class _Sent:
    """A batch whose outputs were sent to a pipelined sink but are not yet known durable."""

    messages: Sequence[Message]
    writes: list[Write]
    start: float


@dataclass
class BatchReport:
    """What one iteration did (returned by ``run_once``; also logged)."""

    messages: int = 0
    outputs: int = 0
    dead_letters: int = 0
    seconds: float = 0.0


class StreamLoop:
    def __init__(
        self,
        model: Runner | Model,
        source: Source,
        sink: Sink,
        *,
        dead_letters: Sink | None = None,
        dead_letter_topic: str | None = None,
        options: StreamOptions | None = None,
        metrics: StreamMetrics | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        failpoint: Failpoint | None = None,
        refresh: Callable[[], Runner] | None = None,
        routing: Any = None,
    ) -> None:
        self.runner = model if isinstance(model, Runner) else Runner(model)
        #: an endpoint's routing (modelport.rollout.stream.StreamRouting): messages by key
        self.routing = routing
        self.refresh = refresh
        self.source = source
        self.sink = sink
        self.dead_letters = dead_letters or sink
        self.options = options or StreamOptions()
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.failpoint = failpoint
        self._use(self.runner, dead_letter_topic)
        self._stop = threading.Event()
        self._sent: _Sent | None = None
        self._pipelined = not self.options.exactly_once and isinstance(sink, PipelinedSink)
        self._piped = tuple(s for s in (sink, self.dead_letters) if isinstance(s, PipelinedSink))
        self._last_lag = 0.0
        self._last_refresh = clock()
        self.totals = BatchReport()
        if self.options.exactly_once and not (
            isinstance(sink, TransactionalSink) and self.dead_letters is sink
        ):
            raise ConfigurationError(
                "--exactly-once needs a Kafka sink whose dead-letter topic is on the same "
                "cluster (outputs, dead letters and offsets go into one transaction)"
            )

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Finish the batch in flight, commit it, and return from ``run``."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self.sink.start()
        if self.dead_letters is not self.sink:
            self.dead_letters.start()
        self.source.start(on_revoke=self._revoked)

    def run(self) -> BatchReport:
        """Process batches until ``stop()``; then finish the batch in flight and close the source
        (leaving the group)."""
        self.start()
        log.info("stream worker started", extra={"source": self.source.name,
                                                 "sink": self.sink.name,
                                                 "model": self.runner.model.ref})
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.close()
        log.info("stream worker stopped", extra={"messages": self.totals.messages,
                                                 "outputs": self.totals.outputs,
                                                 "dead_letters": self.totals.dead_letters})
        return self.totals

    def close(self) -> None:
        """Finish the batch in flight, then leave the group and disconnect."""
        try:
            self.finish()
        finally:
            self.source.close()
            self.sink.close()
            if self.dead_letters is not self.sink:
                self.dead_letters.close()

    def finish(self) -> None:
        """Wait until the batch in flight is durable, then commit it; nothing is left in flight.

        Only pipelined sinks leave a batch in flight between iterations. If its delivery fails
        for good the error is raised and the batch stays uncommitted (its messages come again).
        """
        sent, self._sent = self._sent, None
        if sent is None:
            return

        def resend() -> None:  # what a failed flush did not deliver is not known: all again
            self._send(sent.writes)
            self._flush(sent.writes)

        self._retry(lambda: self._flush(sent.writes), again=resend)
        self._fail("written")
        self.source.commit(sent.messages)
        self._committed(sent.start)

    def _revoked(self, partitions: list[tuple[str, int]]) -> None:
        # Runs inside poll. The batch in flight may hold messages of these partitions: commit
        # it while they are still ours, or their next owner repeats it. Everything before it is
        # committed already; the source drops read-but-unprocessed messages of these partitions.
        if self.metrics is not None:
            self.metrics.revocations.inc()
        log.info("partitions revoked", extra={"partitions": [f"{t}/{p}" for t, p in partitions]})
        self.finish()

    # ------------------------------------------------------------------ one batch
    def run_once(self) -> BatchReport:
        opts = self.options
        self._maybe_refresh()
        messages = self.source.poll(opts.max_batch, opts.max_wait_ms / 1000.0)
        if messages:
            report = self.process(messages)
        else:  # idle: do not leave the batch in flight uncommitted until the next message
            self.finish()
            report = BatchReport()
        self._update_lag()
        return report

    def process(self, messages: Sequence[Message]) -> BatchReport:
        """Predict ``messages`` and deliver the outputs; with a pipelined sink, the previous
        batch is finished here and this one is left in flight (see :meth:`finish`)."""
        start = self.clock()
        outputs, dead = (self._predict(messages, start) if self.routing is None
                         else self.routing.predict(self, messages, start))
        writes = self._writes(outputs, dead)
        if self.options.exactly_once:
            assert isinstance(self.sink, TransactionalSink)
            both = [*outputs, *dead] if dead else outputs
            self._retry(lambda: self.sink.write_and_commit(  # type: ignore[attr-defined]
                both, messages, self.source))
            self._fail("written")
            self._committed(start)
        elif self._pipelined:
            self.finish()  # the previous batch, acknowledged while this one was predicted
            self._retry(lambda: self._send(writes))
            self._sent = _Sent(messages, writes, start)
        else:
            refused = self._write_each(writes)
            if refused:
                outputs = [o for o in outputs if o.source.position not in refused]
                dead = [*dead, *refused.values()]
            self._fail("written")
            self.source.commit(messages)
            self._committed(start)
        report = BatchReport(len(messages), len(outputs), len(dead), self.clock() - start)
        self._account(messages, report, dead)
        return report

    def _predict(self, messages: Sequence[Message], start: float) -> tuple[
            Sequence[Output], list[Output]]:
        dead: list[Output] = []
        codec = self.codec
        fast = self._predict_plain(messages, start)
        if fast is not None:
            return fast, dead
        decoded: list[tuple[Message, list[dict[str, Any]]]] = []
        loads = orjson.loads
        for msg in messages:
            value = msg.value
            if value:  # the common case inline: one JSON object per message
                try:
                    data = loads(value)
                except orjson.JSONDecodeError:
                    data = None
                if type(data) is dict:
                    decoded.append((msg, [data]))
                    continue
            try:  # anything else: the codec says what it holds or why it is malformed
                decoded.append((msg, codec.decode(msg)))
            except MalformedMessageError as exc:
                dead.append(codec.dead_letter(msg, MALFORMED, str(exc)))
        if not decoded:
            return [], dead
        decoded, batches = self._coerce(decoded, dead)
        if not decoded:
            return [], dead
        result, results = self._call(decoded, batches, dead)
        stamp = codec.stamp()
        if result is not None:  # one record per message, predicted in one call
            return codec.encode_batch([msg for msg, _ in decoded],
                                      [recs[0] for _, recs in decoded],
                                      result, predicted_at=stamp), dead
        outputs: list[Output] = []
        encode = codec.encode
        for (msg, records), predictions in results:
            of = len(records)
            for i, (record, prediction) in enumerate(zip(records, predictions, strict=True)):
                outputs.append(encode(msg, i, record, prediction, predicted_at=stamp, of=of))
        return outputs, dead

    def _predict_plain(self, messages: Sequence[Message], start: float
                       ) -> Sequence[Output] | None:
        """The common batch, with C-level passes: every message one JSON object, all fitting
        the signature, predicted in one call. ``None`` when anything else happens; the caller
        then finds out message by message what each holds and which go to dead letters.

        Float inputs are read straight into the model's matrix by the compiled codec when it
        takes the whole batch (:class:`RowReader`); otherwise each message is parsed here."""
        values = column(messages, "value")
        records: list[Any] | None = None
        read = self._rows.read(values)
        try:
            if read is not None:
                batch, picks = read
            else:
                picks = None
                try:
                    records = list(map(orjson.loads, values))
                except (orjson.JSONDecodeError, TypeError):  # TypeError: a message without value
                    return None
                if set(map(type, records)) != {dict}:
                    return None
                batch = self._coerce_records(records)
            result = self.runner.predict(batch, source=f"stream:{messages[0].topic}",
                                         request_id=messages[0].request_id,
                                         row_ids=self._row_ids(messages))
        except ModelportError:  # the general path says which messages (predicting once more)
            return None
        if result.n_rows != len(messages):
            return None
        return self.codec.encode_batch(messages, records, result, picks=picks)

    def _row_ids(self, messages: Sequence[Message], sizes: Sequence[int] | None = None
                 ) -> list[str] | None:
        """The prediction ids of the rows (``<topic>-<partition>-<offset>``, ``-<i>`` for
        record ``i`` of a list message), made only when an observer (the log) will read them."""
        if not self.runner.events.has_observers:
            return None
        if sizes is None:
            return [f"{t}-{p}-{o}" for t, p, o in zip(
                column(messages, "topic"), column(messages, "partition"),
                column(messages, "offset"), strict=True)]
        ids: list[str] = []
        for msg, size in zip(messages, sizes, strict=True):
            base = f"{msg.topic}-{msg.partition}-{msg.offset}"
            ids.extend([base] if size == 1 else [f"{base}-{i}" for i in range(size)])
        return ids

    def _coerce_records(self, records: list[dict[str, Any]]) -> Batch:
        """The signature's batch of ``records``; when fields beyond the inputs are refused,
        the kept (``--keep``) fields are still allowed, as in ``batch run`` and ``predict``."""
        signature = self.runner.model.signature
        if self.options.allow_extra:
            return signature.coerce(records, allow_extra=True)
        allowed = {*signature.input_names, *self.codec.passthrough}
        for i, record in enumerate(records):
            if len(record) > len(signature.inputs):
                extra = next((k for k in record if k not in allowed), None)
                if extra is not None:
                    raise InvalidInputError(
                        f"row {i}: unexpected column {extra!r}; the model takes "
                        f"{signature.input_names} (send only those and the --keep fields, or "
                        "run with --extra-columns ignore or passthrough)", field=extra)
        return signature.coerce(records, allow_extra=True)

    def _coerce(
        self, decoded: list[tuple[Message, list[dict[str, Any]]]], dead: list[Output]
    ) -> tuple[list[tuple[Message, list[dict[str, Any]]]], list[Batch]]:
        """One batch for all records when they all fit; else find the messages that do not."""
        try:
            records = [r for _, recs in decoded for r in recs]
            return decoded, [self._coerce_records(records)]
        except InvalidInputError:
            pass
        kept: list[tuple[Message, list[dict[str, Any]]]] = []
        batches: list[Batch] = []
        for msg, recs in decoded:
            try:
                batches.append(self._coerce_records(recs))
                kept.append((msg, recs))
            except InvalidInputError as exc:
                dead.append(self.codec.dead_letter(msg, INVALID_INPUT, str(exc)))
        return kept, batches

    def _call(
        self,
        decoded: list[tuple[Message, list[dict[str, Any]]]],
        batches: list[Batch],
        dead: list[Output],
    ) -> tuple[Result | None, list[tuple[tuple[Message, list[dict[str, Any]]],
                                         list[dict[str, Any]]]]]:
        """Predict everything in one call; if that fails, message by message.

        Returns the whole batch's result when every message holds one record and one call
        predicted them all (row ``i`` for message ``i``); otherwise each message with one
        prediction record per input record.
        """
        batch = Batch.concat(batches) if len(batches) > 1 else batches[0]
        request_id = decoded[0][0].request_id
        sizes = [len(recs) for _, recs in decoded]
        try:
            result = self.runner.predict(
                batch, source=f"stream:{decoded[0][0].topic}", request_id=request_id,
                row_ids=self._row_ids([msg for msg, _ in decoded], sizes))
        except ModelportError as exc:
            if len(decoded) == 1:
                dead.append(self.codec.dead_letter(decoded[0][0], PREDICTION_FAILED, str(exc)))
                return None, []
        else:
            if result.n_rows == batch.n_rows == len(decoded):  # one record per message
                return result, []
            predictions = self.codec.predictions(result)
            out, start = [], 0
            for item, size in zip(decoded, sizes, strict=True):
                out.append((item, predictions[start:start + size]))
                start += size
            return None, out
        out = []
        start = 0
        for item, size in zip(decoded, sizes, strict=True):
            one = batch.slice(start, start + size)
            start += size
            try:
                result = self.runner.predict(one, source=f"stream:{item[0].topic}",
                                             request_id=item[0].request_id,
                                             row_ids=self._row_ids([item[0]], [size]))
                out.append((item, self.codec.predictions(result)))
            except ModelportError as exc:
                dead.append(self.codec.dead_letter(item[0], PREDICTION_FAILED, str(exc)))
        return None, out

    # ------------------------------------------------------------------ delivery
    def _writes(self, outputs: Sequence[Output], dead: list[Output]) -> list[Write]:
        if self.dead_letters is self.sink:
            both = [*outputs, *dead] if dead else outputs  # (a batch's columns kept if it can)
            return [(self.sink, both)] if both else []
        return [(sink, outs) for sink, outs in ((self.sink, outputs), (self.dead_letters, dead))
                if outs]

    def _write_each(self, writes: list[Write]) -> dict[str, Output]:
        """Write synchronously. Messages whose outputs a sink refused for good (having stored
        the rest) become dead letters, written here; returns them by message position."""
        refused: dict[str, Output] = {}
        for sink, outs in writes:
            try:
                self._retry(partial(sink.write, outs))
            except RefusedOutputs as exc:
                for output, reason in exc.refused:
                    message = output.source
                    if message.position not in refused:
                        refused[message.position] = self.codec.dead_letter(
                            message, SINK_REFUSED, f"{sink.name} refused the prediction: {reason}")
        if refused:
            log.warning("%d messages refused by the sink go to the dead-letter destination",
                        len(refused))
            self._retry(partial(self.dead_letters.write, list(refused.values())))
        return refused

    def _send(self, writes: list[Write]) -> None:
        for sink, outputs in writes:
            if self._is_piped(sink):
                sink.send(outputs)  # type: ignore[attr-defined]
            else:  # e.g. dead letters to Redis next to a Kafka sink: durable at once
                sink.write(outputs)

    def _flush(self, writes: list[Write]) -> None:
        for sink, _ in writes:
            if self._is_piped(sink):
                sink.flush()  # type: ignore[attr-defined]

    def _is_piped(self, sink: Sink) -> bool:
        # (an isinstance check against a runtime Protocol costs more than a whole message)
        return any(sink is piped for piped in self._piped)

    def _retry(self, action: Callable[[], None], again: Callable[[], None] | None = None) -> None:
        """Run ``action``; after a transient :class:`SinkError` wait and run ``again`` (default:
        ``action``) until it succeeds or the backoff is spent."""
        delays = self.options.backoff.delays()
        for attempt in range(len(delays) + 1):
            try:
                if attempt and again is not None:
                    again()
                else:
                    action()
                return
            except SinkError as exc:
                if not exc.transient or attempt == len(delays):
                    raise
                if self.metrics is not None:
                    self.metrics.sink_retries.inc()
                log.warning("sink write failed, retrying in %.1fs: %s", delays[attempt], exc)
                self.sleep(delays[attempt])

    def _fail(self, point: str) -> None:
        if self.failpoint is not None:
            self.failpoint(point)

    # ------------------------------------------------------------------ accounting
    def _committed(self, start: float) -> None:
        self._fail("committed")
        if self.metrics is not None:
            self.metrics.processing.observe(self.clock() - start)
            self.metrics.commits.inc()

    def _account(self, messages: Sequence[Message], report: BatchReport,
                 dead: list[Output]) -> None:
        totals = self.totals
        totals.messages += report.messages
        totals.outputs += report.outputs
        totals.dead_letters += report.dead_letters
        totals.seconds += report.seconds
        m = self.metrics
        if m is not None:
            for topic, n in Counter(column(messages, "topic")).items():
                m.messages_in.labels(topic).inc(n)
            m.messages_out.inc(report.outputs)
            m.batch_size.observe(report.messages)
        if report.dead_letters:
            log.warning("dead-lettered %d of %d messages", report.dead_letters, report.messages)
            if m is not None:
                for out in dead:
                    m.dead_letters.labels(_reason(out)).inc()
        log.debug("batch done", extra={"messages": report.messages, "outputs": report.outputs,
                                       "dead_letters": report.dead_letters,
                                       "ms": round(report.seconds * 1000, 2)})

    def _maybe_refresh(self) -> None:
        """Between batches, follow an alias that moved (``refresh`` returns the current runner)."""
        if self.refresh is None:
            return
        now = self.clock()
        if now - self._last_refresh < self.options.refresh_interval_s:
            return
        self._last_refresh = now
        try:
            runner = self.refresh()
        except ModelportError as exc:  # the registry is unreachable: keep predicting
            log.warning("model refresh failed, keeping %s: %s", self.runner.model.ref, exc)
            return
        if runner is self.runner:
            return
        log.info("switching model", extra={"old": self.runner.model.ref,
                                           "new": runner.model.ref})
        self._use(runner, self.codec.dead_letter_topic)

    def _use(self, runner: Runner, dead_letter_topic: str | None) -> None:
        self.runner = runner
        self.codec = MessageCodec(model=runner.name, version=runner.version,
                                  passthrough=self.options.passthrough,
                                  dead_letter_topic=dead_letter_topic,
                                  signature=runner.model.signature,
                                  passthrough_extra=self.options.extra_columns == "passthrough")
        self._rows = RowReader(runner.model.signature, self.codec.passthrough,
                               allow_extra=self.options.allow_extra)
        if self.codec.inputs is not None:  # fields to copy are known only record by record
            self._rows.enabled = False

    def _update_lag(self) -> None:
        if self.metrics is None:
            return
        now = self.clock()
        if now - self._last_lag < self.options.lag_interval_s:
            return
        self._last_lag = now
        self.metrics.set_lag(self.source.lag())


def _reason(dead_letter: Output) -> str:
    return next((v.decode() for k, v in dead_letter.headers if k == "error"), "unknown")
