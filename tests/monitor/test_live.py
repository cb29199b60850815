"""Live drift gauges on a real service's prediction events agree with compare() on the rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

import modelport
from modelport.core.service import InferenceService
from modelport.errors import NotFoundError
from modelport.monitor.drift import compare
from modelport.monitor.live import LiveDrift
from modelport.monitor.reference import References, table_columns
from modelport.registry import Registry


@pytest.fixture
def registry(modelport_home: Path) -> Registry:
    return Registry()


def _register(registry: Registry, tmp: Path, frame: Any, model: Any, *,
              reference: bool = True) -> int:
    path = modelport.save(model, tmp / f"b{reference}", name="cancer", example=frame.head(5),
                          reference=frame if reference else None)
    return registry.register(path).version


def test_live_psi_equals_compare_over_the_same_rows(
        registry: Registry, tmp_path: Path, cancer_frame: tuple[pd.DataFrame, pd.Series],
        cancer_pipeline: Any) -> None:
    x, _ = cancer_frame
    version = _register(registry, tmp_path, x, cancer_pipeline)
    references = References(registry)
    metrics = CollectorRegistry()
    live = LiveDrift(metrics, references, window_rows=200)
    service = InferenceService(registry)
    service.events.subscribe(live, inline=True)  # as modelport.monitor.live.attach does
    rng = np.random.default_rng(3)
    rows = x.sample(400, replace=True, random_state=1).reset_index(drop=True)
    rows["mean radius"] = rows["mean radius"] * 1.3 + rng.normal(0, 0.1, len(rows))
    try:
        for start in range(0, 400, 30):  # requests of 30 rows cross the window boundary
            service.predict("cancer", rows.iloc[start:start + 30])
        assert service.events.flush()
    finally:
        service.close()
    live.flush()
    assert len(live.history) == 2
    reference = references.require("cancer", version)
    for index, (_, _, values) in enumerate(live.history):
        window = rows.iloc[index * 200:(index + 1) * 200]
        report = compare(reference, {c: window[c].to_numpy(np.float64) for c in x.columns})
        for feature, psi in values.items():
            assert psi == pytest.approx(report.features[feature].psi, abs=1e-12), feature
    radius = metrics.get_sample_value("modelport_drift_psi", {
        "model": "cancer", "version": str(version), "feature": "mean radius"})
    assert radius is not None and radius >= 0.25  # the shifted feature is at the alert level
    share = metrics.get_sample_value("modelport_drift_share",
                                     {"model": "cancer", "version": str(version)})
    assert share is not None and 0 < share < 0.5
    assert metrics.get_sample_value("modelport_drift_windows_total", {
        "model": "cancer", "version": str(version)}) == 2


def test_versions_without_a_reference_are_skipped_and_explained(
        registry: Registry, tmp_path: Path, cancer_frame: tuple[pd.DataFrame, pd.Series],
        cancer_pipeline: Any) -> None:
    x, _ = cancer_frame
    version = _register(registry, tmp_path, x, cancer_pipeline, reference=False)
    references = References(registry)
    assert references.get("cancer", version) is None
    with pytest.raises(NotFoundError, match="modelport monitor reference cancer:1"):
        references.require("cancer", version)
    live = LiveDrift(CollectorRegistry(), references, window_rows=10)
    service = InferenceService(registry)
    service.events.subscribe(live)
    try:
        service.predict("cancer", x.head(50))
        assert service.events.flush()
    finally:
        service.close()
    assert live.history == []
    # a stored reference (e.g. from training data) turns it on
    import pyarrow as pa

    references.store("cancer", version, pa.Table.from_pandas(x, preserve_index=False))
    table = references.table("cancer", version)
    assert table is not None and set(table_columns(table)) == set(x.columns)
    assert references.require("cancer", version).rows == len(x)


def test_windows_of_matrix_and_column_batches_count_the_same_rows() -> None:
    """Matrix rows are copied into the window's buffer; a column batch in between makes the
    window keep batches instead; either way the PSI is compare()'s over the same rows."""
    from modelport.core.batch import Batch, Result
    from modelport.core.events import PredictionEvent
    from modelport.monitor.drift import Reference

    rng = np.random.default_rng(11)
    names = ["a", "b"]
    reference = Reference.from_columns({n: rng.normal(size=2000) for n in names})
    live = LiveDrift(CollectorRegistry(), lambda m, v: reference, window_rows=50)
    rows = rng.normal(loc=0.4, size=(120, 2))
    for start in range(0, 120, 7):
        part = rows[start:start + 7]
        batch = (Batch.from_matrix(names, part) if start % 14 == 0 else
                 Batch.from_columns({n: part[:, j].copy() for j, n in enumerate(names)}))
        live(PredictionEvent("m", 1, batch, Result(len(part)), 0.1))
    live.flush()
    assert len(live.history) == 2  # 100 of the 120 rows made two windows
    for index, (_, _, values) in enumerate(live.history):
        window = rows[index * 50:(index + 1) * 50]
        report = compare(reference, {n: window[:, j] for j, n in enumerate(names)})
        assert values == {n: pytest.approx(report.features[n].psi, abs=1e-12) for n in names}
