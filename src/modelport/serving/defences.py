"""Defences against model attacks: pure checks the HTTP edge runs around each prediction.

- **Extraction / inversion** — :class:`ResponseShaper` rounds returned probabilities to N
  decimals or drops them (labels only); :class:`SweepDetector` notices callers whose recent
  inputs look like a sweep (exact repeats, or rows that differ from an earlier one in a single
  column: one-feature-at-a-time probing and grids), counted in
  ``modelport_sweep_suspected_total`` and logged as a warning (the alert) once per window.
  Per-key budgets are the rate limits and row quotas of :mod:`modelport.serving.limits`.
- **Evasion / out-of-distribution inputs** — :class:`OutOfDistribution` compares each request
  with the bundle's reference profile (:mod:`modelport.bundle.profile`): numbers further than
  ``ood_tolerance`` spreads (p90 - p10) outside the training range, categories never seen in
  training. ``flag`` counts (``modelport_out_of_distribution_total``), logs and names the
  columns in the ``x-modelport-out-of-distribution`` response header; ``refuse`` answers 400.

Settings: ``DefenceConfig`` (serve YAML ``defences:``; ``per_model`` overrides by served name).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from modelport.bundle.model import Model
from modelport.bundle.profile import read_profile
from modelport.core.batch import Batch, Result
from modelport.errors import InvalidInputError
from modelport.serving.auth_config import DefenceConfig

log = logging.getLogger("modelport.serving.defences")

OOD_HEADER = b"x-modelport-out-of-distribution"
_MAX_CALLERS = 10_000


class ResponseShaper:
    """Rounds probabilities or drops them; returns the result unchanged when neither is set."""

    def __init__(self, decimals: int | None, labels_only: bool) -> None:
        self.decimals = decimals
        self.labels_only = labels_only

    @property
    def active(self) -> bool:
        return self.labels_only or self.decimals is not None

    def shape(self, result: Result) -> Result:
        if result.probabilities is None or not self.active:
            return result
        if self.labels_only:
            return dataclasses.replace(result, probabilities=None)
        return dataclasses.replace(result, probabilities=np.round(
            result.probabilities.astype(np.float64), self.decimals or 0))


class OutOfDistribution:
    """Per-column checks against a reference profile; :meth:`check` names the columns a batch
    has values far outside training for."""

    def __init__(self, profile: Mapping[str, Any], tolerance: float) -> None:
        self.ranges: dict[str, tuple[float, float]] = {}
        self.categories: dict[str, frozenset[str]] = {}
        for name, feature in (profile.get("features") or {}).items():
            if feature.get("type") == "numeric" and "min" in feature:
                q = feature.get("quantiles") or []
                spread = (q[9] - q[1]) if len(q) == 11 else 0.0
                spread = spread or float(feature.get("std") or 0.0) or 1.0
                self.ranges[name] = (feature["min"] - tolerance * spread,
                                     feature["max"] + tolerance * spread)
            elif feature.get("type") == "categorical" and not feature.get("other"):
                self.categories[name] = frozenset(map(str, feature.get("frequencies") or {}))

    @classmethod
    def of(cls, model: Model, tolerance: float) -> OutOfDistribution | None:
        reference = model.manifest.reference
        if model.path is None or not isinstance(reference, str):
            return None
        try:
            return cls(read_profile(model.path / reference), tolerance)
        except (OSError, ValueError) as exc:
            log.warning("model %s: its reference profile is unreadable (%s); no "
                        "out-of-distribution checks", model.name, exc)
            return None

    def check(self, batch: Batch) -> list[str]:
        far: list[str] = []
        for name, (lo, hi) in self.ranges.items():
            column = batch.columns.get(name)
            if column is None:
                continue
            values = np.asarray(column)
            if values.dtype.kind not in "iufb":
                continue
            values = values.astype(np.float64, copy=False)
            with np.errstate(invalid="ignore"):
                if bool(((values < lo) | (values > hi)).any()):
                    far.append(name)
        for name, seen in self.categories.items():
            column = batch.columns.get(name)
            if column is not None and any(str(v) not in seen for v in column if v is not None):
                far.append(name)
        return far


class SweepDetector:
    """Per caller, the last ``window`` rows: too many exact repeats or one-column variations of
    earlier rows look like extraction (a sweep of one feature, or a grid)."""

    def __init__(self, window: int, threshold: float) -> None:
        self.window = window
        self.threshold = threshold
        self._rows: dict[str, deque[tuple[Any, ...]]] = {}
        self._since: dict[str, int] = {}  # rows since the last look

    def observe(self, caller: str, batch: Batch) -> bool:
        """Add ``batch``'s rows; every ``window`` rows of a caller, True when they look like a
        sweep (so an alert comes at most once per window)."""
        matrix = _rounded(batch)
        if matrix is None:
            return False
        rows = self._rows.get(caller)
        if rows is None:
            if len(self._rows) >= _MAX_CALLERS:  # forget the longest-known caller
                oldest = next(iter(self._rows))
                del self._rows[oldest]
                self._since.pop(oldest, None)
            rows = self._rows[caller] = deque(maxlen=self.window)
        rows.extend(matrix)
        since = self._since.get(caller, 0) + len(matrix)
        if since < self.window:
            self._since[caller] = since
            return False
        self._since[caller] = 0
        seen: set[tuple[Any, ...]] = set()
        masked: set[tuple[Any, ...]] = set()
        suspicious = 0
        for row in rows:
            keys = [(j, *row[:j], *row[j + 1:]) for j in range(len(row))]
            if row in seen or any(k in masked for k in keys):
                suspicious += 1
            seen.add(row)
            masked.update(keys)
        return suspicious / len(rows) >= self.threshold


def _rounded(batch: Batch) -> list[tuple[Any, ...]] | None:
    columns = [np.asarray(c) for c in batch.columns.values()]
    if not columns or any(c.ndim != 1 for c in columns):
        return None
    out = []
    for values in zip(*columns, strict=True):
        out.append(tuple(float(f"{v:.4g}") if isinstance(v, float | np.floating) else v
                         for v in values))
    return out


class Defences:
    """The defences of one server: built from ``DefenceConfig``, asked per request."""

    def __init__(self, config: DefenceConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self._ood: dict[tuple[str, int | None], OutOfDistribution | None] = {}
        self._shapers: dict[str, ResponseShaper] = {}
        self.sweeps = SweepDetector(config.sweep_window, config.sweep_threshold) \
            if config.sweep_detection else None
        self.ood_total = Counter("modelport_out_of_distribution_total",
                                 "Requests with inputs far outside the training data",
                                 ["model", "action"], registry=registry)
        self.sweep_total = Counter("modelport_sweep_suspected_total",
                                   "Windows of a caller's requests that looked like a sweep "
                                   "(model extraction)", ["caller"], registry=registry)

    @property
    def active(self) -> bool:
        c = self.config
        return bool(c.round_probabilities is not None or c.labels_only or c.per_model
                    or c.out_of_distribution != "off" or c.sweep_detection)

    def settings_for(self, name: str) -> DefenceConfig:
        override = self.config.per_model.get(name)
        return dataclasses.replace(self.config, **override) if override else self.config

    def inspect(self, name: str, model: Model, batch: Batch, caller: str) -> list[str]:
        """Before predicting: the out-of-distribution columns (400 when set to refuse) and the
        sweep watch. Returns the flagged columns."""
        settings = self.settings_for(name)
        flagged: list[str] = []
        if settings.out_of_distribution != "off":
            key = (model.name, model.version)
            if key not in self._ood:
                self._ood[key] = OutOfDistribution.of(model, settings.ood_tolerance)
            check = self._ood[key]
            flagged = check.check(batch) if check is not None else []
            if flagged:
                self.ood_total.labels(model.name, settings.out_of_distribution).inc()
                log.warning("out-of-distribution input for %s from %s: %s", name, caller,
                            ", ".join(flagged))
                if settings.out_of_distribution == "refuse":
                    raise InvalidInputError(
                        f"input far outside the training data of {name!r} in column(s) "
                        f"{', '.join(flagged)}; this server refuses such requests",
                        field=flagged[0])
        if self.sweeps is not None and self.sweeps.observe(caller, batch):
            self.sweep_total.labels(caller).inc()
            log.warning("ALERT possible model extraction: %s sent %d rows to %s that look like "
                        "a sweep (repeats or one-column variations)", caller,
                        self.sweeps.window, name)
        return flagged

    def shape(self, name: str, result: Result) -> Result:
        shaper = self._shapers.get(name)
        if shaper is None:
            settings = self.settings_for(name)
            shaper = self._shapers[name] = ResponseShaper(settings.round_probabilities,
                                                          settings.labels_only)
        return shaper.shape(result)


__all__ = ["OOD_HEADER", "Defences", "OutOfDistribution", "ResponseShaper", "SweepDetector"]
