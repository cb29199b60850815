"""pyfunc: user classes stored by import path with an artifacts folder, never pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import modelport
from modelport.bundle.model import load_bundle
from modelport.core.batch import Batch
from modelport.errors import ModelLoadError, PredictionError, UnsupportedModelError

FRAME = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 30.0]})


class BatchSumModel:
    """Asks for the Batch itself and returns a dict of named outputs."""

    input_type = "batch"

    def load(self, path: Path) -> None:
        self.seen: list[Any] = []

    def predict(self, batch: Batch) -> dict[str, np.ndarray]:
        self.seen.append(batch)
        m = batch.to_matrix()
        return {"total": m.sum(axis=1), "spread": m.max(axis=1) - m.min(axis=1)}


class MeanLearner:
    """Predicts the running mean of the targets it has learned."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def save(self, path: Path) -> None:
        (path / "state.json").write_text(json.dumps([self.total, self.count]))

    def load(self, path: Path) -> None:
        self.total, self.count = json.loads((path / "state.json").read_text())

    def predict(self, frame: pd.DataFrame) -> list[float]:
        return [self.total / max(self.count, 1)] * len(frame)

    def learn(self, frame: pd.DataFrame, targets: np.ndarray) -> None:
        self.total += float(np.sum(targets))
        self.count += len(targets)


class LookupModel:
    """Reads a table from the directory given as ``artifacts``; answers a DataFrame."""

    artifacts: Path | None = None

    def load(self, path: Path) -> None:
        self.table = json.loads((path / "table.json").read_text())

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score": [self.table.get(str(int(a)), -1.0) for a in frame["a"]]})


class WrongLengthModel:
    def load(self, path: Path) -> None:
        pass

    def predict(self, frame: pd.DataFrame) -> list[float]:
        return [0.0]


def test_batch_input_and_named_outputs(tmp_path: Path) -> None:
    model = load_bundle(modelport.save(BatchSumModel(), tmp_path / "sum", example=FRAME))
    info = model.manifest.flavor_info
    assert info["python_class"].endswith(":BatchSumModel")
    result = model.predict_batch(model.coerce(FRAME))
    assert isinstance(model.predictor.native.seen[0], Batch)
    assert result.outputs["total"].tolist() == [11.0, 22.0, 33.0]
    assert result.outputs["spread"].tolist() == [9.0, 18.0, 27.0]


def test_learner_state_round_trips_and_keeps_learning(tmp_path: Path) -> None:
    learner = MeanLearner()
    learner.learn(FRAME, np.array([1.0, 2.0, 3.0]))
    model = load_bundle(modelport.save(learner, tmp_path / "mean", example=FRAME))
    assert (tmp_path / "mean" / "artifacts" / "state.json").is_file()
    assert "artifacts/state.json" in model.manifest.files
    assert model.predict(FRAME).tolist() == [2.0, 2.0, 2.0]
    assert model.predictor.can_learn
    model.learn(FRAME, np.array([8.0, 8.0, 8.0]))
    assert model.predict(FRAME).tolist() == [5.0, 5.0, 5.0]


def test_artifacts_directory_is_copied_and_dataframe_output_read(tmp_path: Path) -> None:
    source = tmp_path / "table"
    source.mkdir()
    (source / "table.json").write_text(json.dumps({"1": 0.5, "3": 0.9}))
    lookup = LookupModel()
    lookup.artifacts = source
    model = load_bundle(modelport.save(lookup, tmp_path / "lookup", example=FRAME))
    assert model.predict(FRAME).tolist() == [0.5, -1.0, 0.9]


def test_classes_that_cannot_be_imported_later_are_refused_when_saving(tmp_path: Path) -> None:
    class Local:
        def load(self, path: Path) -> None: ...

        def predict(self, frame: pd.DataFrame) -> list[float]:
            return [0.0] * len(frame)

    with pytest.raises(UnsupportedModelError, match="importable"):
        modelport.save(Local(), tmp_path / "local", example=FRAME)
    script = type("ScriptModel", (), {"load": Local.load, "predict": Local.predict,
                                      "__module__": "__main__"})
    with pytest.raises(UnsupportedModelError, match="__main__"):
        modelport.save(script(), tmp_path / "script", example=FRAME)


def test_missing_class_at_load_time_says_what_to_install(tmp_path: Path) -> None:
    path = modelport.save(MeanLearner(), tmp_path / "gone", example=FRAME)
    manifest = yaml.safe_load((path / "modelport.yaml").read_text())
    manifest["flavor_info"]["python_class"] = "retired_package.models:MeanLearner"
    (path / "modelport.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(ModelLoadError, match="PYTHONPATH"):
        load_bundle(path)
    manifest["flavor_info"]["python_class"] = "subprocess:getoutput"
    (path / "modelport.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(ModelLoadError, match="not a pyfunc model class"):
        load_bundle(path)


def test_one_value_per_row_is_required(tmp_path: Path) -> None:
    model = load_bundle(modelport.save(WrongLengthModel(), tmp_path / "bad", example=FRAME))
    with pytest.raises(PredictionError, match="1 values for 3 rows"):
        model.predict(FRAME)


def test_framework_objects_are_not_taken_for_pyfunc() -> None:
    from sklearn.linear_model import LinearRegression

    from modelport.flavors import flavor_for

    assert flavor_for(LinearRegression()).name == "sklearn"
    assert flavor_for(MeanLearner()).name == "pyfunc"
