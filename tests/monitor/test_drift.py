"""Drift statistics: equal to SciPy's on shared data, and verdicts on synthetic drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from modelport.errors import InvalidInputError
from modelport.monitor.drift import Reference, Thresholds, compare

RNG_SEED = 7


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def test_numeric_statistics_equal_scipy(rng: np.random.Generator) -> None:
    ref_values = rng.gamma(2.0, 1.5, size=4000)
    cur_values = rng.gamma(2.2, 1.5, size=3000)
    report = compare(Reference.from_columns({"x": ref_values}), {"x": cur_values})
    feature = report.features["x"]
    ks = stats.ks_2samp(ref_values, cur_values)
    assert feature.ks_statistic == pytest.approx(ks.statistic, abs=1e-9)
    assert feature.ks_p_value == pytest.approx(ks.pvalue, abs=1e-9)
    wasserstein = stats.wasserstein_distance(ref_values, cur_values)
    assert feature.wasserstein == pytest.approx(wasserstein, abs=1e-9)
    assert feature.wasserstein_normed == pytest.approx(wasserstein / ref_values.std(), abs=1e-9)
    # PSI over the reference's deciles, computed independently with np.histogram
    edges = np.quantile(ref_values, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(ref_values, edges)[0] / ref_values.size
    actual = np.histogram(cur_values, edges)[0] / cur_values.size
    psi = float(np.sum((actual - expected) * np.log(actual / expected)))
    assert feature.psi == pytest.approx(psi, abs=1e-9)
    assert feature.method == "wasserstein"  # 3000 rows: a distance decides


def test_categorical_statistics_equal_scipy(rng: np.random.Generator) -> None:
    ref_values = rng.choice(["a", "b", "c"], p=[0.5, 0.3, 0.2], size=600)
    cur_values = rng.choice(["a", "b", "c"], p=[0.4, 0.3, 0.3], size=500)
    feature = compare(Reference.from_columns({"c": ref_values}), {"c": cur_values}).features["c"]
    cats = ["a", "b", "c"]
    expected = np.array([np.mean(ref_values == c) for c in cats])
    observed = np.array([np.sum(cur_values == c) for c in cats], dtype=float)
    chi = stats.chisquare(observed, expected * observed.sum())
    assert feature.chisquare_p_value == pytest.approx(chi.pvalue, abs=1e-9)
    assert feature.jensenshannon == pytest.approx(
        jensenshannon(expected, observed / observed.sum()), abs=1e-9)
    assert feature.method == "chisquare"  # 500 rows: a p-value test decides
    assert feature.drifted == (chi.pvalue < 0.05)


def test_unseen_categories_and_out_of_range_are_counted(rng: np.random.Generator) -> None:
    ref = Reference.from_columns({"c": np.array(["a", "b"] * 100), "x": np.linspace(0, 1, 200)})
    window = {"c": np.array(["a", "b", "zzz", None] * 50, dtype=object),
              "x": np.concatenate([rng.uniform(0, 1, 150), np.full(50, 5.0)])}
    report = compare(ref, window)
    assert report.features["c"].unseen_categories == ["zzz"]
    assert report.features["c"].out_of_range_share == pytest.approx(50 / 150)
    assert report.features["c"].missing_share == pytest.approx(0.25)
    assert report.features["x"].out_of_range_share == pytest.approx(0.25)


def test_shift_in_three_of_thirty_features_is_found_in_exactly_those(
        rng: np.random.Generator) -> None:
    names = [f"f{i}" for i in range(30)]
    ref = Reference.from_columns({n: rng.normal(size=5000) for n in names})
    shifted = {"f3", "f11", "f27"}
    undrifted_alerts = 0
    false_features = 0
    for _ in range(100):  # 100 undrifted windows, then the shift
        window = {n: rng.normal(size=2000) for n in names}
        report = compare(ref, window)
        undrifted_alerts += report.dataset_drift
        false_features += len(report.drifted_features)
    assert undrifted_alerts == 0
    # a distance threshold is not a test: at 2,000 rows a normed Wasserstein of 0.1 is a
    # ~1-in-1,000 fluctuation per feature and window, so a handful in 3,000 is expected
    assert false_features <= 5
    window = {n: rng.normal(loc=0.5 if n in shifted else 0.0, size=2000) for n in names}
    report = compare(ref, window)
    assert set(report.drifted_features) == shifted
    assert not report.dataset_drift  # 3 of 30 is below the default share of one half
    assert report.share_drifted == pytest.approx(0.1)


def test_small_windows_get_no_verdict(rng: np.random.Generator) -> None:
    ref = Reference.from_columns({"x": rng.normal(size=1000)})
    feature = compare(ref, {"x": rng.normal(loc=5, size=10)}).features["x"]
    assert feature.method is None and not feature.drifted
    assert feature.note is not None and "30" in feature.note


def test_per_feature_thresholds_and_psi_levels(rng: np.random.Generator) -> None:
    ref = Reference.from_columns({"x": rng.normal(size=5000), "y": rng.normal(size=5000)})
    window = {"x": rng.normal(loc=0.3, size=5000), "y": rng.normal(loc=0.3, size=5000)}
    report = compare(ref, window, {"x": Thresholds(method="psi", psi_alert=0.05)})
    assert report.features["x"].method == "psi" and report.features["x"].drifted
    assert report.features["x"].psi_level == "alert"
    assert report.features["y"].method == "wasserstein"


def test_unknown_columns_and_wrong_kinds_are_refused(rng: np.random.Generator) -> None:
    ref = Reference.from_columns({"x": rng.normal(size=100)})
    with pytest.raises(InvalidInputError, match="no column"):
        compare(ref, {"nope": np.zeros(100)})
    with pytest.raises(InvalidInputError, match="numeric"):
        compare(ref, {"x": np.array(["a"] * 100)})
    with pytest.raises(InvalidInputError, match="p_value"):
        Thresholds(p_value=2)
