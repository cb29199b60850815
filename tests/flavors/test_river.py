"""River: online learning after loading, classes that grow, safe storage or explicit trust."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.bundle.model import load_bundle
from modelport.errors import UnsupportedModelError, UntrustedArtifactError


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True, as_frame=True)
    return x, y


def test_loaded_learner_keeps_learning_like_the_original(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    from river import linear_model, preprocessing

    x, y = iris
    binary = (y == 2).astype(int)
    original = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for row, target in zip(x.head(60).to_dict("records"), binary.head(60), strict=True):
        original.learn_one(row, target)
    model = load_bundle(modelport.save(original, tmp_path / "online", example=x.head(5)))
    assert model.predictor.can_learn
    assert model.manifest.flavor_info["serialization"] == "skops"

    model.learn(x.iloc[60:120], binary.iloc[60:120].to_numpy())
    for row, target in zip(x.iloc[60:120].to_dict("records"), binary.iloc[60:120],
                           strict=True):
        original.learn_one(row, target)
    rows = x.iloc[120:].to_dict("records")
    assert model.predict(x.iloc[120:]).tolist() == [original.predict_one(r) for r in rows]
    expected = [original.predict_proba_one(r)[True] for r in rows]
    assert np.array_equal(model.predict_proba(x.iloc[120:])[:, 1], expected)


def test_classes_grow_as_the_model_sees_them(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    from river import tree

    x, y = iris
    seen = y < 2
    original = tree.HoeffdingTreeClassifier(grace_period=10)
    for row, target in zip(x[seen].to_dict("records"), y[seen], strict=True):
        original.learn_one(row, int(target))
    model = load_bundle(modelport.save(original, tmp_path / "tree", example=x.head(5)))
    assert model.signature.classes == (0, 1)
    model.learn(x[~seen], y[~seen].to_numpy())
    result = model.predict_batch(model.coerce(x))
    assert result.classes == [0, 1, 2]
    assert result.probabilities is not None and result.probabilities.shape == (len(x), 3)
    assert 2 in set(result.labels.tolist())  # type: ignore[union-attr]


def test_state_skops_cannot_rebuild_needs_trust(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    from river import tree

    x, y = iris
    original = tree.HoeffdingTreeClassifier(grace_period=10)
    # boolean labels: skops rebuilds {False: n, True: m} class counts with one key lost
    for row, target in zip(x.to_dict("records"), (y == 1).tolist(), strict=True):
        original.learn_one(row, target)
    with pytest.raises(UnsupportedModelError, match="trusted=True"):
        modelport.save(original, tmp_path / "refused", example=x.head(5))
    path = modelport.save(original, tmp_path / "pickled", example=x.head(5), trusted=True)
    with pytest.raises(UntrustedArtifactError, match="pickle"):
        load_bundle(path)
    model = load_bundle(path, trusted=True)
    rows = x.to_dict("records")
    assert model.predict(x).tolist() == [original.predict_one(r) for r in rows]
    assert pickle.dumps(model.predictor.native) == pickle.dumps(original)


def test_wrong_number_of_targets_is_refused(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    from river import linear_model

    from modelport.errors import InvalidInputError

    x, _ = iris
    model = load_bundle(modelport.save(linear_model.LinearRegression(), tmp_path / "lin",
                                       example=x.head(3)))
    with pytest.raises(InvalidInputError, match="one target per row"):
        model.learn(x.head(3), np.array([1.0, 2.0]))
