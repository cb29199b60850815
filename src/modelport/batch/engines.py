"""Engines: who runs the chunk tasks — threads here, a Dask cluster, or Spark executors.

An engine only maps :class:`~modelport.batch.task.ChunkTask` over chunks, a bounded number at a
time so memory stays flat however large the input is. Reading the input, resuming, counting and
the atomic commit stay in the job, so every engine gives the same output guarantees.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from modelport.batch.task import ChunkCounts, ChunkTask, run_chunk
from modelport.errors import ConfigurationError, UnsupportedModelError

ENGINES = ("local", "dask", "spark")
Chunks = Iterable[tuple[int, pa.RecordBatch]]


class Engine(ABC):
    name: str

    @abstractmethod
    def map(self, task: ChunkTask, chunks: Chunks) -> Iterator[ChunkCounts]:
        """Run ``task`` on every chunk; yield the counts as chunks finish, in input order."""

    def close(self) -> None:  # noqa: B027 - most engines hold nothing
        """Release workers the engine started."""

    def describe(self) -> str:
        return self.name


def in_order(futures: Iterable[Any], limit: int) -> Iterator[ChunkCounts]:
    """Results of ``futures`` in submission order, keeping at most ``limit`` in flight beyond the
    one awaited (bounded memory); futures not yet awaited are cancelled if the caller stops.

    Works for ``concurrent.futures`` and Dask futures alike (``result()`` / ``cancel()``).
    """
    window: deque[Any] = deque()
    try:
        for future in futures:
            window.append(future)
            while len(window) > limit:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        for future in window:
            future.cancel()


class LocalEngine(Engine):
    """Threads in this process: Arrow I/O, NumPy, ONNX Runtime and Parquet writing release the
    GIL, so reading the next chunk, scoring and writing overlap on every core."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def map(self, task: ChunkTask, chunks: Chunks) -> Iterator[ChunkCounts]:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="modelport-batch") as pool:
            submitted = (pool.submit(task.run, index, rows) for index, rows in chunks)
            yield from in_order(submitted, self.workers)

    def describe(self) -> str:
        return f"local ({self.workers} threads)"


class DaskEngine(Engine):
    """A Dask ``distributed`` scheduler at ``address``, or a local cluster of processes."""

    name = "dask"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers or os.cpu_count() or 1
        self._client: Any = None
        self._cluster: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise UnsupportedModelError(
                    "--engine dask needs Dask; run: pip install 'modelport[dask]'") from None
            if self.address:
                try:
                    self._client = Client(self.address, timeout=30)  # type: ignore[no-untyped-call]
                except OSError as exc:
                    raise ConfigurationError(
                        f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
            else:
                self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    dashboard_address=None)
                self._client = Client(self._cluster)  # type: ignore[no-untyped-call]
        return self._client

    def map(self, task: ChunkTask, chunks: Chunks) -> Iterator[ChunkCounts]:
        client = self._connect()
        shipped = client.scatter(task, broadcast=True)
        limit = 2 * max(len(client.scheduler_info().get("workers", {})), 1)
        submitted = (client.submit(run_chunk, shipped, index, rows, pure=False)
                     for index, rows in chunks)
        yield from in_order(submitted, limit)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def describe(self) -> str:
        return f"dask ({self.address or f'local cluster, {self.workers} processes'})"


class SparkEngine(Engine):
    """Spark executors (``master`` such as ``spark://host:7077``; default ``local[N]``).

    Chunks travel to executors in waves of a few per core; an existing active session (inside a
    user's Spark application) is reused and left running.
    """

    name = "spark"

    def __init__(self, master: str | None = None, workers: int | None = None) -> None:
        self.master = master
        self.workers = workers or os.cpu_count() or 1
        self._session: Any = None
        self._owned = False

    def _spark(self) -> Any:
        if self._session is None:
            try:
                from pyspark.sql import SparkSession
            except ImportError:
                raise UnsupportedModelError(
                    "--engine spark needs PySpark; run: pip install 'modelport[spark]'") from None
            active = SparkSession.getActiveSession()
            if active is not None:
                self._session = active
            else:
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
                os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
                self._session = (SparkSession.builder
                                 .master(self.master or f"local[{self.workers}]")
                                 .appName("modelport-batch")
                                 .config("spark.ui.enabled", "false")
                                 .getOrCreate())
                self._owned = True
        return self._session

    def map(self, task: ChunkTask, chunks: Chunks) -> Iterator[ChunkCounts]:
        sc = self._spark().sparkContext
        wave_size = 2 * max(int(sc.defaultParallelism), 1)
        wave: list[tuple[int, pa.RecordBatch]] = []

        def run(item: tuple[int, pa.RecordBatch]) -> ChunkCounts:
            return task.run(item[0], item[1])

        for item in chunks:
            wave.append(item)
            if len(wave) >= wave_size:
                yield from sc.parallelize(wave, len(wave)).map(run).collect()
                wave = []
        if wave:
            yield from sc.parallelize(wave, len(wave)).map(run).collect()

    def close(self) -> None:
        if self._session is not None and self._owned:
            self._session.stop()
        self._session = None

    def describe(self) -> str:
        return f"spark ({self.master or f'local[{self.workers}]'})"


def make_engine(name: str, *, address: str | None = None, workers: int | None = None) -> Engine:
    if name == "local":
        if address:
            raise ConfigurationError("--engine-address applies to --engine dask or spark only")
        return LocalEngine(workers)
    if name == "dask":
        return DaskEngine(address, workers)
    if name == "spark":
        return SparkEngine(address, workers)
    raise ConfigurationError(f"unknown --engine {name!r}; use one of {', '.join(ENGINES)}")
