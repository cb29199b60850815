"""Where a model version's drift reference comes from, built once per version and kept.

In order: a reference stored for the version by ``modelport monitor reference`` (from a data
file or from a window of logged traffic), else the sample the bundle carries
(``reference.parquet``, written when the model was saved with ``reference=``). A version with
neither has no reference; the message says how to add one.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from modelport.bundle.profile import SAMPLE_FILE, SAMPLE_ROWS
from modelport.errors import NotFoundError
from modelport.monitor.drift import Reference

if TYPE_CHECKING:
    from modelport.registry import Registry

NO_REFERENCE = (
    "{ref} has no drift reference; add one with 'modelport monitor reference {ref} --data "
    "training.parquet' (or '--from-log --since 7d' to use logged traffic), or save the model "
    "with reference=<training data>"
)


def table_columns(table: pa.Table) -> dict[str, Any]:
    """Arrow columns as NumPy arrays (numbers with nulls become NaN; text stays objects)."""
    out: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) \
                or pa.types.is_boolean(column.type):
            out[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_struct(column.type):
            continue
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


class References:
    """References by model version, loaded on first use and kept for the process.

    ``home`` is where stored references live (``<home>/monitor/references/<model>/<v>.parquet``).
    """

    def __init__(self, registry: Registry, home: Path | None = None) -> None:
        self.registry = registry
        self.home = Path(home) if home is not None else registry.settings.home
        self._cache: dict[tuple[str, int], Reference | None] = {}
        self._lock = threading.Lock()

    def stored_path(self, model: str, version: int) -> Path:
        return self.home / "monitor" / "references" / model / f"{version}.parquet"

    def store(self, model: str, version: int, table: pa.Table) -> Path:
        """Keep ``table`` (at most 100,000 rows, evenly thinned) as the version's reference."""
        if table.num_rows == 0:
            raise NotFoundError(f"no rows to make a reference of for {model}:{version}")
        if table.num_rows > SAMPLE_ROWS:
            step = table.num_rows / SAMPLE_ROWS
            table = table.take([int(i * step) for i in range(SAMPLE_ROWS)])
        path = self.stored_path(model, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)  # readers see the old reference or the new one
        with self._lock:
            self._cache.pop((model, version), None)
        return path

    def table(self, model: str, version: int) -> pa.Table | None:
        stored = self.stored_path(model, version)
        if stored.exists():
            return pq.read_table(stored)
        bundle = self.registry.fetch(f"{model}:{version}")
        sample = bundle / SAMPLE_FILE
        return pq.read_table(sample) if sample.exists() else None

    def get(self, model: str, version: int | None) -> Reference | None:
        if version is None:
            return None
        key = (model, version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        table = self.table(model, version)
        reference = Reference.from_columns(table_columns(table)) if table is not None else None
        with self._lock:
            self._cache[key] = reference
        return reference

    def require(self, model: str, version: int) -> Reference:
        reference = self.get(model, version)
        if reference is None:
            raise NotFoundError(NO_REFERENCE.format(ref=f"{model}:{version}"))
        return reference

    __call__ = get


__all__ = ["NO_REFERENCE", "References", "table_columns"]
