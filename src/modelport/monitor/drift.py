"""Data drift of one window of inputs (or outputs) against a reference sample.

A ``Reference`` is built once per model version from a sample of the training data (or a chosen
window of logged traffic) and keeps what every later window needs: each numeric column sorted,
its standard deviation, range and quantile bin edges, each categorical column's frequencies.
``compare(reference, window)`` is pure: it returns a ``DriftReport`` with every statistic for
every feature and a verdict per feature and for the dataset.

The statistics are SciPy's, not rewritten: the two-sample Kolmogorov-Smirnov test
(``scipy.stats.ks_2samp``), the Wasserstein distance (``scipy.stats.wasserstein_distance``), the
chi-square test (``scipy.stats.chisquare``) and the Jensen-Shannon distance
(``scipy.spatial.distance.jensenshannon``); PSI is the textbook sum over bins.

Which statistic decides follows common practice (and Evidently's defaults): with few rows a
p-value test at 0.05 (KS for numeric, chi-square for categorical); with many rows a distance at
0.1 (normed Wasserstein, Jensen-Shannon), since at a million rows every p-value says "drifted".

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = Reference.from_columns({"x": rng.normal(size=5000), "c": np.array(["a", "b"] * 2500)})
>>> same = compare(ref, {"x": rng.normal(size=5000), "c": np.array(["a", "b"] * 2500)})
>>> same.dataset_drift, same.features["x"].drifted
(False, False)
>>> moved = compare(ref, {"x": rng.normal(loc=1.0, size=5000), "c": np.array(["a"] * 5000)})
>>> sorted(moved.drifted_features)
['c', 'x']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from modelport.errors import InvalidInputError

Array = npt.NDArray[Any]
Kind = Literal["numeric", "categorical"]
Method = Literal["ks", "wasserstein", "psi", "chisquare", "jensenshannon"]

#: PSI uses this share for empty bins (log of zero otherwise), as credit-scoring practice does
PSI_EPSILON = 1e-4
#: a reference sample larger than this is thinned (evenly, sorted) when the Reference is built
MAX_REFERENCE_ROWS = 200_000


@dataclass(frozen=True)
class Thresholds:
    """When a feature counts as drifted; every field can be set per model and per feature.

    ``method`` ``"auto"`` picks a p-value test below ``large_sample`` current rows and a distance
    at or above it. ``min_samples`` is the fewest current rows that give any verdict at all.
    """

    method: Literal["auto"] | Method = "auto"
    p_value: float = 0.05
    distance: float = 0.1
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    large_sample: int = 1000
    min_samples: int = 30
    #: the dataset drifts when at least this share of its features drift
    dataset_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.p_value < 1:
            raise InvalidInputError(f"p_value must be between 0 and 1, not {self.p_value}")
        if self.min_samples < 1:
            raise InvalidInputError("min_samples must be at least 1")
        if not 0 < self.dataset_share <= 1:
            raise InvalidInputError("dataset_share must be in (0, 1]")


@dataclass(frozen=True)
class NumericReference:
    sorted_values: Array
    std: float
    min: float
    max: float
    #: inner quantile edges (deciles by default) used by PSI
    edges: Array
    proportions: Array
    missing_share: float

    kind: Kind = "numeric"


@dataclass(frozen=True)
class CategoricalReference:
    frequencies: dict[str, float]
    count: int
    missing_share: float

    kind: Kind = "categorical"


FeatureReference = NumericReference | CategoricalReference


@dataclass(frozen=True)
class Reference:
    """What each window is compared with; build it once per model version and keep it."""

    features: dict[str, FeatureReference]
    rows: int

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], *, bins: int = 10,
                     categorical: set[str] | None = None) -> Reference:
        """Columns of numbers become numeric features, anything else (or a name in
        ``categorical``) categorical ones."""
        features: dict[str, FeatureReference] = {}
        rows = 0
        for name, values in columns.items():
            arr = np.asarray(values)
            rows = max(rows, len(arr))
            if arr.dtype.kind in "iufb" and name not in (categorical or set()):
                features[name] = _numeric_reference(arr.astype(np.float64), bins)
            else:
                features[name] = _categorical_reference(arr)
        return cls(features, rows)


def _numeric_reference(values: Array, bins: int) -> NumericReference:
    missing = np.isnan(values)
    ok = np.sort(values[~missing])
    if ok.size > MAX_REFERENCE_ROWS:  # an even thinning of the sorted sample keeps its shape
        ok = ok[np.linspace(0, ok.size - 1, MAX_REFERENCE_ROWS).round().astype(np.int64)]
    if ok.size == 0:
        raise InvalidInputError("a reference column has no values; give rows with values")
    edges = np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, ok, side="right"), minlength=edges.size + 1)
    return NumericReference(
        sorted_values=ok, std=float(ok.std()), min=float(ok[0]), max=float(ok[-1]),
        edges=edges, proportions=counts / ok.size,
        missing_share=float(missing.mean()) if values.size else 0.0,
    )


def _categorical_reference(values: Array) -> CategoricalReference:
    present, missing = _categories(values)
    keys, counts = np.unique(present, return_counts=True)
    total = int(counts.sum())
    if total == 0:
        raise InvalidInputError("a reference column has no values; give rows with values")
    return CategoricalReference(
        frequencies={str(k): int(c) / total for k, c in zip(keys, counts, strict=True)},
        count=total, missing_share=missing / max(len(values), 1),
    )


def _categories(values: Array) -> tuple[Array, int]:
    """The values as strings without the missing ones, and how many were missing."""
    arr = np.asarray(values, dtype=object)
    missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in arr],
                       dtype=bool) if arr.size else np.zeros(0, dtype=bool)
    return arr[~missing].astype(str), int(missing.sum())


@dataclass(frozen=True)
class FeatureDrift:
    """Every statistic for one feature, and the verdict of the method that decides."""

    name: str
    kind: Kind
    rows: int
    method: Method | None
    value: float | None
    threshold: float | None
    drifted: bool
    psi: float
    missing_share: float
    out_of_range_share: float = 0.0
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    wasserstein: float | None = None
    wasserstein_normed: float | None = None
    chisquare_p_value: float | None = None
    jensenshannon: float | None = None
    unseen_categories: list[str] = field(default_factory=list)
    #: why no verdict was given (too few rows), else None
    note: str | None = None
    #: PSI against the warn / alert thresholds: "ok", "warn" or "alert"
    psi_level: Literal["ok", "warn", "alert"] = "ok"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class DriftReport:
    features: dict[str, FeatureDrift]
    rows: int
    dataset_share: float
    dataset_drift: bool

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drifted]

    @property
    def share_drifted(self) -> float:
        judged = [f for f in self.features.values() if f.method is not None]
        return len([f for f in judged if f.drifted]) / len(judged) if judged else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "dataset_drift": self.dataset_drift,
            "share_drifted": self.share_drifted, "dataset_share": self.dataset_share,
            "drifted_features": self.drifted_features,
            "features": {n: f.to_dict() for n, f in self.features.items()},
        }


def compare(reference: Reference, window: Mapping[str, Any],
            thresholds: Thresholds | Mapping[str, Thresholds] | None = None) -> DriftReport:
    """Compare ``window`` (columns by name) with ``reference``.

    ``thresholds`` is one ``Thresholds`` for every feature, or a mapping of feature name to its
    own (features not named use ``Thresholds()``). Columns the reference does not know are an
    error: they cannot be judged, and silently skipping them would hide a schema change.
    """
    unknown = sorted(set(window) - set(reference.features))
    if unknown:
        raise InvalidInputError(
            f"the reference has no column(s) {unknown}; build the reference from data with "
            "the same columns"
        )
    results: dict[str, FeatureDrift] = {}
    rows = 0
    default = thresholds if isinstance(thresholds, Thresholds) else Thresholds()
    per_feature = thresholds if isinstance(thresholds, Mapping) else {}
    for name, values in window.items():
        ref = reference.features[name]
        limits = per_feature.get(name, default)
        arr = np.asarray(values)
        rows = max(rows, len(arr))
        if isinstance(ref, NumericReference):
            result = _numeric_drift(name, ref, arr, limits)
        else:
            result = _categorical_drift(name, ref, arr, limits)
        level: Literal["ok", "warn", "alert"] = (
            "alert" if result.psi >= limits.psi_alert
            else "warn" if result.psi >= limits.psi_warn else "ok")
        results[name] = replace(result, psi_level=level)
    share = default.dataset_share
    judged = [f for f in results.values() if f.method is not None]
    drifted = len([f for f in judged if f.drifted])
    dataset = bool(judged) and drifted / len(judged) >= share
    return DriftReport(results, rows, share, dataset)


def _choose(limits: Thresholds, rows: int, kind: Kind) -> Method:
    if limits.method != "auto":
        return limits.method
    small = rows < limits.large_sample
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chisquare" if small else "jensenshannon"


def population_stability_index(expected: Array, actual: Array) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares (empty
    bins count as ``PSI_EPSILON``)."""
    # a handful of bins: plain floats beat NumPy's per-call overhead (the live gauges call this
    # for every feature of every window)
    total = 0.0
    for e, a in zip(np.asarray(expected, dtype=np.float64).tolist(),
                    np.asarray(actual, dtype=np.float64).tolist(), strict=True):
        e = e or PSI_EPSILON
        a = a or PSI_EPSILON
        total += (a - e) * math.log(a / e)
    return total


