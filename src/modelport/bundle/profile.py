"""Reference profile of training data: what "normal" input looks like, for drift detection later.

Numeric columns: row count, missing count, mean, std, min/max, deciles and a 20-bin histogram.
Other columns: the most frequent categories with their frequencies (top 50, the rest summed).

Beside the profile, ``write_reference`` keeps a sample of the rows themselves
(``reference.parquet``, at most ``SAMPLE_ROWS``, an even thinning): the drift monitor compares
windows of traffic with it (KS and Wasserstein need the values, not a histogram).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature

BINS = 20
TOP_CATEGORIES = 50
#: the reference sample's file name in a bundle, and its largest size in rows
SAMPLE_FILE = "reference.parquet"
SAMPLE_ROWS = 100_000


def profile_columns(columns: dict[str, Any]) -> dict[str, Any]:
    features: dict[str, Any] = {}
    n_rows = 0
    for name, values in columns.items():
        arr = np.asarray(values)
        n_rows = max(n_rows, len(arr))
        if arr.ndim > 1:
            arr = arr.reshape(len(arr), -1)
            for j in range(arr.shape[1]):
                features[f"{name}[{j}]"] = _numeric(arr[:, j].astype(np.float64))
        elif arr.dtype.kind in "iufb":
            features[name] = _numeric(arr.astype(np.float64))
        else:
            features[name] = _categorical(arr)
    return {"rows": int(n_rows), "features": features}


def profile_data(data: Any, signature: Signature) -> dict[str, Any]:
    batch = signature.coerce(data)
    return profile_columns(batch.columns)


def write_reference(data: Any, signature: Signature, directory: Path) -> str:
    """Write the profile (``reference.json``) and the row sample (``reference.parquet``);
    returns the profile's file name for the manifest."""
    import pyarrow.parquet as pq

    from modelport.core.arrow import batch_to_table

    batch = signature.coerce(data)
    write_profile(profile_columns(batch.columns), directory / "reference.json")
    if batch.n_rows > SAMPLE_ROWS:
        rows = np.linspace(0, batch.n_rows - 1, SAMPLE_ROWS).round().astype(np.int64)
        table = batch_to_table(batch).take(rows)
    else:
        table = batch_to_table(batch)
    pq.write_table(table, directory / SAMPLE_FILE)
    return "reference.json"


def _numeric(arr: np.ndarray[Any, Any]) -> dict[str, Any]:
    missing = np.isnan(arr)
    ok = arr[~missing]
    out: dict[str, Any] = {"type": "numeric", "missing": int(missing.sum()), "count": int(ok.size)}
    if ok.size:
        lo, hi = float(ok.min()), float(ok.max())
        counts, edges = np.histogram(ok, bins=BINS, range=(lo, hi if hi > lo else lo + 1.0))
        out.update(
            mean=float(ok.mean()), std=float(ok.std()), min=lo, max=hi,
            quantiles=[float(q) for q in np.quantile(ok, np.linspace(0, 1, 11))],
            histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        )
    return out


def _categorical(arr: np.ndarray[Any, Any]) -> dict[str, Any]:
    values = [v for v in arr.tolist() if v is not None]
    counts = Counter(str(v) for v in values)
    total = sum(counts.values()) or 1
    top = counts.most_common(TOP_CATEGORIES)
    other = total - sum(c for _, c in top)
    return {
        "type": "categorical",
        "missing": int(len(arr) - len(values)),
        "count": len(values),
        "frequencies": {k: c / total for k, c in top},
        "other": other / total,
    }


def write_profile(profile: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(profile, indent=1, sort_keys=True), encoding="utf-8")


def read_profile(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
