"""Stream endpoints from URIs: ``kafka://HOST:PORT/TOPIC``, ``redis://HOST:PORT/DB/STREAM``, or a
SQLAlchemy database URL (``postgresql+psycopg://…``, ``sqlite:///…``) with a table name.

>>> parse("kafka://127.0.0.1:9092/events")
Endpoint(kind='kafka', location='127.0.0.1:9092', name='events')
>>> parse("redis://127.0.0.1:6379/0/events")
Endpoint(kind='redis', location='redis://127.0.0.1:6379/0', name='events')
>>> parse("postgresql+psycopg://postgres@127.0.0.1/test").kind
'sql'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from modelport.errors import ConfigurationError

Kind = Literal["kafka", "redis", "sql"]
_SQL_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql", "mariadb")


@dataclass(frozen=True)
class Endpoint:
    """Where a stream reads or writes: ``location`` is the broker / server, ``name`` the topic."""

    kind: Kind
    location: str
    name: str

    def with_name(self, name: str) -> Endpoint:
        return Endpoint(self.kind, self.location, name)


def parse(uri: str) -> Endpoint:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "kafka":
        topic = parts.path.strip("/")
        if not parts.netloc or not topic or "/" in topic:
            raise ConfigurationError(
                f"{uri!r}: write a Kafka endpoint as kafka://HOST:PORT/TOPIC")
        return Endpoint("kafka", parts.netloc, topic)
    if scheme in ("redis", "rediss"):
        path = [p for p in parts.path.split("/") if p]
        if len(path) == 1:
            path = ["0", *path]
        if len(path) != 2 or not path[0].isdigit():
            raise ConfigurationError(
                f"{uri!r}: write a Redis stream as redis://HOST:PORT/DB/STREAM")
        return Endpoint("redis", f"{scheme}://{parts.netloc}/{path[0]}", path[1])
    if scheme.split("+")[0] in _SQL_SCHEMES:
        return Endpoint("sql", uri, "")
    raise ConfigurationError(
        f"{uri!r}: unknown endpoint; use kafka://HOST:PORT/TOPIC, redis://HOST:PORT/DB/STREAM "
        "or a database URL such as postgresql+psycopg://USER@HOST/DB")


def open_source(endpoint: Endpoint, *, group: str, consumer: str, **options: Any) -> Any:
    """A started-later ``Source`` for ``endpoint`` (Kafka or Redis Streams)."""
    if endpoint.kind == "kafka":
        from modelport.stream.kafka import DEFAULT_PREFETCH, KafkaSource, read_ahead

        return KafkaSource(endpoint.location, [endpoint.name], group,
                           session_timeout_ms=options.get("session_timeout_ms", 10_000),
                           start_from=options.get("start_from", "earliest"),
                           prefetch=read_ahead(options["max_batch"]) if "max_batch" in options
                           else DEFAULT_PREFETCH,
                           config=options.get("config"))
    if endpoint.kind == "redis":
        from modelport.stream.redis_streams import RedisStreamSource

        return RedisStreamSource(endpoint.location, endpoint.name, group, consumer,
                                 claim_idle_ms=options.get("claim_idle_ms", 30_000),
                                 start_from=options.get("start_from", "earliest"))
    raise ConfigurationError("a stream source must be kafka://… or redis://…, not a database")


def open_sink(endpoint: Endpoint, *, table: str | None = None, **options: Any) -> Any:
    """A started-later ``Sink`` for ``endpoint``."""
    if endpoint.kind == "kafka":
        from modelport.stream.kafka import KafkaSink

        return KafkaSink(endpoint.location, endpoint.name,
                         transactional_id=options.get("transactional_id"),
                         config=options.get("config"))
    if endpoint.kind == "redis":
        from modelport.stream.redis_streams import RedisStreamSink

        return RedisStreamSink(endpoint.location, endpoint.name)
    if not table:
        raise ConfigurationError("a database sink needs --table NAME")
    from modelport.stream.sql import POSITION_KEY, SqlSink

    return SqlSink(endpoint.location, table,
                   key_columns=options.get("key_columns") or POSITION_KEY)
