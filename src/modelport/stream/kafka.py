"""Kafka through confluent-kafka (librdkafka): a consumer-group ``Source`` and a producer ``Sink``.

The source never auto-commits: the worker commits offsets synchronously after the sink has the
outputs. The sink's ``flush`` (and ``write``) waits for every delivery report (``acks=all``,
idempotent producer); ``send`` only produces, so the worker can predict meanwhile. With a
``transactional_id`` the sink offers exactly-once: produce and the consumer's offsets go into one
Kafka transaction.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Mapping, Sequence
from typing import Any, overload

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from modelport.errors import ConfigurationError
from modelport.stream.message import (
    REQUEST_ID_HEADER,
    Message,
    Messages,
    Output,
    Outputs,
    column,
)
from modelport.stream.sink import SinkError
from modelport.stream.source import RevokeHook, Source

log = logging.getLogger("modelport.stream.kafka")
#: librdkafka's own log lines (every failed connection attempt, …): ``modelport stream run``
#: shows them only with ``-v``; the worker reports what went wrong in one error of its own
client_log = logging.getLogger("modelport.stream.librdkafka")

#: commit errors that mean "a rebalance took these partitions": the next owner repeats them
_REBALANCE_ERRORS = {
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError._NO_OFFSET, KafkaError._STATE,
}

# accessors mapped over a consumed batch (C-level calls, no Python frame per message)
_error, _topic, _partition = KafkaMessage.error, KafkaMessage.topic, KafkaMessage.partition
_offset, _key, _value = KafkaMessage.offset, KafkaMessage.key, KafkaMessage.value
_headers, _timestamp, _ms = KafkaMessage.headers, KafkaMessage.timestamp, operator.itemgetter(1)


class _Timestamps(Sequence[int | None]):
    """The timestamps (ms) of a consumed batch, each read from librdkafka only if asked for
    (the worker never asks: a message object per poll only for its request id)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[KafkaMessage]) -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> int | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[int | None]: ...

    def __getitem__(self, index: int | slice) -> int | list[int | None] | None:
        if isinstance(index, slice):
            return list(map(_ms, map(_timestamp, self._raw[index])))
        return _ms(_timestamp(self._raw[index]))  # type: ignore[no-any-return]


def _one_topic(topics: list[str]) -> bool:
    return bool(topics) and topics.count(topics[0]) == len(topics)


def read_ahead(max_batch: int) -> int:
    """Messages per partition a consumer reads ahead of a worker taking ``max_batch`` at a time:
    ten batches, at least 1000 (see :class:`KafkaSource`)."""
    return max(10 * max_batch, 1000)


#: the read-ahead for the worker's default batch of 500
DEFAULT_PREFETCH = read_ahead(500)


