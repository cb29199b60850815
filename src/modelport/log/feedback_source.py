"""Label topics: feedback consumed from Kafka or Redis Streams into the log's feedback table.

Each message holds one feedback object or a list of them (JSON; see
:mod:`modelport.log.feedback_items`). A Redis entry may also carry the item's fields as its own
fields. Offsets are committed (Kafka) / entries acknowledged (Redis) only after the items are
stored, so a crash re-reads them; storing the same item twice is harmless (feedback is
idempotent). An invalid message is skipped, counted and logged with its position.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from modelport.errors import ConfigurationError, InvalidInputError
from modelport.log.feedback_items import FeedbackItem, SignatureOf, parse_items, to_table
from modelport.log.store import LogStore

log = logging.getLogger("modelport.log")

Message = tuple[bytes | dict[str, Any], str]


class FeedbackSource(Protocol):
    name: str

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` messages: (payload, position for log lines)."""
        ...

    def commit(self) -> None:
        """Mark every message polled so far as done."""

    def close(self) -> None: ...


def _split(url: str, scheme: str) -> tuple[str, str]:
    rest = url.split("://", 1)[1]
    host, _, name = rest.partition("/")
    if not host or not name:
        what = "topic" if scheme == "kafka" else "stream"
        raise ConfigurationError(f"--source {url!r}: write it as {scheme}://host:port/{what}")
    return host, name


class KafkaFeedback:
    """A Kafka label topic read in a consumer group (offsets committed after storing)."""

    def __init__(self, bootstrap: str, topic: str, *, group: str) -> None:
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.name = f"kafka:{topic}"
        self._consumer: Any = None

    @classmethod
    def from_url(cls, url: str, *, group: str) -> KafkaFeedback:
        host, topic = _split(url, "kafka")
        return cls(host, topic, group=group)

    def _open(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": self.group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "log_level": 3})
            self._consumer.subscribe([self.topic])
        return self._consumer

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        out: list[Message] = []
        for message in self._open().consume(max_messages, timeout):
            if message.error():
                log.warning("label topic %s: %s", self.topic, message.error())
                continue
            out.append((message.value() or b"",
                        f"{message.topic()}/{message.partition()}@{message.offset()}"))
        return out

    def commit(self) -> None:
        if self._consumer is not None:
            from confluent_kafka import KafkaException

            try:
                self._consumer.commit(asynchronous=False)
            except KafkaException as exc:  # nothing polled since the last commit
                if "NO_OFFSET" not in str(exc):
                    raise

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class RedisFeedback:
    """A Redis stream read in a consumer group (entries acknowledged after storing)."""

    def __init__(self, url: str, stream: str, *, group: str) -> None:
        self.url, self.stream, self.group = url, stream, group
        self.name = f"redis:{stream}"
        self._client: Any = None
        self._pending: list[str] = []

    @classmethod
    def from_url(cls, url: str, *, group: str) -> RedisFeedback:
        host, stream = _split(url, "redis")
        return cls(f"{url.split('://', 1)[0]}://{host}", stream, group=group)

    def _open(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url)
            try:
                self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        return self._client

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        answer = self._open().xreadgroup(self.group, "modelport", {self.stream: ">"},
                                         count=max_messages, block=int(timeout * 1000))
        out: list[Message] = []
        for _, entries in answer or []:
            for entry_id, fields in entries:
                ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                self._pending.append(ident)
                out.append((_fields(fields), f"{self.stream}@{ident}"))
        return out

    def commit(self) -> None:
        if self._pending and self._client is not None:
            self._client.xack(self.stream, self.group, *self._pending)
            self._pending = []

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _fields(fields: dict[Any, Any]) -> bytes | dict[str, Any]:
    decoded = {(k.decode() if isinstance(k, bytes) else str(k)):
               (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
    for key in ("value", "data", "json"):
        if key in decoded and len(decoded) == 1:
            return str(decoded[key]).encode()
    item: dict[str, Any] = {}
    for key, value in decoded.items():  # fields as an item: numbers and booleans as JSON
        try:
            parsed = orjson.loads(value) if key in ("label", "value", "reward", "window") \
                else value
        except orjson.JSONDecodeError:
            parsed = value
        item[key] = parsed
    return item


def consume(source: FeedbackSource, store: LogStore, *, signature_of: SignatureOf | None = None,
            default_model: str | None = None, batch: int = 500, idle_exit: float | None = None,
            max_messages: int | None = None, stop: threading.Event | None = None,
            clock: Callable[[], float] = time.monotonic,
            check: Callable[[list[FeedbackItem], bool], None] | None = None) -> dict[str, int]:
    """Store feedback from ``source`` until SIGTERM / ``stop`` (or idle / count limits).

    ``check(items, single)`` may refuse a message's items (``InvalidInputError``: the message is
    skipped and counted like an unparsable one), e.g. rewards outside a bandit's range."""
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    report = {"messages": 0, "stored": 0, "invalid": 0}
    last = clock()
    try:
        while not stop.is_set():
            messages = source.poll(batch, 0.5)
            if not messages:
                if idle_exit is not None and clock() - last >= idle_exit:
                    break
                continue
            last = clock()
            items: list[FeedbackItem] = []
            for payload, where in messages:
                report["messages"] += 1
                try:
                    value = orjson.loads(payload) if isinstance(payload, bytes) else payload
                    parsed = parse_items(value, signature_of=signature_of,
                                         default_model=default_model)
                    if check is not None:
                        check(parsed, isinstance(value, dict) and list(value) != ["items"])
                    items.extend(parsed)
                except (InvalidInputError, orjson.JSONDecodeError) as exc:
                    report["invalid"] += 1
                    log.warning("skipping feedback message %s: %s", where, exc)
            if items:
                store.append_feedback(to_table(items, source=source.name))
                report["stored"] += len(items)
            source.commit()
            if max_messages is not None and report["messages"] >= max_messages:
                break
    finally:
        source.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return report


__all__ = ["FeedbackSource", "KafkaFeedback", "RedisFeedback", "consume"]
