"""``DeltaStore``: the prediction log as Delta Lake tables (``deltalake``), local or on S3.

Layout under the store's root (``MODELPORT_HOME/log`` by default)::

    predictions/<model>/   one Delta table per model, partitioned by ``date``
    feedback/              one Delta table, partitioned by ``date``

Why Delta (measured on the 2-core development machine, same data, same process): 50 appends of
1,000 rows commit at 90 commits/s with ``deltalake`` against 9.4/s with ``pyiceberg`` and a SQL
catalog; 4 processes x 20 concurrent appends finished in 14.6 s with no commit conflict against
36.5 s with 6 retried commits; Delta has compaction (``optimize.compact``), file clean-up
(``vacuum``) and deletes built in, which pyiceberg 0.12 lacks for compaction. Iceberg appended one
1M-row table faster (1.33M rows/s against 0.73M rows/s), which the log's many small flushes do not
need.

Every append is one Delta commit: readers see a flush entirely or not at all. Writers in several
processes append to one table at once; a commit that loses the race is retried (appends never
conflict logically). A new feature in a later model version widens the ``inputs`` struct (schema
merge); rows of earlier versions read it as null.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from modelport.errors import StorageError
from modelport.log.schema import FEEDBACK_SCHEMA
from modelport.log.store import check_model_name

log = logging.getLogger("modelport.log")

_ATTEMPTS = 30


def object_store_options(options: Mapping[str, Any] | None, url: str) -> dict[str, str]:
    """fsspec-style options (``key``, ``secret``, ``endpoint_url``, ``client_kwargs``) as the
    ``AWS_*`` options ``deltalake`` takes; ``AWS_*`` keys pass through."""
    out: dict[str, str] = {}
    if not options:
        options = {}
    for key, value in options.items():
        if key.isupper():
            out[key] = str(value)
    if "key" in options:
        out.setdefault("AWS_ACCESS_KEY_ID", str(options["key"]))
    if "secret" in options:
        out.setdefault("AWS_SECRET_ACCESS_KEY", str(options["secret"]))
    endpoint = options.get("endpoint_url")
    if endpoint:
        out.setdefault("AWS_ENDPOINT_URL", str(endpoint))
        if str(endpoint).startswith("http://"):
            out.setdefault("AWS_ALLOW_HTTP", "true")
    region = (options.get("client_kwargs") or {}).get("region_name") or options.get("region")
    if region:
        out.setdefault("AWS_REGION", str(region))
    if url.startswith(("s3://", "s3a://")):
        out.setdefault("AWS_REGION", "us-east-1")
        # S3 has no atomic rename: commits use conditional PUT (If-None-Match), which AWS S3
        # and the compatible stores modelport is tested with support
        out.setdefault("AWS_CONDITIONAL_PUT", "etag")
    return out


class DeltaStore:
    """Predictions and feedback as Delta tables under ``root`` (a folder or ``s3://…``)."""

    readable = True

    def __init__(self, root: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.root = root.rstrip("/")
        if self.root.startswith("file://"):
            self.root = self.root[len("file://"):]
        self.options = object_store_options(storage_options, self.root)
        self.name = f"delta:{self.root}"
        self.local = "://" not in self.root
        # an open table per URI this store appends to: a new append then reads only the commits
        # since its last one, instead of replaying the whole log (measured 26 ms against 36 ms
        # per 10k-row append at 50 commits, 65 against 87 at 200)
        self._handles: dict[str, Any] = {}
        self._handles_lock = threading.Lock()

    def prepare(self) -> None:
        """Import the Delta writer now (about half a second), not at the first flush."""
        import deltalake  # noqa: F401

    # ------------------------------------------------------------------ paths
    def predictions_uri(self, model: str) -> str:
        return f"{self.root}/predictions/{check_model_name(model)}"

    @property
    def feedback_uri(self) -> str:
        return f"{self.root}/feedback"

    # ------------------------------------------------------------------ writing
    def append_predictions(self, model: str, table: pa.Table) -> None:
        self._append(self.predictions_uri(model), table)

    def append_feedback(self, table: pa.Table) -> None:
        self._append(self.feedback_uri, table.select(FEEDBACK_SCHEMA.names)
                     .cast(FEEDBACK_SCHEMA))

    def _append(self, uri: str, table: pa.Table) -> None:
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        if table.num_rows == 0:
            return
        if self.local:
            from pathlib import Path

            Path(uri).mkdir(parents=True, exist_ok=True)
        for attempt in range(_ATTEMPTS):
            with self._handles_lock:
                handle = self._handles.pop(uri, None)
            try:
                if handle is not None:  # newer commits of other writers: delta-rs checks the
                    # append against them and commits after them, as with a URI
                    write_deltalake(handle, table, mode="append", partition_by=["date"],
                                    schema_mode="merge", writer_properties=_writer_properties())
                else:
                    write_deltalake(uri, table, mode="append", partition_by=["date"],
                                    schema_mode="merge", storage_options=self.options or None,
                                    writer_properties=_writer_properties())
                    handle = _quietly(self._table, uri)  # (never a reason to write again)
                if handle is not None:
                    with self._handles_lock:  # kept only after a successful append
                        self._handles[uri] = handle
                return
            except (CommitFailedError, DeltaError) as exc:
                # another process committed the same version first (or created the table at
                # the same moment): appends never conflict logically, so take the next version
                if not _retryable(exc) or attempt == _ATTEMPTS - 1:
                    raise StorageError(f"cannot append to the prediction log {uri}: {exc}"
                                       ) from exc
                time.sleep(min(0.5, 0.005 * 2 ** attempt) * (0.5 + random.random()))
            except OSError as exc:
                raise StorageError(f"cannot append to the prediction log {uri}: "
                                   f"{exc.strerror or exc}") from exc

    # ------------------------------------------------------------------ reading
    def _table(self, uri: str) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(uri, storage_options=self.options or None)
        except TableNotFoundError:
            return None

    def models(self) -> list[str]:
        if self.local:
            from pathlib import Path

            folder = Path(self.root) / "predictions"
            if not folder.is_dir():
                return []
            return sorted(p.name for p in folder.iterdir() if (p / "_delta_log").is_dir())
        import fsspec

        fs, path = fsspec.core.url_to_fs(f"{self.root}/predictions", **_fsspec(self.options))
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)
                          if fs.exists(f"{p.rstrip('/')}/_delta_log"))
        except FileNotFoundError:
            return []

    def predictions(self, model: str, since: datetime | None = None,
                    until: datetime | None = None) -> Any:
        table = self._table(self.predictions_uri(model))
        if table is None:
            return None
        return table.to_pyarrow_dataset()

    def feedback(self) -> Any:
        table = self._table(self.feedback_uri)
        if table is None:
            return FEEDBACK_SCHEMA.empty_table()
        return table.to_pyarrow_dataset()

    # ------------------------------------------------------------------ upkeep
    def tables(self) -> list[str]:
        uris = [self.predictions_uri(m) for m in self.models()]
        if self._table(self.feedback_uri) is not None:
            uris.append(self.feedback_uri)
        return uris

    def compact(self, *, retention: float | None = None, vacuum_hours: float = 1.0,
                now: datetime | None = None) -> list[dict[str, Any]]:
        """Merge small files of every table, delete rows older than ``retention`` seconds (when
        given), then remove files no version newer than ``vacuum_hours`` needs."""
        report = []
        now = now or datetime.now(UTC)
        for uri in self.tables():
            table = self._table(uri)
            if table is None:
                continue
            entry: dict[str, Any] = {"table": uri[len(self.root) + 1:]}
            if retention is not None:
                cutoff = datetime.fromtimestamp(now.timestamp() - retention, UTC)
                column = "received_at" if uri == self.feedback_uri else "predicted_at"
                result = table.delete(f"{column} < '{cutoff.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'")
                entry["deleted_rows"] = int(result.get("num_deleted_rows", 0) or 0)
            metrics = table.optimize.compact()
            entry["files_removed"] = int(metrics.get("numFilesRemoved", 0))
            entry["files_added"] = int(metrics.get("numFilesAdded", 0))
            table.create_checkpoint()
            removed = table.vacuum(retention_hours=int(vacuum_hours), dry_run=False,
                                   enforce_retention_duration=False)
            entry["files_vacuumed"] = len(removed)
            report.append(entry)
        return report

    def close(self) -> None:
        with self._handles_lock:
            self._handles.clear()


