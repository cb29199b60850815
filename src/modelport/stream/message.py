"""The two things a stream worker moves: a ``Message`` read from a source, an ``Output`` to write
(``Messages`` and ``Outputs`` for batches of them kept as columns).

Both are broker-neutral. A Kafka record, a Redis Streams entry and a row for a SQL table all fit:
``offset`` is an integer on Kafka and an entry id (``"1700000000000-0"``) on Redis Streams.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any, overload

import orjson

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
    #: the entry's own fields when the source has fields (a Redis Streams entry written with
    #: plain fields: ``XADD s * f0 1.0 f1 2.0``), so a dead letter can give them back unchanged
    fields: tuple[tuple[bytes, bytes], ...] | None = None

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


class Messages(Sequence[Message]):
    """A poll's messages kept as columns (none with headers): what the Kafka source returns for
    the common batch. A sequence of :class:`Message` to anyone who iterates or indexes it (made
    on first use); the worker's hot path reads the columns (:func:`column`) instead.
    """

    __slots__ = ("_items", "keys", "offsets", "partitions", "timestamps", "topics", "values")

    def __init__(self, topics: list[str], partitions: list[int], offsets: list[int | str],
                 keys: list[bytes | None], values: list[bytes | None],
                 timestamps: Sequence[int | None]) -> None:
        self.topics = topics
        self.partitions = partitions
        self.offsets = offsets
        self.keys = keys
        self.values = values
        self.timestamps = timestamps  # (a source may read each only when asked for)
        self._items: list[Message] | None = None

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if self._items is None and isinstance(index, int):  # one, without making them all
            return Message(self.topics[index], self.partitions[index], self.offsets[index],
                           self.keys[index], self.values[index], (), self.timestamps[index])
        return self._list()[index]

    def __iter__(self) -> Iterator[Message]:
        return iter(self._list())

    def _list(self) -> list[Message]:
        if self._items is None:
            self._items = list(map(Message, self.topics, self.partitions, self.offsets,
                                   self.keys, self.values, repeat((), len(self.values)),
                                   self.timestamps))
        return self._items

    def __repr__(self) -> str:
        return f"<{len(self)} messages>"


def column(messages: Sequence[Message], name: str) -> list[Any]:
    """The ``name`` (``"topic"``, ``"partition"``, ``"offset"``, ``"key"`` or ``"value"``) of
    each of ``messages``: read off a :class:`Messages` batch, gathered from anything else."""
    if isinstance(messages, Messages):
        return getattr(messages, name + "s")  # type: ignore[no-any-return]
    return list(map(attrgetter(name), messages))


def has_headers(messages: Sequence[Message]) -> bool:
    return not isinstance(messages, Messages) and any(m.headers for m in messages)


class Output:
    """One message to write: a prediction for one input record, or a dead letter.

    ``topic`` is ``None`` for predictions (the sink's own destination) and names the dead-letter
    topic for dead letters. ``value`` is the bytes a message broker carries; ``record`` the
    prediction as plain fields (what a SQL sink stores), parsed from ``value`` when first asked
    for unless given. ``index`` is the record's position inside its message (a message may hold a
    list of records).
    """

    __slots__ = ("_record", "dead_letter", "headers", "index", "key", "source", "topic", "value")

    def __init__(
        self,
        source: Message,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        record: Mapping[str, Any] | None = None,
        topic: str | None = None,
        index: int = 0,
        dead_letter: bool = False,
    ) -> None:
        self.source = source
        self.value = value
        self.key = key
        self.headers = headers if headers is not None else []
        self._record = record
        self.topic = topic
        self.index = index
        self.dead_letter = dead_letter

    @property
    def record(self) -> Mapping[str, Any] | None:
        """The prediction's fields; ``None`` for dead letters (their value is the input)."""
        if self._record is None and not self.dead_letter:
            self._record = orjson.loads(self.value)
        return self._record

    @record.setter
    def record(self, value: Mapping[str, Any] | None) -> None:
        self._record = value

    def __repr__(self) -> str:
        kind = "dead letter" if self.dead_letter else "output"
        return f"<{kind} for {self.source.position}: {self.value[:80]!r}>"


class Outputs(Sequence[Output]):
    """Predictions for a batch of messages, kept as columns: what the batch encoder makes.

    A sequence of :class:`Output` to anyone who iterates or indexes it; a sink that knows the
    type (Kafka) reads the columns instead, without an object per message. ``request_ids`` are
    the ``request-id`` header values.
    """

    __slots__ = ("keys", "messages", "request_ids", "values")

    def __init__(self, messages: Sequence[Message], values: list[bytes],
                 keys: list[bytes | None], request_ids: list[bytes]) -> None:
        self.messages = messages
        self.values = values
        self.keys = keys
        self.request_ids = request_ids

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Output: ...

    @overload
    def __getitem__(self, index: slice) -> list[Output]: ...

    def __getitem__(self, index: int | slice) -> Output | list[Output]:
        if isinstance(index, slice):
            return list(self)[index]
        return Output(self.messages[index], self.values[index], self.keys[index],
                      [(REQUEST_ID_HEADER, self.request_ids[index])])

    def __iter__(self) -> Iterator[Output]:
        return map(Output, self.messages, self.values, self.keys,
                   ([(REQUEST_ID_HEADER, r)] for r in self.request_ids))

    def __repr__(self) -> str:
        return f"<{len(self)} outputs>"
