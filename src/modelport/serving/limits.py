"""Rate limits and quotas: pure objects over an injected clock, asked once per request.

- :class:`TokenBucket` — ``rate`` requests per second sustained, ``burst`` at once.
- :class:`CallerLimits` — one bucket per API key (requests/s) and one row counter per key and
  UTC day (rows/day); ``RateLimitedError`` (HTTP 429 + ``Retry-After``) when over.
- :class:`BadTokenLimiter` — clients that keep sending missing or wrong tokens are slowed down.

Counts live in each server process (a worker of ``--workers N`` counts its own share).

>>> clock = [0.0]
>>> bucket = TokenBucket(rate=1.0, burst=2, now=clock[0])
>>> bucket.take(clock[0]), bucket.take(clock[0]), bucket.take(clock[0])
(0.0, 0.0, 1.0)
>>> clock[0] = 1.0
>>> bucket.take(clock[0])
0.0
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from modelport.errors import RateLimitedError
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

    def take(self, now: float, amount: float = 1.0) -> float:
        level = min(self.burst, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if level >= amount:
            self.level = level - amount
            return 0.0
        self.level = level
        return (amount - level) / self.rate


class CallerLimits:
    """Per-key request rate and daily row quota; ``default_*`` for keys that set none."""

    def __init__(self, *, default_requests_per_s: float | None = None,
                 default_rows_per_day: int | None = None, clock: Clock = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.default_rps = default_requests_per_s
        self.default_rows = default_rows_per_day
        self._clock = clock
        self._wall = wall_clock
        self._buckets: dict[str, TokenBucket] = {}
        self._rows: dict[str, tuple[int, int]] = {}  # key → (UTC day ordinal, rows used)

    def admit(self, principal: Principal) -> None:
        """Count one request; ``RateLimitedError`` when the key is over its rate."""
        rate = principal.limits.requests_per_s or self.default_rps
        if rate is None:
            return
        now = self._clock()
        bucket = self._buckets.get(principal.key_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[principal.key_id] = TokenBucket(rate, max(1.0, rate), now)
        wait = bucket.take(now)
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
        day = today.toordinal()
        seen_day, used = self._rows.get(principal.key_id, (day, 0))
        if seen_day != day:
            used = 0
        if used + rows > quota:
            midnight = datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp() \
                + 86400
            raise RateLimitedError(
                f"API key {principal.name!r} has used {used} of its {quota} rows for today "
                f"(UTC); this request has {rows}", retry_after=max(1.0, math.ceil(
                    midnight - today.timestamp())))
        self._rows[principal.key_id] = (day, used + rows)


class BadTokenLimiter:
    """Clients (by address) that send bad tokens get ``burst`` tries, then ``rate`` per second."""

    def __init__(self, *, burst: int = 20, rate: float = 1.0, clock: Clock = time.monotonic,
                 max_clients: int = 10_000) -> None:
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max = max_clients

    @property
    def active(self) -> bool:
        """Whether any client has sent a bad token yet (else :meth:`check` has nothing to do)."""
        return bool(self._buckets)

    def check(self, client: str) -> None:
        """Before checking a token: refuse a client whose bad tries are used up."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return
        now = self._clock()
        level = min(bucket.burst, bucket.level + (now - bucket.updated) * bucket.rate)
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
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        bucket.take(now)


__all__ = ["BadTokenLimiter", "CallerLimits", "TokenBucket"]
