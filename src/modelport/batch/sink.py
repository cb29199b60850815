"""``Sink``: where a run's rows go, all-or-nothing, resumable chunk by chunk.

Every sink follows the same protocol, called by the job in this order:

* ``committed(run_id)`` — the summary of an already finished run (a rerun is then a no-op);
* ``open(run_id, resume=..., meta=...)`` — prepare a private staging area for the run; with
  ``resume`` keep what an interrupted attempt staged and return the chunk numbers already there,
  together with the run's recorded ``meta`` (its original start time);
* ``write(run_id, index, table, counts)`` — stage one chunk, durably and idempotently (writing
  a chunk twice leaves it once); may run in parallel threads or on other processes, so sinks
  pickle and open their clients lazily;
* ``commit(run_id, summary)`` — make the staged result visible in one atomic step: readers see
  the previous complete result until then and the new complete result after.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class Staged:
    """What ``open`` found: the run's recorded metadata and the chunks already staged."""

    meta: dict[str, Any]
    #: chunk index -> (rows read, rows rejected) for every chunk already staged
    done: dict[int, tuple[int, int]] = field(default_factory=dict)


class Sink(ABC):
    #: where rejected rows go when the user names no place (``None``: the job picks one)
    def rejects_uri(self, run_id: str) -> str | None:
        return None

    @abstractmethod
    def committed(self, run_id: str) -> dict[str, Any] | None:
        """The summary stored when ``run_id`` committed here, or ``None``."""

    @abstractmethod
    def open(self, run_id: str, *, resume: bool, meta: dict[str, Any]) -> Staged:
        """Start (or, with ``resume``, continue) staging ``run_id``."""

    @abstractmethod
    def write(self, run_id: str, index: int, table: pa.Table, counts: tuple[int, int]) -> None:
        """Stage chunk ``index`` durably with its ``(rows read, rows rejected)`` counts.

        Writing the same chunk again replaces it."""

    @abstractmethod
    def commit(self, run_id: str, summary: dict[str, Any]) -> None:
        """Publish the staged run atomically and record ``summary`` with it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients (called once per process that used the sink)."""

    def describe(self) -> str:
        return type(self).__name__

    def __getstate__(self) -> dict[str, Any]:
        # clients are opened lazily in each process; never ship them
        return {k: (None if k.startswith("_client") else v) for k, v in self.__dict__.items()}
