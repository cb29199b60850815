"""Redis Streams: a consumer-group ``Source`` (``XREADGROUP`` / ``XACK``) and an ``XADD`` ``Sink``.

An entry carries its input either as a JSON payload in the field ``value`` or as plain fields,
one per input (``XADD s * f0 1.0 f1 2.0``: each value is read as JSON when it is JSON — numbers,
``true``, ``null`` — and as text otherwise); optionally a ``key`` field, and headers as fields
named ``h:<header>``. A dead letter of a plain-fields entry holds the entry's own fields again,
unchanged, beside the ``h:error…`` headers: nothing of the message is lost.

A worker first re-reads its own pending entries (read but never
acknowledged before a crash), and periodically claims entries that another consumer left pending
for longer than ``claim_idle_ms`` (``XAUTOCLAIM``), so a consumer that died is not a loss.
Offsets are entry ids (``"1700000000000-0"``); the partition is always 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from modelport.stream.message import Message, Output
from modelport.stream.sink import SinkError
from modelport.stream.source import RevokeHook

log = logging.getLogger("modelport.stream.redis")

_HEADER = "h:"
_PREFIX = _HEADER.encode()


def _entry_to_message(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
    headers = tuple((k.decode()[len(_HEADER):], v) for k, v in fields.items()
                    if k.startswith(_HEADER.encode()))
    ms = entry_id.split(b"-", 1)[0]
    timestamp = int(ms) if ms.isdigit() else None
    value = fields.get(b"value")
    if value is not None:
        return Message(stream, 0, entry_id.decode(), fields.get(b"key"), value, headers,
                       timestamp)
    plain = {k: v for k, v in fields.items() if k != b"key" and not k.startswith(_PREFIX)}
    record = {k.decode("utf-8", "replace"): _field_value(v) for k, v in plain.items()}
    return Message(stream, 0, entry_id.decode(), fields.get(b"key"),
                   orjson.dumps(record) if record else None, headers, timestamp,
                   tuple(fields.items()))


def _field_value(raw: bytes) -> Any:
    """A plain field's value: its JSON reading when it is JSON (``1.0``, ``true``), else text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


class RedisStreamSource:
    def __init__(
        self,
        url: str,
        stream: str,
        group: str,
        consumer: str,
        *,
        claim_idle_ms: int = 30_000,
        start_from: str = "earliest",
    ) -> None:
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer_name = consumer
        self.claim_idle_ms = claim_idle_ms
        self.start_id = "0" if start_from == "earliest" else "$"
        self.name = f"{url.rstrip('/')}/{stream}"
        self.client: redis.Redis | None = None
        self._own_pending = True
        self._next_claim = 0.0

    def start(self, on_revoke: RevokeHook | None = None) -> None:
        self.client = redis.Redis.from_url(self.url)
        try:
            self.client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except redis.ConnectionError as exc:
            from modelport.errors import ConfigurationError

            raise ConfigurationError(f"cannot reach Redis at {self.url}: {exc}") from None

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        client = self._client()
        if self._own_pending:  # entries this consumer read before a restart and never acked
            out = self._read("0", max_messages, None)
            if out:
                return out
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(self.claim_idle_ms / 2000.0, 0.1)
            claimed: Any = client.xautoclaim(self.stream, self.group, self.consumer_name,
                                        self.claim_idle_ms, "0-0", count=max_messages)
            entries = [(i, f) for i, f in claimed[1] if f is not None]
            gone = list(claimed[2]) if len(claimed) > 2 else []
            if gone:  # deleted from the stream while pending: nothing to process
                client.xack(self.stream, self.group, *gone)
            if entries:
                log.info("claimed %d entries left pending by another consumer", len(entries))
                return [_entry_to_message(self.stream, i, f) for i, f in entries]
        return self._read(">", max_messages, max(int(timeout_s * 1000), 1))

    def _read(self, start: str, count: int, block_ms: int | None) -> list[Message]:
        reply: Any = self._client().xreadgroup(self.group, self.consumer_name, {self.stream: start},
                                          count=count, block=block_ms)
        out: list[Message] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                if fields:
                    out.append(_entry_to_message(self.stream, entry_id, fields))
        return out

    def commit(self, messages: Sequence[Message]) -> None:
        ids = [str(m.offset) for m in messages]
        if ids:
            try:
                self._client().xack(self.stream, self.group, *ids)
            except redis.RedisError as exc:
                raise SinkError(f"XACK failed: {exc}") from None

    def lag(self) -> dict[tuple[str, int], int]:
        for info in self._client().xinfo_groups(self.stream):
            if info.get("name") in (self.group, self.group.encode()):
                lag = info.get("lag")
                return {(self.stream, 0): int(lag)} if lag is not None else {}
        return {}

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _client(self) -> redis.Redis:
        if self.client is None:
            from modelport.errors import ConfigurationError

            raise ConfigurationError("the Redis source is not started; call start() first")
        return self.client


class RedisStreamSink:
    """``XADD`` each output to ``stream`` (dead letters to their own stream) in one pipeline."""

    def __init__(self, url: str, stream: str, *, maxlen: int | None = None) -> None:
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.name = f"{url.rstrip('/')}/{stream}"
        self.client: redis.Redis | None = None

    def start(self) -> None:
        self.client = redis.Redis.from_url(self.url)

    def write(self, outputs: Sequence[Output]) -> None:
        assert self.client is not None, "call start() first"
        pipe = self.client.pipeline(transaction=False)
        for out in outputs:
            source = out.source
            fields: dict[Any, Any]
            if out.dead_letter and source is not None and source.fields is not None:
                # the entry's own fields, unchanged (its headers replaced by the dead letter's)
                fields = {k: v for k, v in source.fields if not k.startswith(_PREFIX)}
            else:
                fields = {b"value": out.value}
                if out.key is not None:
                    fields[b"key"] = out.key
            for k, v in out.headers:
                fields[(_HEADER + k).encode()] = v
            pipe.xadd(out.topic or self.stream, fields, maxlen=self.maxlen,
                      approximate=self.maxlen is not None)
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise SinkError(f"Redis at {self.url} unavailable: {exc}") from None
        except redis.RedisError as exc:
            raise SinkError(f"XADD to {self.stream} failed: {exc}", transient=False) from None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
