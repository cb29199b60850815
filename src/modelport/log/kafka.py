"""``KafkaStore``: one JSON message per prediction on a Kafka topic, keyed by prediction id.

For teams that feed their own lake (Kafka Connect, Flink, a warehouse loader). Messages carry the
predictions table's columns (``inputs`` as an object, ``predicted_at`` as ISO 8601 UTC);
feedback goes to ``<topic>.feedback`` the same way. A flush returns once the broker has
acknowledged every message (``acks=all``, idempotent producer); the topic cannot be read back
by ``modelport log``: add a ``delta`` store beside it for that.

    kafka://127.0.0.1:9092/predictions
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from modelport.errors import ConfigurationError, StorageError


class KafkaStore:
    readable = False

    def __init__(self, bootstrap: str, topic: str, *, config: dict[str, Any] | None = None
                 ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.feedback_topic = f"{topic}.feedback"
        self.name = f"kafka:{topic}"
        self.config = config or {}
        self._producer: Any = None

    @classmethod
    def from_url(cls, url: str) -> KafkaStore:
        rest = url.split("://", 1)[1]
        host, _, topic = rest.partition("/")
        if not host or not topic or "/" in topic:
            raise ConfigurationError(
                f"log store {url!r}: write it as kafka://host:port/topic (--log)")
        return cls(host, topic)

    def _open(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer({
                "bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                "acks": "all", "linger.ms": 5, "log_level": 3, **self.config})
        return self._producer

    def _send(self, topic: str, keys: list[str | None], values: list[bytes]) -> None:
        producer = self._open()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for key, value in zip(keys, values, strict=True):
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.1)
        remaining = producer.flush(30)
        if remaining or errors:
            raise StorageError(f"the log topic {topic} did not acknowledge "
                               f"{remaining + len(errors)} messages: "
                               f"{errors[0] if errors else 'timed out'}")

    def append_predictions(self, model: str, table: pa.Table) -> None:
        rows = table.drop_columns(["date"]).to_pylist() if "date" in table.column_names \
            else table.to_pylist()
        values = [orjson.dumps(r, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
                  for r in rows]
        self._send(self.topic, [r["prediction_id"] for r in rows], values)

    def append_feedback(self, table: pa.Table) -> None:
        rows = table.to_pylist()
        values = [orjson.dumps(r, default=_default) for r in rows]
        self._send(self.feedback_topic, [r.get("prediction_id") for r in rows], values)

    def models(self) -> list[str]:
        return []

    def predictions(self, model: str, since: datetime | None = None,
                    until: datetime | None = None) -> Any:
        return None

    def feedback(self) -> Any:
        return None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


__all__ = ["KafkaStore"]