def _numeric_drift(name: str, ref: NumericReference, values: Array,
                   limits: Thresholds) -> FeatureDrift:
    try:
        cur = values.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"feature {name!r} is numeric in the reference but the window holds "
            f"{values.dtype} values") from None
    missing = np.isnan(cur)
    ok = cur[~missing]
    missing_share = float(missing.mean()) if cur.size else 0.0
    if ok.size < limits.min_samples:
        return FeatureDrift(name, "numeric", int(ok.size), None, None, None, False, 0.0,
                            missing_share,
                            note=f"{ok.size} rows with values; a verdict needs "
                                 f"{limits.min_samples}")
    ok.sort()
    # values equal to an edge count in the upper bin, as in the reference and the live gauges
    counts = np.diff(np.searchsorted(ok, ref.edges, side="left"), prepend=0, append=ok.size)
    psi = population_stability_index(ref.proportions, counts / ok.size)
    ks_statistic, wasserstein = _cdf_walk(ref.sorted_values, ok)
    ks_p = _ks_p_value(ref.sorted_values, ok, ks_statistic)
    normed = wasserstein / max(ref.std, 1e-3)  # Evidently's floor for a constant reference
    out_of_range = float(np.mean((ok < ref.min) | (ok > ref.max)))
    method = _choose(limits, int(ok.size), "numeric")
    value, threshold, drifted = _verdict(method, limits, psi=psi, p_ks=ks_p, normed=normed)
    return FeatureDrift(
        name, "numeric", int(ok.size), method, value, threshold, drifted, psi, missing_share,
        out_of_range_share=out_of_range, ks_statistic=ks_statistic, ks_p_value=ks_p,
        wasserstein=wasserstein, wasserstein_normed=normed,
    )