class KafkaSource:
    """A member of consumer group ``group`` reading ``topics`` from ``bootstrap``.

    ``prefetch`` bounds how many messages per partition the client reads ahead of the worker
    (librdkafka's own default is 100,000 per partition, or 64 MB). A few batches ahead is all a
    worker can use; more only holds memory, is thrown away when a rebalance moves the
    partition, and keeps a fetch waiting at the end of the log, which some brokers serve by
    busy-polling (noida-db spends a core on it). When the read-ahead is full the client checks
    again every 10 ms.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group: str,
        *,
        session_timeout_ms: int = 10_000,
        start_from: str = "earliest",
        prefetch: int = DEFAULT_PREFETCH,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group = group
        self.name = f"kafka://{bootstrap}/{','.join(topics)}"
        self.config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": start_from,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(session_timeout_ms // 4, 100),
            "enable.partition.eof": False,
            "queued.min.messages": prefetch,
            "fetch.queue.backoff.ms": 10,
            **dict(config or {}),
        }
        self.consumer: Consumer | None = None
        self.assignment: set[tuple[str, int]] = set()
        self._on_revoke: RevokeHook | None = None

    def start(self, on_revoke: RevokeHook | None = None) -> None:
        self._on_revoke = on_revoke
        try:
            self.consumer = Consumer(self.config, **_client_logging())
        except KafkaException as exc:
            raise ConfigurationError(f"cannot create a Kafka consumer: {exc}") from None
        self.consumer.subscribe(self.topics, on_assign=self._assigned,
                                on_revoke=self._revoked, on_lost=self._revoked)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment |= {(tp.topic, tp.partition) for tp in partitions}
        log.info("assigned %s", sorted(f"{t}/{p}" for t, p in self.assignment))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in partitions]
        self.assignment -= set(gone)
        if self._on_revoke is not None:
            self._on_revoke(gone)

    def poll(self, max_messages: int, timeout_s: float) -> Sequence[Message]:
        consumer = self._consumer()
        raw = consumer.consume(max_messages, timeout_s)
        if not raw:
            return []
        topics: list[Any] = list(map(_topic, raw))  # (str and int where there is no error)
        partitions: list[Any] = list(map(_partition, raw))
        if (not any(map(_error, raw)) and not any(map(_headers, raw))
                and self._owned(topics, partitions)):
            # the common batch, converted with C-level passes: no errors, no headers, and
            # every partition still ours
            offsets: list[Any] = list(map(_offset, raw))
            return Messages(topics, partitions, offsets, list(map(_key, raw)),
                            list(map(_value, raw)), _Timestamps(raw))
        out: list[Message] = []
        append, owned = out.append, self.assignment
        for m in raw:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer: %s", err)
                continue
            topic, partition = m.topic(), m.partition()
            if (topic, partition) not in owned:  # revoked while this batch was read
                continue
            headers: Any = m.headers()
            append(Message(
                topic, partition, m.offset(),  # type: ignore[arg-type]  # set when no error
                m.key(), m.value(),
                tuple((k, v or b"") for k, v in headers) if headers else (),
                m.timestamp()[1],
            ))
        return out

    def _owned(self, topics: list[str], partitions: list[int]) -> bool:
        """Whether every message's partition is still assigned to this consumer."""
        if _one_topic(topics):  # no tuple per message
            topic = topics[0]
            return set(partitions) <= {p for t, p in self.assignment if t == topic}
        return set(zip(topics, partitions, strict=True)) <= self.assignment

    def offsets(self, messages: Sequence[Message]) -> list[TopicPartition]:
        """The next offset to read per partition after ``messages`` (one poll's, in order)."""
        # a poll returns each partition's messages in offset order: the dict keeps the last
        topics, partitions = column(messages, "topic"), column(messages, "partition")
        offsets = column(messages, "offset")
        if _one_topic(topics):  # no tuple per message
            return [TopicPartition(topics[0], p, int(o) + 1)
                    for p, o in dict(zip(partitions, offsets, strict=True)).items()]
        top = dict(zip(zip(topics, partitions, strict=True), offsets, strict=True))
        return [TopicPartition(t, p, int(o) + 1) for (t, p), o in top.items()]

    def commit(self, messages: Sequence[Message]) -> None:
        offsets = self.offsets(messages)
        if not offsets:
            return
        try:
            self._consumer().commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() in _REBALANCE_ERRORS:
                log.warning("commit lost to a rebalance (%s); the partitions' next owner "
                            "repeats the last batch", err.str())
                return
            raise SinkError(f"offset commit failed: {exc}") from None

    def group_metadata(self) -> Any:
        return self._consumer().consumer_group_metadata()

    def lag(self) -> dict[tuple[str, int], int]:
        consumer = self._consumer()
        tps = [TopicPartition(t, p) for t, p in sorted(self.assignment)]
        if not tps:
            return {}
        out: dict[tuple[str, int], int] = {}
        for tp in consumer.position(tps):
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                out[(tp.topic, tp.partition)] = max(high - tp.offset, 0)
        return out

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()  # leaves the group: revokes, so others take over at once
            self.consumer = None

    def _consumer(self) -> Consumer:
        if self.consumer is None:
            raise ConfigurationError("the Kafka source is not started; call start() first")
        return self.consumer