_DICTIONARY_COLUMNS = ("model", "version", "endpoint", "variant", "source", "label")


def _writer_properties() -> Any:
    """Dictionary encoding only for the few-valued columns: trying it on every feature of
    every row (random floats) cost 2.6x the CPU of the whole write, for no smaller file."""
    from deltalake import ColumnProperties, WriterProperties

    return WriterProperties(
        default_column_properties=ColumnProperties(dictionary_enabled=False),
        column_properties={c: ColumnProperties(dictionary_enabled=True)
                           for c in _DICTIONARY_COLUMNS})


def _quietly(load: Any, uri: str) -> Any:
    try:
        return load(uri)
    except Exception:  # the next append opens the table by its URI again
        return None


def _retryable(exc: Exception) -> bool:
    from deltalake.exceptions import CommitFailedError

    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("already exists", "version", "concurrent", "conflict"))


def _fsspec(options: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "AWS_ACCESS_KEY_ID" in options:
        out["key"] = options["AWS_ACCESS_KEY_ID"]
    if "AWS_SECRET_ACCESS_KEY" in options:
        out["secret"] = options["AWS_SECRET_ACCESS_KEY"]
    if "AWS_ENDPOINT_URL" in options:
        out["endpoint_url"] = options["AWS_ENDPOINT_URL"]
    if "AWS_REGION" in options:
        out["client_kwargs"] = {"region_name": options["AWS_REGION"]}
    return out


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` or plain seconds → seconds (above zero)."""
    from modelport.durations import parse_duration as parse

    return parse(text, what="duration", positive=True)


__all__ = ["DeltaStore", "object_store_options", "parse_duration"]
