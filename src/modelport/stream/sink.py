"""``Sink``: where a stream worker writes predictions and dead letters, durably.

Implementations: :class:`modelport.stream.kafka.KafkaSink` (a topic; delivery reports),
:class:`modelport.stream.redis_streams.RedisStreamSink` (a stream) and
:class:`modelport.stream.sql.SqlSink` (an upserted table). A sink raises :class:`SinkError`
when it could not store everything; the worker retries the whole write with backoff, which is
safe because every sink is at-least-once and SQL sinks are idempotent. A sink that refuses some
outputs for good, having stored the rest, raises :class:`RefusedOutputs` naming them.

A :class:`PipelinedSink` (Kafka) also splits the write in two, ``send`` then ``flush``, so that
the worker can predict the next batch while the broker acknowledges this one. Sinks that are
synchronous by nature (SQL, Redis) only implement ``write``: there is nothing to overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from modelport.errors import StorageError
from modelport.stream.message import Message, Output

if TYPE_CHECKING:
    from modelport.stream.source import Source


class SinkError(StorageError):
    """A sink did not durably accept every output. ``transient`` errors are worth retrying."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class RefusedOutputs(SinkError):
    """The sink stored every output but ``refused``: those it will never take for their content
    (a value too long for its column, a constraint), each with the reason. The worker sends
    their messages to the dead-letter destination instead of stopping on them."""

    def __init__(self, message: str, refused: Sequence[tuple[Output, str]]) -> None:
        super().__init__(message, transient=False)
        self.refused = list(refused)


@runtime_checkable
class Sink(Protocol):
    name: str

    def start(self) -> None:
        """Connect (and create what the sink needs, such as its table)."""

    def write(self, outputs: Sequence[Output]) -> None:
        """Store ``outputs``; return only once they are durable. Raise :class:`SinkError`."""

    def close(self) -> None:
        """Flush what is left and disconnect."""


@runtime_checkable
class PipelinedSink(Sink, Protocol):
    """A sink whose durable write is ``send`` (start delivery) followed by ``flush`` (wait).

    The worker sends a batch, predicts the next one while the sink delivers, then flushes and
    commits the first. ``write(outputs)`` must equal ``send(outputs)`` then ``flush()``.
    """

    def send(self, outputs: Sequence[Output]) -> None:
        """Start storing ``outputs`` and return without waiting for them to be durable.

        May raise :class:`SinkError` when the sink refuses them at once; delivery failures
        surface in the next ``flush``.
        """

    def flush(self) -> None:
        """Return once everything sent so far is durable; raise :class:`SinkError` otherwise.

        After an error the worker sends the batch again (at-least-once: repeats, never gaps).
        """


@runtime_checkable
class TransactionalSink(Sink, Protocol):
    """A sink that can store outputs and the source's commit in one transaction (exactly-once)."""

    def write_and_commit(
        self, outputs: Sequence[Output], messages: Sequence[Message], source: Source
    ) -> None:
        """Store ``outputs`` and mark ``messages`` done in ``source`` atomically, or neither."""
