"""``MetadataStore``: the registry's SQL side — versions, aliases, tags, archive, audit.

Every change runs in one transaction that also appends an audit row and bumps the state
counter. Version numbers are allocated inside that transaction: PostgreSQL locks the model's
row (``SELECT ... FOR UPDATE``), SQLite takes the write lock up front (``BEGIN IMMEDIATE``), and
the ``(name, version)`` primary key guards anything that slips past.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from modelport.errors import (
    ConfigurationError,
    ConflictError,
    ModelportError,
    NotFoundError,
    StorageError,
)
from modelport.registry import schema as t
from modelport.registry.records import Actor, AuditEntry, ModelInfo, ModelVersion
from modelport.registry.refs import LATEST, Ref

Clock = Callable[[], datetime]
_INSERT_ATTEMPTS = 5
_SQLITE_BUSY_SECONDS = 60.0


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` use psycopg 3; ``sqlite:///`` stays as it is."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):
        return url.split("@")[-1]


def create_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://...``, configured for the registry."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise ConfigurationError(
            f"cannot parse the registry URL {url!r}; use sqlite:///path/registry.db or "
            "postgresql://user@host:5432/database"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_SECONDS})
        _sqlite_transactions(engine)
        return engine
    if backend == "postgresql":
        try:
            return sa.create_engine(parsed, pool_pre_ping=True)
        except ImportError:
            raise ConfigurationError(
                "PostgreSQL registries need psycopg; run: pip install 'modelport[postgres]'"
            ) from None
    raise ConfigurationError(
        f"unsupported registry database {backend!r}; use sqlite:///path or postgresql://..."
    )


def _wal(cursor: Any) -> None:
    """Switch a database to WAL. Converting a new file takes a lock that SQLite does not wait
    for (no busy handler): when processes open a new registry at once, the losers get 'database
    is locked' at once. They retry until the busy timeout."""
    import sqlite3

    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, issue BEGIN: IMMEDIATE for writes, deferred for reads."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(_SQLITE_BUSY_SECONDS * 1000)}")
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("modelport_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class MetadataStore:
    """The SQL store behind a ``Registry``. ``open()`` connects and upgrades the schema."""

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        self.url = url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> Engine:
        """Connect (once) and bring the schema up to date; return the engine."""
        with self._lock:
            if self._engine is None:
                engine = create_engine(self.url)
                try:
                    t.upgrade(engine)
                except sa_exc.SQLAlchemyError as exc:
                    engine.dispose()
                    raise StorageError(
                        f"cannot reach the registry database at {safe_url(self.url)}: "
                        f"{_reason(exc)}; check MODELPORT_REGISTRY_URL and that the database "
                        "is running"
                    ) from None
                except ModelportError:
                    engine.dispose()
                    raise
                self._engine = engine
            return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        engine = self.open()
        with _translated(self.url), engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        engine = self.open()
        with _translated(self.url), engine.connect() as conn:
            conn.execution_options(modelport_write=True)
            with conn.begin():
                yield conn
                conn.execute(sa.update(t.state).where(t.state.c.id == 1)
                             .values(counter=t.state.c.counter + 1))

    # -- reads -----------------------------------------------------------------------------

    def state_token(self) -> str:
        with self._reading() as conn:
            row = conn.execute(sa.select(t.state.c.instance, t.state.c.counter)).one()
        return f"{row.instance}:{row.counter}"

    def list_models(self, *, include_archived: bool = False) -> list[ModelInfo]:
        with self._reading() as conn:
            query = sa.select(t.models).order_by(t.models.c.name)
            if not include_archived:
                query = query.where(t.models.c.archived.is_(False))
            return [self._model_info(conn, row) for row in conn.execute(query)]

    def get_model(self, name: str) -> ModelInfo:
        with self._reading() as conn:
            return self._model_info(conn, self._model_row(conn, name))

    def list_versions(self, name: str, *, include_archived: bool = False) -> list[ModelVersion]:
        with self._reading() as conn:
            self._model_row(conn, name)
            query = (sa.select(t.versions).where(t.versions.c.name == name)
                     .order_by(t.versions.c.version))
            if not include_archived:
                query = query.where(t.versions.c.archived.is_(False))
            by_version = self._aliases_by_version(conn, name)
            return [_version(row, by_version.get(row.version, ())) for row in conn.execute(query)]

    def resolve(self, ref: Ref) -> ModelVersion:
        """The version ``ref`` names; aliases to archived versions are refused."""
        with self._reading() as conn:
            model = self._model_row(conn, ref.name)
            if ref.version is not None:
                number = ref.version
            elif ref.alias == LATEST:
                if model.archived:
                    raise ConflictError(f"model {ref.name!r} is archived; name a version "
                                        f"explicitly ({ref.name}:N) or unarchive it")
                found = conn.execute(
                    sa.select(sa.func.max(t.versions.c.version)).where(
                        t.versions.c.name == ref.name, t.versions.c.archived.is_(False))
                ).scalar()
                if found is None:
                    raise NotFoundError(f"model {ref.name!r} has no active versions; register "
                                        "one, or name an archived version explicitly")
                number = int(found)
            else:
                found = conn.execute(sa.select(t.aliases.c.version).where(
                    t.aliases.c.name == ref.name, t.aliases.c.alias == ref.alias)).scalar()
                if found is None:
                    known = sorted(self._aliases(conn, ref.name))
                    raise NotFoundError(
                        f"model {ref.name!r} has no alias {ref.alias!r}"
                        + (f" (aliases: {', '.join(known)})" if known else "")
                        + f"; set it with 'modelport alias set {ref.name} {ref.alias} VERSION'")
                number = int(found)
                if model.archived:
                    raise ConflictError(f"model {ref.name!r} is archived; {ref} is not served "
                                        "until the model is unarchived")
            row = self._version_row(conn, ref.name, number)
            if ref.version is None and row.archived:
                raise ConflictError(f"{ref} points to archived version {number}; move the "
                                    "alias to an active version or unarchive it")
            return _version(row, self._aliases_by_version(conn, ref.name).get(number, ()))

    def aliases(self, name: str) -> dict[str, int]:
        with self._reading() as conn:
            self._model_row(conn, name)
            return self._aliases(conn, name)

    def audit(self, name: str | None = None, *, limit: int = 100) -> list[AuditEntry]:
        with self._reading() as conn:
            query = sa.select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
            if name is not None:
                query = query.where(t.audit.c.name == name)
            return [
                AuditEntry(id=row.id, at=_utc(row.at), actor=row.actor, host=row.host,
                           action=row.action, name=row.name, version=row.version,
                           details=dict(row.details or {}))
                for row in conn.execute(query)
            ]

    def artifact_uris(self) -> set[str]:
        """Every artifact URI a version refers to (archived ones included)."""
        with self._reading() as conn:
            return set(conn.execute(sa.select(t.versions.c.artifact_uri)).scalars())

    # -- changes ---------------------------------------------------------------------------

    def add_version(
        self,
        name: str,
        *,
        artifact_uri: str,
        flavor: str,
        manifest: dict[str, Any],
        files: dict[str, str],
        tags: dict[str, str],
        description: str,
        actor: Actor,
        version: int | None = None,
    ) -> ModelVersion:
        """Allocate the next version number and record the version, in one transaction.

        ``version``: record exactly this number instead; refused (:class:`ConflictError`) when
        the model already has it — versions are immutable. The number is checked under the
        same lock as allocation, so of concurrent registrations of one number exactly one wins.
        """
        for attempt in range(_INSERT_ATTEMPTS):
            try:
                with self._writing() as conn:
                    now = self._clock()
                    conn.execute(_insert_ignore(conn, t.models).values(
                        name=name, created_at=now, description=description, archived=False,
                        tags={}))
                    model = self._model_row(conn, name, lock=True)
                    if model.archived:
                        raise ConflictError(f"model {name!r} is archived; unarchive it before "
                                            "registering new versions")
                    top = conn.execute(sa.select(sa.func.max(t.versions.c.version))
                                       .where(t.versions.c.name == name)).scalar()
                    number = int(top or 0) + 1
                    if version is not None:
                        self._check_free(conn, name, version, number)
                        number = version
                    conn.execute(sa.insert(t.versions).values(
                        name=name, version=number, artifact_uri=artifact_uri, flavor=flavor,
                        manifest=manifest, files=files, created_at=now, created_by=actor.user,
                        archived=False, tags=tags))
                    self._record(conn, actor, "register", name, number,
                                 {"artifact_uri": artifact_uri, "flavor": flavor,
                                  "files": len(files)})
                    row = self._version_row(conn, name, number)
                    return _version(row, ())
            except sa_exc.IntegrityError:
                if attempt == _INSERT_ATTEMPTS - 1:
                    raise StorageError(
                        f"could not allocate a version number for {name!r} after "
                        f"{_INSERT_ATTEMPTS} attempts (concurrent registrations); try again"
                    ) from None
        raise AssertionError("unreachable")

    def set_alias(self, name: str, alias: str, version: int, *, actor: Actor) -> None:
        with self._writing() as conn:
            model = self._model_row(conn, name, lock=True)
            row = self._version_row(conn, name, version)
            if row.archived or model.archived:
                raise ConflictError(f"{name}:{version} is archived; an alias can only point to "
                                    "an active version")
            previous = self._aliases(conn, name).get(alias)
            now = self._clock()
            if previous is None:
                conn.execute(sa.insert(t.aliases).values(
                    name=name, alias=alias, version=version, updated_at=now))
            else:
                conn.execute(sa.update(t.aliases).where(
                    t.aliases.c.name == name, t.aliases.c.alias == alias
                ).values(version=version, updated_at=now))
            self._record(conn, actor, "set_alias", name, version,
                         {"alias": alias, "previous": previous})

    def delete_alias(self, name: str, alias: str, *, actor: Actor) -> None:
        with self._writing() as conn:
            self._model_row(conn, name, lock=True)
            previous = self._aliases(conn, name).get(alias)
            if previous is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            conn.execute(sa.delete(t.aliases).where(
                t.aliases.c.name == name, t.aliases.c.alias == alias))
            self._record(conn, actor, "delete_alias", name, previous, {"alias": alias})

    def set_tag(self, name: str, version: int | None, key: str, value: str | None, *,
                actor: Actor) -> None:
        """Set (or with ``value=None`` delete) a tag on a version, or on the model."""
        self.set_tags(name, version, {key: value}, actor=actor)

    def set_tags(self, name: str, version: int | None, changes: Mapping[str, str | None], *,
                 actor: Actor) -> None:
        """Set (``None``: delete) several tags on a version, or on the model, all or none: a
        deletion of a tag that does not exist changes nothing."""
        with self._writing() as conn:
            model = self._model_row(conn, name, lock=True)
            if version is None:
                table, where, tags = t.models, [t.models.c.name == name], dict(model.tags or {})
            else:
                row = self._version_row(conn, name, version)
                table, tags = t.versions, dict(row.tags or {})
                where = [t.versions.c.name == name, t.versions.c.version == version]
            for key, value in changes.items():
                if value is None and key not in tags:
                    target = f"{name}:{version}" if version is not None else f"model {name!r}"
                    raise NotFoundError(f"{target} has no tag {key!r}; nothing was changed")
            for key, value in changes.items():
                previous = tags.get(key)
                if value is None:
                    del tags[key]
                else:
                    tags[key] = value
                self._record(conn, actor, "set_tag" if value is not None else "delete_tag",
                             name, version, {"key": key, "value": value, "previous": previous})
            conn.execute(sa.update(table).where(*where).values(tags=tags))

    def set_archived(self, name: str, version: int | None, archived: bool, *,
                     actor: Actor) -> None:
        """Archive (or unarchive) a version, or the whole model when ``version`` is None."""
        with self._writing() as conn:
            self._model_row(conn, name, lock=True)
            if version is None:
                conn.execute(sa.update(t.models).where(t.models.c.name == name)
                             .values(archived=archived))
            else:
                self._version_row(conn, name, version)
                pointing = sorted(a for a, v in self._aliases(conn, name).items()
                                  if v == version)
                if archived and pointing:
                    raise ConflictError(
                        f"{name}:{version} is the target of alias(es) {', '.join(pointing)}; "
                        "move or delete them before archiving it")
                conn.execute(sa.update(t.versions).where(
                    t.versions.c.name == name, t.versions.c.version == version
                ).values(archived=archived))
            self._record(conn, actor, "archive" if archived else "unarchive", name, version, {})

    def record(self, actor: Actor, action: str, details: dict[str, Any]) -> None:
        """An audit entry for a change made outside the database (e.g. pruned uploads)."""
        with self._writing() as conn:
            self._record(conn, actor, action, None, None, details)

    # -- helpers ---------------------------------------------------------------------------

    def _record(self, conn: Connection, actor: Actor, action: str, name: str | None,
                version: int | None, details: dict[str, Any]) -> None:
        conn.execute(sa.insert(t.audit).values(
            at=self._clock(), actor=actor.user, host=actor.host, action=action, name=name,
            version=version, details=details))

    @staticmethod
    def _model_row(conn: Connection, name: str, *, lock: bool = False) -> sa.Row[Any]:
        query = sa.select(t.models).where(t.models.c.name == name)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no model named {name!r} in the registry; register it first "
                                "('modelport models list' shows the names there are)")
        return row

    @staticmethod
    def _check_free(conn: Connection, name: str, version: int, following: int) -> None:
        taken = conn.execute(sa.select(t.versions.c.version).where(
            t.versions.c.name == name, t.versions.c.version == version)).first()
        if taken is not None:
            raise ConflictError(
                f"model {name!r} already has version {version}; versions are immutable: "
                f"register without --version to get the next number ({following}), or under "
                "another name with --name ('modelport models register DIR --name NAME')")

    @staticmethod
    def _version_row(conn: Connection, name: str, version: int) -> sa.Row[Any]:
        row = conn.execute(sa.select(t.versions).where(
            t.versions.c.name == name, t.versions.c.version == version)).first()
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return row

    @staticmethod
    def _aliases(conn: Connection, name: str) -> dict[str, int]:
        rows = conn.execute(sa.select(t.aliases.c.alias, t.aliases.c.version)
                            .where(t.aliases.c.name == name).order_by(t.aliases.c.alias))
        return {row.alias: int(row.version) for row in rows}

    def _aliases_by_version(self, conn: Connection, name: str) -> dict[int, tuple[str, ...]]:
        out: dict[int, tuple[str, ...]] = {}
        for alias, version in self._aliases(conn, name).items():
            out[version] = (*out.get(version, ()), alias)
        return out

    def _model_info(self, conn: Connection, row: sa.Row[Any]) -> ModelInfo:
        stats = conn.execute(sa.select(
            sa.func.count(), sa.func.max(t.versions.c.version)
        ).where(t.versions.c.name == row.name)).one()
        latest = conn.execute(sa.select(sa.func.max(t.versions.c.version)).where(
            t.versions.c.name == row.name, t.versions.c.archived.is_(False))).scalar()
        return ModelInfo(
            name=row.name, created_at=_utc(row.created_at), description=row.description,
            archived=bool(row.archived), tags=dict(row.tags or {}),
            latest_version=int(latest) if latest is not None else None,
            version_count=int(stats[0]), aliases=self._aliases(conn, row.name))


def _version(row: sa.Row[Any], aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        name=row.name, version=int(row.version), flavor=row.flavor,
        artifact_uri=row.artifact_uri, files=dict(row.files), manifest=dict(row.manifest),
        created_at=_utc(row.created_at), created_by=row.created_by, tags=dict(row.tags or {}),
        aliases=aliases, archived=bool(row.archived))


def _insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """``INSERT`` that does nothing when the primary key exists (PostgreSQL and SQLite)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


@contextmanager
def _translated(url: str) -> Iterator[None]:
    """SQLAlchemy errors become ``StorageError`` (integrity conflicts pass through)."""
    try:
        yield
    except sa_exc.IntegrityError:
        raise
    except sa_exc.SQLAlchemyError as exc:
        raise StorageError(
            f"the registry database at {safe_url(url)} failed: {_reason(exc)}"
        ) from None


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


__all__ = ["MetadataStore", "create_engine", "normalize_url", "safe_url"]
