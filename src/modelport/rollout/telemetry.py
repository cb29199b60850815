"""Per-variant request statistics that every worker accumulates and the registry sums:
request and error counts, a latency histogram (for p99 across workers) and latency moments,
plus shadow agreement. Plain values with ``merge`` — no I/O.

>>> s = VariantStats()
>>> for ms in range(1, 101):
...     s.observe(float(ms), ok=ms != 50)
>>> s.requests, s.errors, 99 <= (s.p99_ms or 0) <= 99 * 1.1
(100, 1, True)
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

#: latency histogram upper edges in ms: 1.1x apart from 10 µs to ~2 h (bucket index = position)
EDGES: tuple[float, ...] = tuple(0.01 * 1.1 ** i for i in range(215))


def _index(ms: float) -> int:
    return min(bisect.bisect_left(EDGES, ms), len(EDGES) - 1)


@dataclass
class VariantStats:
    """Requests answered by one variant (or rows, for batch and stream)."""

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latency_sq: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)

    def observe(self, latency_ms: float, *, ok: bool = True, count: int = 1) -> None:
        self.requests += count
        if not ok:
            self.errors += count
        self.latency_sum += latency_ms * count
        self.latency_sq += latency_ms * latency_ms * count
        i = _index(latency_ms)
        self.hist[i] = self.hist.get(i, 0) + count

    def merge(self, other: VariantStats) -> VariantStats:
        self.requests += other.requests
        self.errors += other.errors
        self.latency_sum += other.latency_sum
        self.latency_sq += other.latency_sq
        for i, n in other.hist.items():
            self.hist[i] = self.hist.get(i, 0) + n
        return self

    def quantile_ms(self, q: float) -> float | None:
        """The upper edge of the bucket holding the ``q`` quantile (at most 10 % high)."""
        total = sum(self.hist.values())
        if total == 0:
            return None
        rank = math.ceil(q * total)
        seen = 0
        for i in sorted(self.hist):
            seen += self.hist[i]
            if seen >= rank:
                return EDGES[i]
        return EDGES[max(self.hist)]

    @property
    def p99_ms(self) -> float | None:
        return self.quantile_ms(0.99)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def latency_mean(self) -> float | None:
        return self.latency_sum / self.requests if self.requests else None

    @property
    def empty(self) -> bool:
        return self.requests == 0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "latency_sum": self.latency_sum, "latency_sq": self.latency_sq,
                "hist": {str(k): v for k, v in self.hist.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantStats:
        return cls(int(data.get("requests", 0)), int(data.get("errors", 0)),
                   float(data.get("latency_sum", 0.0)), float(data.get("latency_sq", 0.0)),
                   {int(k): int(v) for k, v in (data.get("hist") or {}).items()})


@dataclass
class ShadowStats:
    """How a shadow variant compares with the variant that answered the same rows."""

    compared: int = 0
    label_agree: int = 0
    prob_delta_sum: float = 0.0
    prob_delta_max: float = 0.0
    errors: int = 0
    dropped: int = 0
    latency: VariantStats = field(default_factory=VariantStats)

    def merge(self, other: ShadowStats) -> ShadowStats:
        self.compared += other.compared
        self.label_agree += other.label_agree
        self.prob_delta_sum += other.prob_delta_sum
        self.prob_delta_max = max(self.prob_delta_max, other.prob_delta_max)
        self.errors += other.errors
        self.dropped += other.dropped
        self.latency.merge(other.latency)
        return self

    @property
    def agreement(self) -> float | None:
        return self.label_agree / self.compared if self.compared else None

    @property
    def empty(self) -> bool:
        return not (self.compared or self.errors or self.dropped)

    def summary(self) -> dict[str, Any]:
        return {"compared": self.compared, "agreement": self.agreement,
                "mean_probability_delta": (self.prob_delta_sum / self.compared
                                           if self.compared else None),
                "max_probability_delta": self.prob_delta_max if self.compared else None,
                "errors": self.errors, "dropped": self.dropped,
                "latency_mean_ms": self.latency.latency_mean,
                "latency_p99_ms": self.latency.p99_ms}

    def to_dict(self) -> dict[str, Any]:
        return {"compared": self.compared, "label_agree": self.label_agree,
                "prob_delta_sum": self.prob_delta_sum, "prob_delta_max": self.prob_delta_max,
                "errors": self.errors, "dropped": self.dropped,
                "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShadowStats:
        return cls(int(data.get("compared", 0)), int(data.get("label_agree", 0)),
                   float(data.get("prob_delta_sum", 0.0)), float(data.get("prob_delta_max", 0.0)),
                   int(data.get("errors", 0)), int(data.get("dropped", 0)),
                   VariantStats.from_dict(data.get("latency") or {}))


__all__ = ["EDGES", "ShadowStats", "VariantStats"]
