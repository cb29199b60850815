"""``CsvSink``: one CSV file (``--output scores.csv``), replaced atomically by each run.

Chunks are staged as Parquet parts in ``.<name>.modelport/<run_id>/`` beside the file (durable
and resumable like a Parquet output); the commit writes the whole CSV to a temporary file in the
same folder and renames it over the output, so a reader opens the old file or the new one, whole.
On object stores the file is written in one PUT. Columns follow the tabular form of
:mod:`modelport.core.schema`; list outputs are JSON text. The staged parts are deleted after the
commit; the run's marker (and its rejects) stay, so running the same command again is a no-op.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from modelport.batch.parquet_sink import COMMITTED, ParquetSink, _fsync_dir, _put
from modelport.core.schema import lists_as_json
from modelport.errors import ConfigurationError, StorageError

CURRENT = "CURRENT"


class CsvSink(ParquetSink):
    @property
    def versions(self) -> str:
        parent, name = posixpath.split(self.path)
        return posixpath.join(parent, f".{name}.modelport")

    def current(self) -> str | None:
        pointer = posixpath.join(self.versions, CURRENT)
        self.fs.invalidate_cache(pointer)
        try:
            return str(self.fs.cat_file(pointer).decode().strip()) or None
        except FileNotFoundError:
            return None

    def _check_ours(self) -> None:
        if self.fs.exists(self.path) and self.current() is None:
            raise ConfigurationError(
                f"output {self.uri!r} exists and was not written by modelport batch; remove it or "
                "choose another output path")
        if self.fs.isdir(self.path):
            raise ConfigurationError(f"output {self.uri!r} is a folder; name a .csv file")

    def commit(self, run_id: str, summary: dict[str, Any]) -> None:
        folder = self.version_dir(run_id)
        self.fs.invalidate_cache(folder)
        parts = sorted(p for p in self.fs.ls(folder, detail=False)
                       if posixpath.basename(p).startswith("part-"))
        parent = posixpath.dirname(self.path)
        local_dir = parent if self.local else None
        if self.local:
            os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{posixpath.basename(self.path)}.",
                                   suffix=".tmp", dir=local_dir)
        os.close(fd)
        try:
            self._write_csv(parts, tmp)
            if self.local:
                os.replace(tmp, self.path)  # the atomic switch
                _fsync_dir(parent)  # type: ignore[arg-type]
            else:
                self.fs.put_file(tmp, self.path)  # one PUT: the old object or the new one
        except OSError as exc:
            raise StorageError(f"cannot write output file {self.uri!r}: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _put(self.fs, posixpath.join(self.versions, CURRENT), run_id.encode(), local=self.local)
        _put(self.fs, posixpath.join(folder, COMMITTED), json.dumps(summary).encode(),
             local=self.local)
        for part in parts:
            self.fs.rm(part)
        self._collect(keep={run_id})

    def _write_csv(self, parts: list[str], target: str) -> None:
        writer: pcsv.CSVWriter | None = None
        schema: pa.Schema | None = None
        try:
            for part in parts:
                with self.fs.open(part, "rb") as fh:
                    table = lists_as_json(pq.read_table(fh))
                table = table.replace_schema_metadata(None)
                if writer is None:
                    schema = table.schema
                    writer = pcsv.CSVWriter(target, schema)
                writer.write_table(table.cast(schema) if table.schema != schema else table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # no rows at all: an empty file
            open(target, "wb").close()
        with open(target, "rb+") as fh:
            os.fsync(fh.fileno())

    def describe(self) -> str:
        return f"CSV file {self.uri}"
