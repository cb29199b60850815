"""Rate limits and quotas: pure objects over an injected clock, asked once per request.

- :class:`TokenBucket` — ``rate`` requests per second sustained, ``burst`` at once.
- :class:`CallerLimits` — one bucket per API key (requests/s) and one row counter per key and
  UTC day (rows/day); ``RateLimitedError`` (HTTP 429 + ``Retry-After``) when over.
- :class:`LimitTable` — where those counts live: a memory-mapped table that the workers of
  ``serve --workers N`` share (a file under ``fcntl`` locks), so a key's limit is one limit on
  the host, not one per worker; anonymous memory for a single process.
- :class:`BadTokenLimiter` — clients that keep sending missing or wrong tokens are slowed down.

Rows counted per day also go to the registry database (``modelport_key_usage``) every
``auth.refresh_s`` and are read back from it: a daily quota survives restarts and is shared by
every server on that registry (within one refresh interval between hosts). Request rates are
per host.

>>> clock = [0.0]
>>> bucket = TokenBucket(rate=1.0, burst=2, now=clock[0])
>>> bucket.take(clock[0]), bucket.take(clock[0]), bucket.take(clock[0])
(0.0, 0.0, 1.0)
>>> clock[0] = 1.0
>>> bucket.take(clock[0])
0.0
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelport.errors import ConfigurationError, RateLimitedError, StorageError
from modelport.serving.auth import Principal

Clock = Callable[[], float]


class TokenBucket:
    """``take`` answers 0 when a request may go now, else the seconds until it may."""

    __slots__ = ("burst", "level", "rate", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.updated = now

    def level_at(self, now: float) -> float:
        return _refill(self.level, self.updated, self.rate, self.burst, now)

    def take(self, now: float, amount: float = 1.0) -> float:
        self.level, wait = _draw(self.level_at(now), self.rate, amount)
        self.updated = now
        return wait


def _refill(level: float, updated: float, rate: float, burst: float, now: float) -> float:
    """A bucket's level at ``now``: ``rate`` per second since ``updated``, at most ``burst``."""
    return min(burst, level + max(0.0, now - updated) * rate)


def _draw(level: float, rate: float, amount: float = 1.0) -> tuple[float, float]:
    """(the level after, seconds to wait): ``amount`` is taken when the level holds it."""
    if level >= amount:
        return level - amount, 0.0
    return level, (amount - level) / rate


# ------------------------------------------------------------------------ the shared table
_MAGIC = b"MPLIMIT1"
_HEADER = struct.Struct("<8sq")  # magic, slot count
#: key id (as the database counts it, see ``_stored_id``); token level and when it was last
#: updated (CLOCK_MONOTONIC, one clock for every process on the host); the UTC day (ordinal) the
#: row counts are for; rows counted by the database at the last sync (every server's); rows this
#: host counted since
_SLOT = struct.Struct("<64sddqqq")
_SLOT_SIZE = 128
_PROBES = 32
_EMPTY = bytes(64)


def _stored_id(key_id: str) -> bytes:
    """A key id as the table and the usage table keep it: itself, or a digest when longer
    than 64 bytes (a JWT subject can be)."""
    raw = key_id.encode()
    if len(raw) <= 64:
        return raw.ljust(64, b"\0")
    return (b"h:" + hashlib.blake2b(raw, digest_size=16).hexdigest().encode()).ljust(64, b"\0")


class UsageSync(Protocol):
    """Where daily row counts are summed across servers (``SqlUsageStore``)."""

    def add(self, day: int, rows: dict[str, int]) -> dict[str, int]:
        """Add ``rows`` (key id → rows) to ``day``'s totals; answer the new totals of those
        keys and of every other key counted that day."""
        ...