class KafkaSink:
    """Produces outputs to ``topic`` (dead letters to their own topic) and waits for acks."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        transactional_id: str | None = None,
        flush_timeout_s: float = 30.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.name = f"kafka://{bootstrap}/{topic}"
        self.transactional_id = transactional_id
        self.flush_timeout_s = flush_timeout_s
        self.config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            # the worker produces a whole batch at once: lingering longer would only delay the
            # acknowledgements that the next batch waits for
            "linger.ms": 1,
            "partitioner": "murmur2_random",  # keys land where Java clients put them
            # failures only: a message is still out of flush()'s count until acknowledged or
            # failed, and every failure reaches _delivered; successes cost no Python call
            "delivery.report.only.error": True,
            **({"transactional.id": transactional_id} if transactional_id else {}),
            **dict(config or {}),
            "on_delivery": self._delivered,
        }
        self.producer: Producer | None = None
        self._failed: list[KafkaError] = []

    def start(self) -> None:
        try:
            self.producer = Producer(self.config, **_client_logging())
        except KafkaException as exc:
            raise ConfigurationError(f"cannot create a Kafka producer: {exc}") from None
        if self.transactional_id:
            try:
                self.producer.init_transactions(self.flush_timeout_s)
            except KafkaException as exc:
                raise ConfigurationError(
                    f"the Kafka cluster at {self.bootstrap} refused transactions ({exc}); run "
                    "without --exactly-once"
                ) from None

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._failed.append(err)

    def _produce_all(self, outputs: Sequence[Output]) -> None:
        producer = self._producer()
        produce = producer.produce
        default = self.topic
        if isinstance(outputs, Outputs):  # a batch of predictions: read its columns
            header = REQUEST_ID_HEADER
            for value, key, request_id in zip(outputs.values, outputs.keys,
                                              outputs.request_ids, strict=True):
                try:  # positional: (…, partition, callback, on_delivery, timestamp, headers)
                    # with their defaults; parsing a keyword costs about a third of the call
                    produce(default, value, key, -1, None, None, 0, [(header, request_id)])
                except BufferError:
                    self._produce_one(producer, default, value, key, [(header, request_id)])
                except KafkaException as exc:
                    raise SinkError(f"cannot produce to {default}: {exc}") from None
            return
        for out in outputs:
            self._produce_one(producer, out.topic or default, out.value, out.key, out.headers)

    @staticmethod
    def _produce_one(producer: Producer, topic: str, value: bytes, key: bytes | None,
                     headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)  # type: ignore[arg-type]
                return
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.05)
            except KafkaException as exc:
                raise SinkError(f"cannot produce to {topic}: {exc}") from None

    def send(self, outputs: Sequence[Output]) -> None:
        self._produce_all(outputs)

    def flush(self) -> None:
        left = self._producer().flush(self.flush_timeout_s)
        failed, self._failed = self._failed, []
        if left:
            raise SinkError(f"{left} messages not acknowledged by {self.bootstrap} within "
                            f"{self.flush_timeout_s:.0f}s")
        if failed:
            raise SinkError(f"{len(failed)} messages not delivered: {failed[0].str()}")

    def write(self, outputs: Sequence[Output]) -> None:
        self.send(outputs)
        self.flush()

    def write_and_commit(
        self, outputs: Sequence[Output], messages: Sequence[Message], source: Source
    ) -> None:
        if not isinstance(source, KafkaSource) or not self.transactional_id:
            raise ConfigurationError("exactly-once needs a Kafka source and a transactional sink")
        producer = self._producer()
        self._failed = []
        try:
            producer.begin_transaction()
            self._produce_all(outputs)
            producer.send_offsets_to_transaction(
                source.offsets(messages), source.group_metadata(), self.flush_timeout_s)
            producer.commit_transaction(self.flush_timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.txn_requires_abort():
                producer.abort_transaction(self.flush_timeout_s)
                raise SinkError(f"transaction aborted, will retry: {err.str()}") from None
            retriable = isinstance(err, KafkaError) and err.retriable()
            raise SinkError(f"transaction failed: {exc}", transient=retriable) from None
        except SinkError:
            producer.abort_transaction(self.flush_timeout_s)
            raise

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(self.flush_timeout_s)
            self.producer = None

    def _producer(self) -> Producer:
        if self.producer is None:
            raise ConfigurationError("the Kafka sink is not started; call start() first")
        return self.producer


def wait_for_topics(bootstrap: str, topics: Sequence[str], timeout_s: float = 10.0) -> None:
    """Fail early, with advice, if the source topics do not exist."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap}, **_client_logging())
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            meta = admin.list_topics(timeout=max(deadline - time.monotonic(), 0.5))
        except KafkaException as exc:
            raise ConfigurationError(
                f"cannot reach Kafka at {bootstrap} ({_reason(exc)}); check the host and port"
            ) from None
        missing = [t for t in topics if t not in meta.topics]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"topic {missing[0]!r} does not exist on {bootstrap}; create it first")
        time.sleep(0.2)


def ensure_topics(bootstrap: str, topics: Sequence[str], *, like: str,
                  timeout_s: float = 10.0) -> list[str]:
    """Create those of ``topics`` that do not exist, with as many partitions as topic ``like``
    (the source) and the cluster's default replication; return the names created.

    A worker must not discover at its first dead letter that its dead-letter topic is missing on
    a cluster without automatic topic creation: its writes would then retry until they time out
    and the stream would stall. Kafka Connect creates its dead-letter topic the same way.
    """
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap}, **_client_logging())
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConfigurationError(
            f"cannot reach Kafka at {bootstrap} ({_reason(exc)}); check the host and port"
        ) from None
    missing = sorted({t for t in topics if t not in meta.topics})
    if not missing:
        return []
    partitions = len(meta.topics[like].partitions) if like in meta.topics else 1
    futures = admin.create_topics([NewTopic(t, partitions, -1) for t in missing],
                                  request_timeout=timeout_s)
    for topic, future in futures.items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another worker of the group created it first
            raise ConfigurationError(
                f"topic {topic!r} does not exist on {bootstrap} and could not be created "
                f"({err.str() if isinstance(err, KafkaError) else exc}); create it first") \
                from None
    log.info("created topics %s with %d partitions", missing, partitions)
    return missing


def _client_logging() -> dict[str, Any]:
    """Where librdkafka's own lines go: to ``client_log`` (``modelport stream run`` silences
    it), or, when that logger is set to DEBUG (``-v``), straight to stderr as librdkafka writes
    them (an admin client only hands lines to Python while it is polled)."""
    return {} if client_log.isEnabledFor(logging.DEBUG) else {"logger": client_log}


def _reason(exc: KafkaException) -> str:
    """The readable part of a Kafka error ("Failed to get metadata: Local: Broker transport
    failure"), without the ``KafkaError{code=…}`` wrapper."""
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)
