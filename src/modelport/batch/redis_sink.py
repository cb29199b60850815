"""``RedisSink``: one Redis hash of predictions per output, read with one ``HGET``.

The published result of a run lives in the hash ``<prefix>predictions`` (prefix default
``modelport:<model>:``), one field per row id (the ``--key`` columns joined with ``:``), whose
value is the prediction's JSON record (:mod:`modelport.core.schema`)::

    HGET modelport:churn:predictions 1020
    → {"customer_id": 1020, "prediction_id": "run-…-7", "prediction": 1,
       "probabilities": {"0": 0.1, "1": 0.9}, "model": "churn", "version": 3,
       "predicted_at": "2026-12-04T17:03:11.123456Z"}

A run stages its rows in ``<prefix>__staging__:<run_id>`` (each chunk's fields and its checkpoint
entry in one ``MULTI``, so a resumed run rewrites only missing chunks), then publishes in one
``MULTI``: the live hash is renamed aside and the staging hash renamed to the live name, so a
reader's ``HGET`` sees the old run's answers or the new run's, never a mix and never a gap; the
old hash is then freed with ``UNLINK`` (in the background). ``--ttl`` sets an expiry on the
published hash as a whole. Run records (``<prefix>__run__:<run_id>``) make a rerun a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from modelport.batch.sink import Sink, Staged
from modelport.batch.source import redact
from modelport.core.schema import timestamp_text
from modelport.errors import ConfigurationError, StorageError

#: the live hash's name after the prefix
PREDICTIONS = "predictions"


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
    def live(self) -> str:
        """The hash readers ``HGET`` from."""
        return f"{self.prefix}{PREDICTIONS}"

    def staging(self, run_id: str) -> str:
        return f"{self.prefix}__staging__:{run_id}"

    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}__run__:{run_id}"

    def _chunks_key(self, run_id: str) -> str:
        return f"{self.prefix}__chunks__:{run_id}"

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
        pipe = self.client.pipeline(transaction=True)
        pipe.unlink(self._chunks_key(run_id), self._run_key(run_id), self.staging(run_id))
        pipe.hset(self._run_key(run_id), "meta", json.dumps(meta))
        self._call(pipe.execute)
        return Staged(meta, {})

    def write(self, run_id: str, index: int, table: pa.Table, counts: tuple[int, int]) -> None:
        pipe = self.client.pipeline(transaction=True)
        fields = dict(payloads(table, self.key))
        if fields:
            pipe.hset(self.staging(run_id), mapping=fields)
        pipe.hset(self._chunks_key(run_id), str(index), f"{counts[0]},{counts[1]}")
        self._call(pipe.execute)

    def commit(self, run_id: str, summary: dict[str, Any]) -> None:
        staged = self._call(self.client.exists, self.staging(run_id))
        aside = f"{self.prefix}__old__:{run_id}"
        pipe = self.client.pipeline(transaction=True)
        pipe.unlink(aside)
        if self._call(self.client.exists, self.live()):
            pipe.rename(self.live(), aside)
        if staged:
            pipe.rename(self.staging(run_id), self.live())
            if self.ttl is not None:
                pipe.expire(self.live(), self.ttl)
        pipe.hset(self._run_key(run_id), "summary", json.dumps(summary))
        pipe.hset(self.live_runs(), self.live(), run_id)
        pipe.unlink(self._chunks_key(run_id))
        self._call(pipe.execute)
        self._call(self.client.unlink, aside)  # freed by Redis in the background

    def live_runs(self) -> str:
        """Which run each published hash holds (``HGET <prefix>__published__ <live hash>``)."""
        return f"{self.prefix}__published__"

    def current(self) -> str | None:
        raw = self._call(self.client.hget, self.live_runs(), self.live())
        return None if raw is None else str(raw.decode())

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
    """``(row id, JSON record)`` per row of a tabular-form ``table``: the record form of
    :mod:`modelport.core.schema` (kept columns, id, prediction, probabilities by class, extra
    outputs, model, version, predicted_at)."""
    out = []
    for row in table.to_pylist():
        row_id = ":".join(str(row[k]) for k in key)
        record: dict[str, Any] = {}
        probabilities: dict[str, Any] = {}
        for name, value in row.items():
            if name.startswith("probability_"):
                probabilities[name[len("probability_"):]] = value
                continue
            if name == "model" and probabilities:
                record["probabilities"] = probabilities
                probabilities = {}
            record[name] = timestamp_text(value) if isinstance(value, datetime) else value
        out.append((row_id, json.dumps(record, default=str)))
    return out


def _counts(raw: bytes) -> tuple[int, int]:
    rows_in, rejected = raw.decode().split(",")
    return int(rows_in), int(rejected)


def lookup(client: Any, prefix: str, keys: Sequence[str]) -> list[Any]:
    """The published record (or ``None``) for each key: one ``HMGET`` of the live hash."""
    if not keys:
        return []
    values = client.hmget(f"{prefix}{PREDICTIONS}", list(keys))
    return [None if v is None else json.loads(v) for v in values]