def _cdf_walk(ref: Array, cur: Array) -> tuple[float, float]:
    """The KS statistic and the Wasserstein-1 distance of two sorted samples, in one pass.

    The same empirical-CDF walk as SciPy's ``ks_2samp`` and ``wasserstein_distance``, over a
    reference sorted once: SciPy's functions would sort both samples again for each statistic,
    which made a window of 30 features cost a second (measured; see benchmarks/drift.py).
    """
    merged = np.concatenate((ref, cur))
    merged.sort(kind="mergesort")  # two sorted runs: a linear merge
    diff = ref.searchsorted(merged, "right") / ref.size
    diff -= cur.searchsorted(merged, "right") / cur.size
    statistic = max(float(np.clip(-diff.min(), 0, 1)), float(diff.max()))
    distance = float(np.sum(np.abs(diff[:-1]) * np.diff(merged)))
    return statistic, distance


def _ks_p_value(ref: Array, cur: Array, statistic: float) -> float:
    """SciPy's two-sided p-value: exact for small samples (its own call), else Smirnov's
    asymptotic distribution exactly as ``ks_2samp(method="auto")`` computes it."""
    from scipy import stats  # here, not at import: a server with live gauges never needs it

    if max(ref.size, cur.size) <= 10_000:
        return float(stats.ks_2samp(ref, cur).pvalue)
    m, n = sorted((float(ref.size), float(cur.size)), reverse=True)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(m * n / (m + n))), 0, 1))


