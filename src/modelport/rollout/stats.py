"""Experiment statistics that stay valid when people look every day.

* ``compare``: the difference of two variants' means with a classic (Welch) confidence interval,
  and an always-valid p-value and confidence sequence from the mixture sequential probability
  ratio test (mSPRT; Johari, Koomen, Pekelis & Walsh, "Always valid inference", 2017): with a
  normal mixing distribution N(0, tau^2) over the true difference,
  ``Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 V (V + tau^2)))`` where ``d`` is the
  observed difference and ``V`` its variance; ``p = min(1, 1 / Lambda_n)``. Rejecting whenever
  ``p <= alpha`` at any look keeps the false-positive rate at ``alpha`` however often one looks.
* ``sample_ratio_mismatch``: a chi-square test of the observed split against the intended one
  (a broken assignment shows up as a tiny p-value long before it biases a result).

>>> r = compare(Moments(1000, 100.0, 100.0), Moments(1000, 150.0, 150.0))
>>> r.significant, round(r.difference, 3)
(True, 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of one variant's metric — all a comparison needs."""

    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        if self.n < 2:
            return math.nan
        return max((self.total_sq - self.total * self.total / self.n) / (self.n - 1), 0.0)

    @classmethod
    def of(cls, values: Any) -> Moments:
        xs = [float(v) for v in values]
        return cls(len(xs), sum(xs), sum(x * x for x in xs))


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control: difference, intervals, always-valid p-value, verdict."""

    control_mean: float
    treatment_mean: float
    difference: float
    relative: float | None
    ci: tuple[float, float]
    always_valid_ci: tuple[float, float]
    p_value: float
    always_valid_p: float
    alpha: float
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return {"control_mean": self.control_mean, "treatment_mean": self.treatment_mean,
                "difference": self.difference, "relative_difference": self.relative,
                "ci": list(self.ci), "always_valid_ci": list(self.always_valid_ci),
                "p_value": self.p_value, "always_valid_p_value": self.always_valid_p,
                "alpha": self.alpha, "significant": self.significant}


def msprt(difference: float, variance: float, tau2: float) -> float:
    """The mSPRT always-valid p-value for ``difference`` with sampling variance ``variance``."""
    if not variance > 0 or not tau2 > 0:
        return 1.0
    log_lambda = (0.5 * math.log(variance / (variance + tau2))
                  + tau2 * difference * difference / (2.0 * variance * (variance + tau2)))
    return 1.0 if log_lambda <= 0 else min(1.0, math.exp(-log_lambda))


def confidence_sequence(difference: float, variance: float, tau2: float,
                        alpha: float) -> tuple[float, float]:
    """The always-valid (1 - alpha) interval: every difference the mSPRT does not reject."""
    if not variance > 0 or not tau2 > 0:
        return (-math.inf, math.inf)
    half = math.sqrt(variance * (variance + tau2) / tau2
                     * (2.0 * math.log(1.0 / alpha) + math.log((variance + tau2) / variance)))
    return (difference - half, difference + half)


def compare(control: Moments, treatment: Moments, *, alpha: float = 0.05,
            tau: float | None = None) -> Comparison:
    """Compare two variants' means.

    ``tau`` is the mixing standard deviation of the mSPRT, in the metric's units: the size of
    difference the test is tuned to find. The default, a tenth of the pooled standard
    deviation, suits effects of about 0.1 standard deviations (A/B tests' usual range).
    """
    mean_c, mean_t = control.mean, treatment.mean
    diff = mean_t - mean_c
    var_c, var_t = control.variance, treatment.variance
    if control.n < 2 or treatment.n < 2 or math.isnan(var_c) or math.isnan(var_t):
        return Comparison(mean_c, mean_t, diff, _relative(diff, mean_c),
                          (-math.inf, math.inf), (-math.inf, math.inf), 1.0, 1.0, alpha, False)
    v = var_c / control.n + var_t / treatment.n
    if tau is None:
        pooled = math.sqrt(((control.n - 1) * var_c + (treatment.n - 1) * var_t)
                           / (control.n + treatment.n - 2))
        tau = 0.1 * pooled
    tau2 = tau * tau
    if v > 0:
        from scipy import stats as sps  # on first use: importing SciPy takes seconds

        z = sps.norm.ppf(1 - alpha / 2)
        ci = (diff - z * math.sqrt(v), diff + z * math.sqrt(v))
        p = float(2 * sps.norm.sf(abs(diff) / math.sqrt(v)))
    else:
        ci, p = (diff, diff), (0.0 if diff != 0 else 1.0)
    av_p = msprt(diff, v, tau2) if v > 0 else p
    av_ci = confidence_sequence(diff, v, tau2, alpha) if v > 0 else ci
    return Comparison(mean_c, mean_t, diff, _relative(diff, mean_c), ci, av_ci, p, av_p,
                      alpha, av_p <= alpha)


def _relative(diff: float, base: float) -> float | None:
    return diff / base if base and math.isfinite(base) else None


@dataclass(frozen=True)
class SampleRatio:
    """Observed vs intended split; ``mismatch`` when the chi-square p-value is below 0.001."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool

    def to_dict(self) -> dict[str, Any]:
        return {"observed": self.observed, "expected": self.expected, "chi2": self.chi2,
                "p_value": self.p_value, "mismatch": self.mismatch}


def sample_ratio_mismatch(observed: Mapping[str, int], weights: Mapping[str, float], *,
                          threshold: float = 0.001) -> SampleRatio | None:
    """Chi-square goodness of fit of ``observed`` counts to the intended ``weights``.

    ``None`` when there is nothing to test (no traffic, or fewer than two weighted variants).
    """
    names = [n for n, w in weights.items() if w > 0]
    total = sum(observed.get(n, 0) for n in names)
    if len(names) < 2 or total == 0:
        return None
    weight_sum = sum(weights[n] for n in names)
    expected = {n: total * weights[n] / weight_sum for n in names}
    from scipy import stats as sps  # on first use: importing SciPy takes seconds

    result = sps.chisquare([observed.get(n, 0) for n in names], [expected[n] for n in names])
    chi2, p = float(result.statistic), float(result.pvalue)
    return SampleRatio({n: int(observed.get(n, 0)) for n in names}, expected, chi2, p,
                       p < threshold)


__all__ = ["Comparison", "Moments", "SampleRatio", "compare", "confidence_sequence", "msprt",
           "sample_ratio_mismatch"]
