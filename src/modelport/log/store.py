"""``LogStore``: where prediction and feedback rows go, and (for readable stores) come back from.

Three implementations, chosen by URL with :func:`open_store`:

* ``delta`` / a path / ``file://…`` / ``s3://bucket/prefix`` —
  :class:`~modelport.log.delta.DeltaStore`, the embedded default (Delta Lake tables under
  ``MODELPORT_HOME/log``);
* ``postgresql://…`` — :class:`~modelport.log.postgres.PostgresStore` (tables indexed by time);
* ``kafka://host:port/topic`` — :class:`~modelport.log.kafka.KafkaStore` (write-only: one JSON
  message per prediction keyed by prediction id, for a team's own lake).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from modelport.errors import ConfigurationError, InvalidInputError

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@runtime_checkable
class LogStore(Protocol):
    """A destination of prediction and feedback rows (see :mod:`modelport.log.schema`)."""

    #: a short description for log lines and errors (no credentials)
    name: str
    #: whether ``predictions`` / ``feedback`` can read rows back
    readable: bool

    def append_predictions(self, model: str, table: pa.Table) -> None:
        """Store ``table`` (rows of one model) atomically: all its rows or none. Called from the
        log's flush thread; raises ``StorageError`` when the store refuses."""

    def append_feedback(self, table: pa.Table) -> None:
        """Store feedback rows (``FEEDBACK_SCHEMA``) atomically."""

    def models(self) -> list[str]:
        """Names of the models with a predictions table."""
        ...

    def predictions(self, model: str, since: datetime | None = None,
                    until: datetime | None = None) -> Any:
        """The model's predictions as an Arrow table or dataset DuckDB can scan (time filters may
        be applied or left to the caller)."""

    def feedback(self) -> Any:
        """Every feedback row, as an Arrow table or dataset."""

    def close(self) -> None:
        """Release clients and connections."""


def check_model_name(model: str) -> str:
    if not _MODEL_NAME.match(model):
        raise InvalidInputError(f"{model!r} is not a valid model name", field="model")
    return model


def open_store(url: str, *, home: str | None = None,
               storage_options: Mapping[str, Any] | None = None) -> LogStore:
    """The store named by ``url`` (``delta`` means ``<home>/log``)."""
    url = url.strip()
    if url in ("", "delta", "default"):
        from modelport.settings import Settings

        base = home or str(Settings.from_env().home)
        url = f"{base.rstrip('/')}/log"
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme.startswith("postgres"):
        from modelport.log.postgres import PostgresStore

        store: LogStore = PostgresStore(url)
        return store
    if scheme == "kafka":
        from modelport.log.kafka import KafkaStore

        kafka: LogStore = KafkaStore.from_url(url)
        return kafka
    if scheme in ("file", "s3", "s3a", "gs", "az", "abfs", "abfss"):
        from modelport.log.delta import DeltaStore

        return DeltaStore(url, storage_options=storage_options)
    raise ConfigurationError(
        f"unknown prediction log store {url!r}; use delta, a folder, s3://bucket/prefix, "
        "postgresql://… or kafka://host:port/topic (--log)")


def first_readable(stores: list[LogStore]) -> LogStore:
    for store in stores:
        if store.readable:
            return store
    raise ConfigurationError(
        f"none of the log stores ({', '.join(s.name for s in stores)}) can be read back; a "
        "Kafka topic is write-only: read it from your own lake, or add a delta store (--log)")


__all__ = ["LogStore", "check_model_name", "first_readable", "open_store"]