def _categorical_drift(name: str, ref: CategoricalReference, values: Array,
                       limits: Thresholds) -> FeatureDrift:
    present, missing = _categories(values)
    missing_share = missing / max(len(values), 1)
    if present.size < limits.min_samples:
        return FeatureDrift(name, "categorical", int(present.size), None, None, None, False,
                            0.0, missing_share,
                            note=f"{present.size} rows with values; a verdict needs "
                                 f"{limits.min_samples}")
    keys, counts = np.unique(present, return_counts=True)
    current = {str(k): int(c) for k, c in zip(keys, counts, strict=True)}
    categories = sorted(set(ref.frequencies) | set(current))
    expected = np.array([ref.frequencies.get(c, 0.0) for c in categories])
    observed = np.array([current.get(c, 0) for c in categories], dtype=np.float64)
    total = observed.sum()
    actual = observed / total
    psi = population_stability_index(expected, actual)
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    js = float(jensenshannon(expected, actual))
    # chi-square needs a positive expectation everywhere: unseen categories get PSI's epsilon
    exp_counts = np.where(expected == 0, PSI_EPSILON, expected)
    exp_counts = exp_counts / exp_counts.sum() * total
    chi_p = float(stats.chisquare(observed, exp_counts).pvalue)
    unseen = [c for c in categories if c not in ref.frequencies]
    method = _choose(limits, int(total), "categorical")
    value, threshold, drifted = _verdict(method, limits, psi=psi, p_chi=chi_p, js=js)
    return FeatureDrift(
        name, "categorical", int(total), method, value, threshold, drifted, psi, missing_share,
        out_of_range_share=float(sum(current[c] for c in unseen) / total),
        chisquare_p_value=chi_p, jensenshannon=js, unseen_categories=unseen,
    )


def _verdict(method: Method, limits: Thresholds, *, psi: float, p_ks: float = math.nan,
             normed: float = math.nan, p_chi: float = math.nan,
             js: float = math.nan) -> tuple[float, float, bool]:
    if method == "psi":
        return psi, limits.psi_alert, psi >= limits.psi_alert
    if method in ("ks", "chisquare"):
        p = p_ks if method == "ks" else p_chi
        if math.isnan(p):
            raise InvalidInputError(f"{method} does not apply to this feature's kind")
        return p, limits.p_value, p < limits.p_value
    d = normed if method == "wasserstein" else js
    if math.isnan(d):
        raise InvalidInputError(f"{method} does not apply to this feature's kind")
    return d, limits.distance, d >= limits.distance


__all__ = [
    "CategoricalReference",
    "DriftReport",
    "FeatureDrift",
    "NumericReference",
    "Reference",
    "Thresholds",
    "compare",
    "population_stability_index",
]