class LimitTable:
    """Per-key token levels and daily row counts in one memory map.

    ``path``: a file every worker of one server maps (made by the supervisor; each operation
    holds an ``fcntl`` lock on it); ``None``: anonymous memory for one process.
    """

    def __init__(self, path: str | None = None, *, slots: int = 16_384) -> None:
        self.path = path
        size = _HEADER.size + slots * _SLOT_SIZE
        size += -size % mmap.PAGESIZE
        if path is None:
            self._fd = -1
            self._map = mmap.mmap(-1, size)
            _HEADER.pack_into(self._map, 0, _MAGIC, slots)
        else:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            with self._locked():
                if os.fstat(self._fd).st_size < size:
                    os.ftruncate(self._fd, size)
                self._map = mmap.mmap(self._fd, size)
                magic, count = _HEADER.unpack_from(self._map, 0)
                if magic != _MAGIC:
                    _HEADER.pack_into(self._map, 0, _MAGIC, slots)
                elif count != slots:
                    raise ConfigurationError(
                        f"the limits file {path} holds {count} slots, not {slots}; remove it "
                        "and start 'modelport serve' again")
        self.slots = slots
        self._index: dict[str, int] = {}  # key id → slot, this process's cache

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._fd < 0:
            yield
            return
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _slot(self, key_id: str) -> int:
        """The slot of ``key_id`` (under the lock), claimed when new; when every probed slot
        is taken, the least recently used of them is given to this key."""
        stored = _stored_id(key_id)
        offset = self._index.get(key_id)
        if offset is not None and self._map[offset:offset + 64] == stored:
            return offset
        start = int.from_bytes(hashlib.blake2b(stored, digest_size=8).digest(), "little")
        oldest, oldest_at = -1, math.inf
        for probe in range(_PROBES):
            offset = _HEADER.size + ((start + probe) % self.slots) * _SLOT_SIZE
            found = self._map[offset:offset + 64]
            if found == stored:
                break
            if found == _EMPTY:
                _SLOT.pack_into(self._map, offset, stored, math.nan, 0.0, 0, 0, 0)
                break
            updated = _SLOT.unpack_from(self._map, offset)[2]
            if updated < oldest_at:
                oldest, oldest_at = offset, updated
        else:
            offset = oldest
            _SLOT.pack_into(self._map, offset, stored, math.nan, 0.0, 0, 0, 0)
        self._index[key_id] = offset
        return offset

    def take(self, key_id: str, rate: float, burst: float, now: float) -> float:
        """One request from ``key_id``'s bucket: 0 when it may go, else seconds to wait."""
        with self._locked():
            offset = self._slot(key_id)
            stored, level, updated, day, synced, pending = _SLOT.unpack_from(self._map, offset)
            level, wait = _draw(burst if math.isnan(level) else _refill(
                level, updated, rate, burst, now), rate)
            _SLOT.pack_into(self._map, offset, stored, level, now, day, synced, pending)
        return wait

    def charge(self, key_id: str, day: int, rows: int, quota: int) -> int:
        """Count ``rows`` for ``key_id`` on ``day`` unless that goes over ``quota``: answers
        -1 when counted, else the rows already used (nothing counted)."""
        with self._locked():
            offset = self._slot(key_id)
            stored, level, updated, seen, synced, pending = _SLOT.unpack_from(self._map, offset)
            if seen != day:
                seen, synced, pending = day, 0, 0
            used = int(synced + pending)
            if used + rows > quota:
                return used
            _SLOT.pack_into(self._map, offset, stored, level, updated, seen, synced,
                            pending + rows)
        return -1

    def used(self, key_id: str, day: int) -> int:
        with self._locked():
            _, _, _, seen, synced, pending = _SLOT.unpack_from(self._map, self._slot(key_id))
        return int(synced + pending) if seen == day else 0

    def sync(self, day: int, store: UsageSync) -> None:
        """Send the rows counted on this host since the last sync to ``store`` and take its
        totals (every server's) for ``day``. One process per table syncs (the first worker)."""
        with self._locked():
            pending = self._pending(day)
        totals = store.add(day, pending)  # may raise: then nothing was taken from the table
        with self._locked():
            for stored_id in set(totals) | set(pending):
                offset = self._slot(stored_id)  # a stored id stores as itself
                stored, level, updated, seen, _, now_pending = _SLOT.unpack_from(
                    self._map, offset)
                if seen != day:
                    seen, now_pending = day, 0
                _SLOT.pack_into(self._map, offset, stored, level, updated, seen,
                                totals.get(stored_id, 0), now_pending - pending.get(stored_id, 0))

    def _pending(self, day: int) -> dict[str, int]:
        """Rows counted on ``day`` and not yet synced, by stored key id (every process's)."""
        pending: dict[str, int] = {}
        unpack, view = _SLOT.unpack_from, self._map
        for index in range(self.slots):
            offset = _HEADER.size + index * _SLOT_SIZE
            if view[offset] == 0:
                continue
            stored, _, _, seen, _, rows = unpack(view, offset)
            if seen == day and rows:
                pending[stored.rstrip(b"\0").decode()] = rows
        return pending


