"""A ``modelport batch run`` process for the crash tests, with test-only brakes.

``BATCH_CHUNK_DELAY`` (seconds) slows every staged chunk so the parent can kill the run half-way.
``BATCH_PAUSE_BEFORE_SWITCH=1`` prints ``SWITCHING`` and sleeps just before a Parquet commit's
atomic switch (the symlink rename, or the PUT of an object store's ``CURRENT`` pointer).
``BATCH_PAUSE_BEFORE_REDIS_SWITCH=1`` does the same inside a Redis commit, after it read the run
history, with the ``MULTI`` that moves the pointer queued but not executed.
``BATCH_PAUSE_IN_SQL_SWAP=1`` prints ``SWITCHING`` and makes the SQL swap transaction sleep on
the server after the old table was dropped and the new one renamed, before it commits.
Each lets the parent kill the run inside the commit step.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import sqlalchemy as sa

import modelport.batch.parquet_sink as parquet_sink
import modelport.batch.redis_sink as redis_sink
import modelport.batch.sql_sink as sql_sink
from modelport.cli.main import main

delay = float(os.environ.get("BATCH_CHUNK_DELAY", "0"))
if delay:
    original_write = parquet_sink.ParquetSink.write

    def slow_write(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(delay)
        original_write(self, *args, **kwargs)

    parquet_sink.ParquetSink.write = slow_write  # type: ignore[method-assign]
    original_sql_write = sql_sink.SqlSink.write

    def slow_sql_write(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(delay)
        original_sql_write(self, *args, **kwargs)

    sql_sink.SqlSink.write = slow_sql_write  # type: ignore[method-assign]
    original_redis_write = redis_sink.RedisSink.write

    def slow_redis_write(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(delay)
        original_redis_write(self, *args, **kwargs)

    redis_sink.RedisSink.write = slow_redis_write  # type: ignore[method-assign]

if os.environ.get("BATCH_PAUSE_BEFORE_REDIS_SWITCH"):
    original_pipeline = redis_sink.RedisSink.client.fget  # type: ignore[attr-defined]

    class PausedPipeline:
        """Pauses the transaction that publishes the run, with its commands queued, before EXEC."""

        def __init__(self, pipe: Any, sink: Any) -> None:
            self.pipe, self.sink, self.pointer = pipe, sink, False

        def rename(self, name: str, target: str, *args: Any, **kwargs: Any) -> Any:
            self.pointer = self.pointer or target == self.sink.live()
            return self.pipe.rename(name, target, *args, **kwargs)

        def execute(self) -> Any:
            if self.pointer:
                print("SWITCHING", flush=True)
                time.sleep(600)
            return self.pipe.execute()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.pipe, name)

    class PausedClient:
        def __init__(self, client: Any, sink: Any) -> None:
            self.client, self.sink = client, sink

        def pipeline(self, *args: Any, **kwargs: Any) -> Any:
            return PausedPipeline(self.client.pipeline(*args, **kwargs), self.sink)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.client, name)

    redis_sink.RedisSink.client = property(  # type: ignore[method-assign,assignment]
        lambda self: PausedClient(original_pipeline(self), self))

if os.environ.get("BATCH_PAUSE_IN_SQL_SWAP"):
    original_swap = sql_sink.SqlSink._swap

    def paused_swap(self: Any, staging: str, target: str, after: list[Any]) -> None:
        print("SWITCHING", flush=True)
        original_swap(self, staging, target, [*after, sa.text("SELECT pg_sleep(4)")])

    sql_sink.SqlSink._swap = paused_swap  # type: ignore[method-assign]

if os.environ.get("BATCH_PAUSE_BEFORE_SWITCH"):
    original_replace = os.replace

    def paused_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if ".link-" in str(src):
            print("SWITCHING", flush=True)
            time.sleep(600)
        original_replace(src, dst, *args, **kwargs)

    parquet_sink.os.replace = paused_replace  # type: ignore[attr-defined]
    original_put = parquet_sink._put

    def paused_put(fs: Any, path: str, data: bytes, *, local: bool) -> None:
        if path.endswith("/CURRENT"):  # the object store's switch: one PUT of the pointer
            print("SWITCHING", flush=True)
            time.sleep(600)
        original_put(fs, path, data, local=local)

    parquet_sink._put = paused_put

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
