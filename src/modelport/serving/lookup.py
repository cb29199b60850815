"""Offline serving: answer from predictions a batch job precomputed, by key.

Routes (mounted under ``/lookup`` on the real-time server):

* ``GET /lookup/{endpoint}/{key}`` — the stored prediction, with the run and model version that
  produced it; 404 on a miss.
* ``POST /lookup/{endpoint}/{key}`` with ``{"features": {...}}`` — the same, but on a miss the
  endpoint's ``fallback`` model computes the prediction live from the features (``"source":
  "live"``).
* ``POST /lookup/{endpoint}`` with ``{"keys": [...]}`` or ``{"rows": [{"key": k, "features":
  {...}}, ...]}`` — the batch form: one answer per key, misses as ``{"found": false}`` (or live).

Endpoints are read from a YAML file named by ``MODELPORT_LOOKUP`` (or passed in)::

    endpoints:
      churn:                                  # Redis output of `modelport batch run`
        redis: redis://127.0.0.1:6379/0
        prefix: "modelport:churn:"
        fallback: churn@production            # optional live fallback
      churn-sql:                              # SQL output of `modelport batch run`
        sql: postgresql://scores@db/warehouse
        table: churn_scores
        key: customer_id

A Redis endpoint reads the hash ``<prefix>predictions`` that the batch job publishes
atomically (``HGET <prefix>predictions <key>``), so a lookup sees one run's results, never a mix.
Answers carry the record form of :mod:`modelport.core.schema` (``prediction_id`` holds the run).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from modelport.core.concurrency import run_sync
from modelport.core.runner import new_id
from modelport.core.schema import PredictionSchema, row_ids, timestamp_text
from modelport.errors import ConfigurationError, InvalidInputError, ModelportError, NotFoundError

if TYPE_CHECKING:
    from modelport.core.service import InferenceService

MAX_KEYS = 1000


@dataclass(frozen=True)
class LookupEndpoint:
    name: str
    redis: str | None = None
    prefix: str | None = None
    sql: str | None = None
    table: str | None = None
    key: str = "id"
    fallback: str | None = None

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> LookupEndpoint:
        known = set(cls.__dataclass_fields__) - {"name"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"lookup endpoint {name!r}: unknown setting(s) {unknown}; known: {sorted(known)}")
        endpoint = cls(name=name, **{k: str(v) for k, v in data.items()})
        if bool(endpoint.redis) == bool(endpoint.sql):
            raise ConfigurationError(
                f"lookup endpoint {name!r}: give exactly one of 'redis' (URL) or 'sql' (URL)")
        if endpoint.sql and not endpoint.table:
            raise ConfigurationError(f"lookup endpoint {name!r}: 'sql' needs 'table'")
        return endpoint


def load_endpoints(data: Mapping[str, Any]) -> dict[str, LookupEndpoint]:
    endpoints = data.get("endpoints") if isinstance(data, Mapping) else None
    if not isinstance(endpoints, Mapping) or not endpoints:
        raise ConfigurationError("a lookup configuration needs an 'endpoints' mapping")
    return {str(n): LookupEndpoint.from_mapping(str(n), v) for n, v in endpoints.items()}


class _Store:
    async def get(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _RedisStore(_Store):
    def __init__(self, endpoint: LookupEndpoint) -> None:
        import redis.asyncio as aredis

        assert endpoint.redis is not None
        self.client = aredis.Redis.from_url(endpoint.redis)
        self.prefix = endpoint.prefix if endpoint.prefix is not None else \
            f"modelport:{endpoint.name}:"

    async def get(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        # one read of the published hash (see modelport.batch.redis_sink)
        values = await self.client.hmget(f"{self.prefix}predictions", list(keys))
        return [None if v is None else dict(orjson.loads(v)) for v in values]

    async def close(self) -> None:
        await self.client.aclose()


class _SqlStore(_Store):
    def __init__(self, endpoint: LookupEndpoint) -> None:
        import sqlalchemy as sa

        from modelport.batch.source import sql_engine_url

        assert endpoint.sql is not None and endpoint.table is not None
        self.engine = sa.create_engine(sql_engine_url(endpoint.sql), pool_pre_ping=True)
        self.table_name = endpoint.table
        self.key = endpoint.key
        self.executor = ThreadPoolExecutor(4, thread_name_prefix=f"lookup-{endpoint.name}")
        self._table: Any = None

    def _fetch(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        import sqlalchemy as sa

        if self._table is None:
            self._table = sa.Table(self.table_name, sa.MetaData(), autoload_with=self.engine)
        column = self._table.c[self.key]
        typed: list[Any] = [_typed(k, column.type) for k in keys]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self._table).where(column.in_(typed))).mappings().all()
        found = {str(r[self.key]): _payload({str(k): v for k, v in r.items()}, self.key)
                 for r in rows}
        return [found.get(str(k)) for k in typed]

    async def get(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        return await run_sync(self.executor, self._fetch, keys)

    async def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.engine.dispose()


def _typed(key: str, sql_type: Any) -> Any:
    try:
        python_type = sql_type.python_type
    except NotImplementedError:
        return key
    if python_type is int:
        try:
            return int(key)
        except ValueError:
            raise InvalidInputError(f"key {key!r} is not an integer") from None
    return key


def _payload(row: dict[str, Any], key: str) -> dict[str, Any]:
    """A stored SQL row (the tabular form) as the record form of ``modelport.core.schema``."""
    row.pop(key, None)
    out: dict[str, Any] = {}
    probabilities: dict[str, Any] = {}
    for column, value in row.items():
        name = str(column)  # SQLAlchemy names are str subclasses, which orjson refuses as keys
        if name.startswith("probability_"):
            probabilities[name[len("probability_"):]] = value
            continue
        if name == "model" and probabilities:
            out["probabilities"] = probabilities
            probabilities = {}
        if isinstance(value, datetime):
            out[name] = timestamp_text(value if value.tzinfo else value.replace(tzinfo=UTC))
        else:
            out[name] = value
    if probabilities:
        out["probabilities"] = probabilities
    return out


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class LookupApp:
    """The ASGI app behind ``/lookup``; ``service`` computes live fallbacks."""

    def __init__(self, endpoints: Mapping[str, LookupEndpoint],
                 service: InferenceService | None = None) -> None:
        self.endpoints = dict(endpoints)
        self.service = service
        self._stores: dict[str, _Store] = {}

    def _store(self, endpoint: LookupEndpoint) -> _Store:
        store = self._stores.get(endpoint.name)
        if store is None:
            store = _RedisStore(endpoint) if endpoint.redis else _SqlStore(endpoint)
            self._stores[endpoint.name] = store
        return store

    async def close(self) -> None:
        for store in self._stores.values():
            await store.close()
        self._stores.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            status, body = await self._handle(scope, receive)
        except ModelportError as exc:
            status = 404 if isinstance(exc, NotFoundError) else 400 if isinstance(
                exc, InvalidInputError | ConfigurationError) else 503
            body = {"error": str(exc)}
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def _handle(self, scope: dict[str, Any], receive: Any) -> tuple[int, Any]:
        from urllib.parse import unquote

        parts = [unquote(p) for p in scope["path"].strip("/").split("/") if p]
        method = scope["method"]
        if not parts or len(parts) > 2:
            raise NotFoundError("use /lookup/{endpoint}/{key} or POST /lookup/{endpoint}")
        endpoint = self.endpoints.get(parts[0])
        if endpoint is None:
            raise NotFoundError(
                f"no lookup endpoint {parts[0]!r}; configured: {sorted(self.endpoints)}")
        body = await _json_body(receive) if method == "POST" else {}
        if len(parts) == 2:
            if method not in ("GET", "POST"):
                raise InvalidInputError(f"{method} is not supported here; use GET or POST")
            features = body.get("features") if isinstance(body, dict) else None
            answer = (await self._answer(endpoint, [(parts[1], features)]))[0]
            if not answer["found"]:
                raise NotFoundError(
                    f"no precomputed prediction for key {parts[1]!r} in {endpoint.name!r}"
                    + ("; send its features in a POST body to compute it live"
                       if endpoint.fallback else ""))
            return 200, answer
        if method != "POST":
            raise InvalidInputError("the batch form is POST with {\"keys\": [...]}")
        return 200, {"results": await self._answer(endpoint, _batch_items(body))}

    async def _answer(self, endpoint: LookupEndpoint,
                      items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        stored = await self._store(endpoint).get([k for k, _ in items])
        answers: list[dict[str, Any]] = []
        live: list[int] = []
        for i, ((key, features), value) in enumerate(zip(items, stored, strict=True)):
            if value is not None:
                answers.append({"key": key, "found": True, "source": "precomputed", **value})
            else:
                answers.append({"key": key, "found": False})
                if features is not None and endpoint.fallback:
                    live.append(i)
        if live:
            await self._live(endpoint, items, live, answers)
        return answers

    async def _live(self, endpoint: LookupEndpoint, items: list[tuple[str, Any]],
                    rows: list[int], answers: list[dict[str, Any]]) -> None:
        if self.service is None or endpoint.fallback is None:
            raise ConfigurationError(f"lookup endpoint {endpoint.name!r} has no live fallback")
        runner = self.service.runner(endpoint.fallback)
        batch = runner.model.coerce([items[i][1] for i in rows])
        request_id = new_id()
        result = await runner.submit(batch, source="lookup", endpoint=endpoint.name,
                                     request_id=request_id)
        schema = PredictionSchema.of(runner.model.signature)
        records = schema.records(result, ids=row_ids(request_id, len(rows), single=len(rows) == 1),
                                 model=runner.name, version=runner.version,
                                 predicted_at=datetime.now(UTC))
        for i, record in zip(rows, records, strict=True):
            answers[i] = {"key": items[i][0], "found": True, "source": "live", **record}


async def _json_body(receive: Any) -> Any:
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > 8 * 1024 * 1024:
            raise InvalidInputError("request body over 8 MiB; send fewer keys per request")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not JSON: {exc}") from None


def _batch_items(body: Any) -> list[tuple[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("keys"), list):
        items = [(str(k), None) for k in body["keys"]]
    elif isinstance(body, dict) and isinstance(body.get("rows"), list):
        items = []
        for row in body["rows"]:
            if not isinstance(row, dict) or "key" not in row:
                raise InvalidInputError('each entry of "rows" needs a "key" (and "features")')
            items.append((str(row["key"]), row.get("features")))
    else:
        raise InvalidInputError('send {"keys": [...]} or {"rows": [{"key": ..., "features": '
                                '{...}}]}')
    if len(items) > MAX_KEYS:
        raise InvalidInputError(f"at most {MAX_KEYS} keys per request; got {len(items)}")
    return items


def mount_lookup(app: Any, endpoints: Mapping[str, LookupEndpoint] | None = None,
                 env: Mapping[str, str] = os.environ) -> LookupApp | None:
    """Mount ``/lookup`` on a serving app (``app.mount`` / ``app.service`` / hooks).

    Without ``endpoints``, reads the YAML file named by ``MODELPORT_LOOKUP``; does nothing when
    neither is given.
    """
    if endpoints is None:
        path = env.get("MODELPORT_LOOKUP")
        if not path:
            return None
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                endpoints = load_endpoints(yaml.safe_load(fh) or {})
        except FileNotFoundError:
            raise ConfigurationError(f"MODELPORT_LOOKUP file {path!r} does not exist") from None
    lookup = LookupApp(endpoints, getattr(app, "service", None))
    app.mount("/lookup", lookup)
    shutdown = getattr(app, "on_shutdown", None)
    if isinstance(shutdown, list):
        shutdown.append(lookup.close)
    return lookup


__all__ = ["LookupApp", "LookupEndpoint", "load_endpoints", "mount_lookup"]
