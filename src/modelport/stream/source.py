"""``Source``: where a stream worker reads messages from, and where it records what it finished.

Implementations: :class:`modelport.stream.kafka.KafkaSource` (consumer groups over Kafka) and
:class:`modelport.stream.redis_streams.RedisStreamSource` (Redis Streams consumer groups).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from modelport.stream.message import Message

#: called with the (topic, partition) pairs a source is about to lose to another worker
RevokeHook = Callable[[list[tuple[str, int]]], None]


@runtime_checkable
class Source(Protocol):
    """A consumer-group member. The worker calls ``poll`` / ``commit`` from one thread only."""

    name: str

    def start(self, on_revoke: RevokeHook | None = None) -> None:
        """Connect and join the group. ``on_revoke`` runs before partitions move elsewhere."""

    def poll(self, max_messages: int, timeout_s: float) -> Sequence[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout_s`` for the first ones.

        Messages of partitions revoked during the call are not returned: whoever owns them next
        reads them again from the last commit.
        """
        ...

    def commit(self, messages: Sequence[Message]) -> None:
        """Record ``messages`` as done (synchronously); they are not delivered to the group again.

        Called only after their outputs are durable in the sink.
        """

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages waiting per (topic, partition) of this member, as far as cheaply known."""
        ...

    def close(self) -> None:
        """Leave the group (handing partitions to the others) and disconnect."""
