"""Sequential significance: A/A tests peeked at daily stay at the nominal false-positive rate;
a real difference is found; the sample-ratio-mismatch check catches a broken split."""

from __future__ import annotations

import math

import numpy as np

from modelport.rollout.stats import Moments, compare, msprt, sample_ratio_mismatch

ALPHA = 0.05


def daily_looks(rng: np.random.Generator, days: int, per_day: int, p_a: float,
                p_b: float) -> list[tuple[Moments, Moments]]:
    """Cumulative moments of a conversion metric after each day (A, B)."""
    a = rng.binomial(1, p_a, size=(days, per_day)).sum(axis=1).cumsum()
    b = rng.binomial(1, p_b, size=(days, per_day)).sum(axis=1).cumsum()
    n = per_day * np.arange(1, days + 1)
    # for 0/1 values the sum of squares is the sum
    return [(Moments(int(n[d]), float(a[d]), float(a[d])),
             Moments(int(n[d]), float(b[d]), float(b[d]))) for d in range(days)]


def ever_significant(looks: list[tuple[Moments, Moments]]) -> bool:
    return any(compare(a, b, alpha=ALPHA).significant for a, b in looks)


def test_aa_tests_peeked_at_daily_keep_false_positives_at_alpha() -> None:
    rng = np.random.default_rng(20261204)
    runs = 400
    false_positives = sum(ever_significant(daily_looks(rng, 30, 500, 0.1, 0.1))
                          for _ in range(runs))
    # the nominal 5 % plus three binomial standard errors of the simulation
    assert false_positives / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


def test_the_fixed_horizon_p_value_would_not_survive_daily_peeking() -> None:
    """The reason for the sequential test: peeking at the classic p-value inflates errors."""
    rng = np.random.default_rng(7)
    runs = 150
    naive = sum(any(compare(a, b).p_value <= ALPHA for a, b in daily_looks(rng, 30, 500, 0.1,
                                                                            0.1))
                for _ in range(runs))
    assert naive / runs > 2 * ALPHA


def test_a_real_difference_is_detected() -> None:
    rng = np.random.default_rng(11)
    detected = sum(ever_significant(daily_looks(rng, 30, 500, 0.10, 0.12)) for _ in range(50))
    assert detected / 50 >= 0.8


def test_intervals_cover_the_difference() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(10, 2, 4000), rng.normal(10.5, 2, 4000)
    r = compare(Moments.of(x), Moments.of(y))
    assert r.ci[0] < 0.5 < r.ci[1]
    assert r.always_valid_ci[0] <= r.ci[0] and r.ci[1] <= r.always_valid_ci[1]
    assert r.significant and r.always_valid_p >= r.p_value
    assert abs(r.difference - (y.mean() - x.mean())) < 1e-9


def test_msprt_is_one_without_evidence() -> None:
    assert msprt(0.0, 0.01, 0.01) == 1.0
    assert msprt(1.0, 0.0, 0.01) == 1.0
    assert msprt(1.0, 0.01, 0.01) < 0.05


def test_too_little_data_is_never_significant() -> None:
    r = compare(Moments(1, 1.0, 1.0), Moments(0, 0.0, 0.0))
    assert not r.significant and r.always_valid_p == 1.0


def test_sample_ratio_mismatch() -> None:
    fine = sample_ratio_mismatch({"a": 9_020, "b": 980}, {"a": 90, "b": 10})
    assert fine is not None and not fine.mismatch
    broken = sample_ratio_mismatch({"a": 8_500, "b": 1_500}, {"a": 90, "b": 10})
    assert broken is not None and broken.mismatch and broken.p_value < 1e-6
    assert sample_ratio_mismatch({}, {"a": 50, "b": 50}) is None
