"""The two things a stream worker moves: a ``Message`` read from a source, an ``Output`` to write.

Both are broker-neutral. A Kafka record, a Redis Streams entry and a row for a SQL table all fit:
``offset`` is an integer on Kafka and an entry id (``"1700000000000-0"``) on Redis Streams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Headers = Sequence[tuple[str, bytes]]

#: header that carries a request id in and out (set from the input's, or made from its position)
REQUEST_ID_HEADER = "request-id"


@dataclass(slots=True)
class Message:
    """One input message and where it came from."""

    topic: str
    partition: int
    offset: int | str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def position(self) -> str:
        """``topic/partition/offset``: unique per input, stable across redeliveries."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def request_id(self) -> str:
        if not self.headers:
            return f"{self.topic}/{self.partition}/{self.offset}"
        given = self.header(REQUEST_ID_HEADER)
        return given.decode("utf-8", "replace") if given else self.position


@dataclass(slots=True)
class Output:
    """One message to write: a prediction for one input record, or a dead letter.

    ``topic`` is ``None`` for predictions (the sink's own destination) and names the dead-letter
    topic for dead letters. ``record`` is the prediction as plain fields (what a SQL sink stores);
    ``value`` the bytes a message broker carries. ``index`` is the record's position inside its
    message (a message may hold a list of records).
    """

    source: Message
    value: bytes
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    record: Mapping[str, Any] | None = None
    topic: str | None = None
    index: int = 0
    dead_letter: bool = field(default=False)
