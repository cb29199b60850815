"""Prediction-log fixtures: a small fitted classifier and events made by its real runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.core.events import EventBus, PredictionEvent
from modelport.core.runner import Runner

FEATURES = ["tenure", "spend", "calls"]


@pytest.fixture(scope="session")
def churn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LogisticRegression on three features, classes 0/1."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(300, 3)), columns=FEATURES)
    y = (x["tenure"] - x["spend"] > 0).astype(int)
    path = tmp_path_factory.mktemp("bundles") / "churn"
    return modelport.save(LogisticRegression().fit(x, y), path, name="churn", example=x.head())


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)


class Collect:
    """An observer that keeps every event (to make events from a real runner)."""

    def __init__(self) -> None:
        self.events: list[PredictionEvent] = []

    def __call__(self, event: PredictionEvent) -> None:
        self.events.append(event)


def events_of(bundle: Path, frames: list[pd.DataFrame], *, version: int | None = 1
              ) -> list[PredictionEvent]:
    """Real prediction events of the bundle's runner: one per frame (request)."""
    model = modelport.load(str(bundle))
    model.version = version
    bus = EventBus()
    got = Collect()
    bus.subscribe(got, inline=True)
    runner = Runner(model, events=bus)
    for i, data in enumerate(frames):
        runner.predict(model.coerce(data), source="rest", request_id=f"r{i}")
    return got.events


@pytest.fixture
def make_events(churn_bundle: Path) -> Any:
    """``make_events([1, 3])``: events of requests of 1 and 3 rows."""
    return lambda sizes, seed=0, **kw: events_of(
        churn_bundle, [frame(n, seed + i) for i, n in enumerate(sizes)], **kw)


@pytest.fixture
def model_events() -> Any:
    """``model_events(bundle, frame, version=)``: the events of one request to any bundle."""
    return lambda bundle, data, **kw: events_of(bundle, [data], **kw)
