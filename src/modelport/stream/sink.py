"""``Sink``: where a stream worker writes predictions and dead letters, durably.

Implementations: :class:`modelport.stream.kafka.KafkaSink` (a topic; delivery reports),
:class:`modelport.stream.redis_streams.RedisStreamSink` (a stream) and
:class:`modelport.stream.sql.SqlSink` (an upserted table). A sink raises :class:`SinkError`
when it could not store everything; the worker retries the whole write with backoff, which is
safe because every sink is at-least-once and SQL sinks are idempotent.
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
class TransactionalSink(Sink, Protocol):
    """A sink that can store outputs and the source's commit in one transaction (exactly-once)."""

    def write_and_commit(
        self, outputs: Sequence[Output], messages: Sequence[Message], source: Source
    ) -> None:
        """Store ``outputs`` and mark ``messages`` done in ``source`` atomically, or neither."""
