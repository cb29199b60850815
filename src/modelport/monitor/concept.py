"""Concept drift: a change in how often the model is wrong, found by River's change detectors.

Predictions joined with their feedback, in time order, become a stream of outcomes (1 wrong,
0 right; for regressors the absolute error). A detector from River (``adwin``, ``page_hinkley``
on any stream; ``ddm``, ``eddm``, ``hddm_a`` on binary error streams) reads it and reports where
the stream changed. The ``concept_drift`` rule metric is 1 when a change was found in the
rule's window, else 0.

>>> import random
>>> rng = random.Random(1)
>>> errors = [int(rng.random() < 0.1) for _ in range(2000)] + \\
...          [int(rng.random() < 0.4) for _ in range(2000)]
>>> points = change_points(errors, "adwin")
>>> bool(points) and all(p >= 2000 for p in points)
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelport.errors import ConfigurationError

DETECTORS = ("adwin", "page_hinkley", "ddm", "eddm", "hddm_a")
BINARY = {"ddm", "eddm", "hddm_a"}


def make_detector(name: str) -> Any:
    """A fresh River detector by name, with River's defaults."""
    from river import drift

    makers: dict[str, Any] = {
        "adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley,
        "ddm": drift.binary.DDM,
        "eddm": drift.binary.EDDM, "hddm_a": drift.binary.HDDMA,
    }
    if name not in makers:
        raise ConfigurationError(f"unknown change detector {name!r}; use one of "
                                 f"{', '.join(DETECTORS)}")
    return makers[name]()


def change_points(outcomes: Iterable[float], detector: str = "adwin") -> list[int]:
    """Positions in ``outcomes`` where the detector signalled a change."""
    found = []
    model = make_detector(detector)
    binary = detector in BINARY
    for i, value in enumerate(outcomes):
        model.update(bool(value) if binary else float(value))
        if model.drift_detected:
            found.append(i)
    return found


__all__ = ["BINARY", "DETECTORS", "change_points", "make_detector"]