class SqlUsageStore:
    """Daily row counts per key in the registry database (``modelport_key_usage``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, day: int, rows: dict[str, int]) -> dict[str, int]:
        from modelport.registry.schema import key_usage as t

        try:
            with self.engine.begin() as conn:
                for key_id, count in rows.items():
                    where = (t.c.key_id == key_id) & (t.c.day == day)
                    changed = conn.execute(sa.update(t).where(where).values(
                        rows=t.c.rows + count)).rowcount
                    if not changed:
                        conn.execute(sa.insert(t).values(key_id=key_id, day=day, rows=count))
                return self._totals(conn, day)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"counting API key rows in the registry failed: {exc}") from None

    def totals(self, day: int) -> dict[str, int]:
        """Rows per key id on ``day``, every server's, as last synced."""
        try:
            with self.engine.connect() as conn:
                return self._totals(conn, day)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"reading API key rows from the registry failed: {exc}") from None

    @staticmethod
    def _totals(conn: sa.Connection, day: int) -> dict[str, int]:
        from modelport.registry.schema import key_usage as t

        found = conn.execute(sa.select(t.c.key_id, t.c.rows).where(t.c.day == day))
        return {key_id: int(count) for key_id, count in found}


class CallerLimits:
    """Per-key request rate and daily row quota; ``default_*`` for keys that set none."""

    def __init__(self, *, default_requests_per_s: float | None = None,
                 default_rows_per_day: int | None = None, clock: Clock = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 table: LimitTable | None = None) -> None:
        self.default_rps = default_requests_per_s
        self.default_rows = default_rows_per_day
        self._clock = clock
        self._wall = wall_clock
        self.table = table if table is not None else LimitTable()

    def rate_of(self, principal: Principal) -> float | None:
        """The key's request rate, or the server's default; ``None``: not limited."""
        return principal.limits.requests_per_s or self.default_rps

    def admit(self, principal: Principal, rate: float | None) -> None:
        """Count one request at ``rate`` (``rate_of``); ``RateLimitedError`` when over."""
        if rate is None:
            return
        wait = self.table.take(principal.key_id, rate, max(1.0, rate), self._clock())
        if wait:
            raise RateLimitedError(
                f"API key {principal.name!r} is over its rate of {rate:g} requests/s; slow "
                "down", retry_after=max(1.0, math.ceil(wait)))

    def charge_rows(self, principal: Principal, rows: int) -> None:
        """Count ``rows`` predicted rows against today's quota (refused whole when over)."""
        quota = principal.limits.rows_per_day or self.default_rows
        if quota is None:
            return
        today = self._wall()
        used = self.table.charge(principal.key_id, today.toordinal(), rows, quota)
        if used >= 0:
            midnight = datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp() \
                + 86400
            raise RateLimitedError(
                f"API key {principal.name!r} has used {used} of its {quota} rows for today "
                f"(UTC); this request has {rows}", retry_after=max(1.0, math.ceil(
                    midnight - today.timestamp())))

    def sync(self, store: UsageSync) -> None:
        """Exchange today's row counts with the registry database (see the module doc)."""
        self.table.sync(self._wall().toordinal(), store)


class BadTokenLimiter:
    """Clients (by address) that send bad tokens get ``burst`` tries, then ``rate`` per second."""

    def __init__(self, *, burst: int = 20, rate: float = 1.0, clock: Clock = time.monotonic,
                 max_clients: int = 10_000) -> None:
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max = max_clients
        #: whether any client has sent a bad token yet (else :meth:`check` has nothing to do)
        self.active = False

    def check(self, client: str) -> None:
        """Before checking a token: refuse a client whose bad tries are used up."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return
        level = bucket.level_at(self._clock())
        if level < 1.0:
            raise RateLimitedError(
                "too many requests with missing or invalid credentials from this client; "
                "check the API key", retry_after=max(1.0, math.ceil((1.0 - level) / self.rate)))

    def failed(self, client: str) -> None:
        """Count one bad try."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, now)
            self.active = True
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        bucket.take(now)


__all__ = ["BadTokenLimiter", "CallerLimits", "LimitTable", "SqlUsageStore", "TokenBucket",
           "UsageSync"]
