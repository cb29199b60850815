"""``RedisSink``: one Redis key per row id, for offline serving; published by one pointer switch.

A run writes ``<prefix><run_id>:<row id>`` keys (value: the prediction payload as JSON, with an
optional TTL) — a namespace of its own — then sets ``<prefix>__current__`` to its run id in one
``MULTI``. Readers (the lookup route, :func:`lookup`) read the pointer, then the key, so they see
the old run's answers or the new run's, never a mix. Each chunk's keys and its checkpoint entry
are written in one ``MULTI``, so a resumed run rewrites only missing chunks. After a commit the
previous run's keys stay (a reader may have just read the old pointer); older runs are deleted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from modelport.batch.sink import Sink, Staged
from modelport.batch.source import redact
from modelport.errors import ConfigurationError, StorageError


class RedisSink(Sink):
    def __init__(self, url: str, *, prefix: str, key: Sequence[str], ttl: int | None = None
                 ) -> None:
        if not key:
            raise ConfigurationError(
                "a Redis output needs --key COLUMN: the row id each prediction is stored under")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError("--ttl must be a positive number of seconds")
        self.url = url
        self.prefix = prefix
        self.key = list(key)
        self.ttl = ttl
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url)
        return self._client

    # ------------------------------------------------------------------ key names
    def pointer(self) -> str:
        return f"{self.prefix}__current__"

    def namespace(self, run_id: str) -> str:
        return f"{self.prefix}{run_id}:"

    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}__run__:{run_id}"

    def _chunks_key(self, run_id: str) -> str:
        return f"{self.prefix}__chunks__:{run_id}"

    def _history_key(self) -> str:
        return f"{self.prefix}__history__"

    # ------------------------------------------------------------------ protocol
    def committed(self, run_id: str) -> dict[str, Any] | None:
        raw = self._call(self.client.hget, self._run_key(run_id), "summary")
        return None if raw is None else dict(json.loads(raw))

    def open(self, run_id: str, *, resume: bool, meta: dict[str, Any]) -> Staged:
        recorded = self._call(self.client.hget, self._run_key(run_id), "meta")
        if resume and recorded is not None:
            raw = self._call(self.client.hgetall, self._chunks_key(run_id))
            done = {int(k): _counts(v) for k, v in raw.items()}
            return Staged(dict(json.loads(recorded)), done)
        self._delete_namespace(run_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._chunks_key(run_id), self._run_key(run_id))
        pipe.hset(self._run_key(run_id), "meta", json.dumps(meta))
        self._call(pipe.execute)
        return Staged(meta, {})

    def write(self, run_id: str, index: int, table: pa.Table, counts: tuple[int, int]) -> None:
        namespace = self.namespace(run_id)
        pipe = self.client.pipeline(transaction=True)
        for row_id, payload in payloads(table, self.key):
            pipe.set(f"{namespace}{row_id}", payload, ex=self.ttl)
        pipe.hset(self._chunks_key(run_id), str(index), f"{counts[0]},{counts[1]}")
        self._call(pipe.execute)

    def commit(self, run_id: str, summary: dict[str, Any]) -> None:
        history = [h.decode() for h in self._call(self.client.lrange, self._history_key(), 0, -1)]
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.pointer(), run_id)
        pipe.hset(self._run_key(run_id), "summary", json.dumps(summary))
        pipe.delete(self._chunks_key(run_id))
        pipe.lrem(self._history_key(), 0, run_id)
        pipe.lpush(self._history_key(), run_id)
        self._call(pipe.execute)
        for old in [h for h in history if h != run_id][1:]:  # keep the previous run
            self._delete_namespace(old)
            self._call(self.client.lrem, self._history_key(), 0, old)

    def current(self) -> str | None:
        raw = self._call(self.client.get, self.pointer())
        return None if raw is None else str(raw.decode())

    def _delete_namespace(self, run_id: str) -> None:
        keys: list[Any] = []
        for key in self.client.scan_iter(match=f"{_escape(self.namespace(run_id))}*", count=1000):
            keys.append(key)
            if len(keys) >= 1000:
                self._call(self.client.unlink, *keys)
                keys = []
        if keys:
            self._call(self.client.unlink, *keys)

    def _call(self, fn: Any, *args: Any) -> Any:
        import redis

        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise StorageError(f"Redis {redact(self.url)} failed: {exc}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def describe(self) -> str:
        return f"Redis {redact(self.url)} prefix {self.prefix!r}"


def payloads(table: pa.Table, key: Sequence[str]) -> list[tuple[str, str]]:
    """``(row id, JSON payload)`` per row: prediction, probabilities by class, model, run."""
    rows = table.to_pylist()
    out = []
    for row in rows:
        row_id = ":".join(str(row.pop(k)) for k in key)
        payload: dict[str, Any] = {}
        probabilities: dict[str, Any] = {}
        for name, value in row.items():
            if name.startswith("probability_"):
                probabilities[name[len("probability_"):]] = value
            elif name == "scored_at" and value is not None:
                payload[name] = value.isoformat()
            else:
                payload[name] = value
        if probabilities:
            payload["probabilities"] = probabilities
        out.append((row_id, json.dumps(payload, default=str)))
    return out


def _counts(raw: bytes) -> tuple[int, int]:
    rows_in, rejected = raw.decode().split(",")
    return int(rows_in), int(rejected)


def _escape(pattern: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in pattern)


def lookup(client: Any, prefix: str, keys: Sequence[str]) -> tuple[str | None, list[Any]]:
    """The published run id and the payload (or ``None``) for each key, from one pointer read."""
    raw = client.get(f"{prefix}__current__")
    if raw is None:
        return None, [None] * len(keys)
    run_id = raw.decode()
    values = client.mget([f"{prefix}{run_id}:{k}" for k in keys]) if keys else []
    return run_id, [None if v is None else json.loads(v) for v in values]
