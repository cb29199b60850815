"""The REST simple route's codec: the record form, ids per row, and the extra-column policy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

import modelport
from modelport.errors import InvalidInputError
from modelport.serving import records

NOW = datetime(2026, 12, 4, 17, 3, 11, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> modelport.Model:
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame(np.random.default_rng(0).normal(size=(60, 2)), columns=["a", "b"])
    y = np.where(x["a"] > 0, "yes", "no")
    path = Path(tmp_path_factory.mktemp("m")) / "m"
    modelport.save(LogisticRegression().fit(x, y), path, example=x.head(20),
                   accelerate=False)
    return modelport.load(str(path))


def test_one_record_answers_the_record_form_with_the_request_id(model: modelport.Model) -> None:
    decoded = records.decode(b'{"a": 1.0, "b": 2.0, "customer": "c-1"}', model)
    result = model.predict_batch(decoded.batch)
    body = orjson.loads(records.encode(result, model, "churn", decoded, "p" * 32, now=NOW))
    assert body == {"prediction_id": "p" * 32, "prediction": "yes",
                    "probabilities": body["probabilities"], "model": "churn", "version": None,
                    "predicted_at": "2026-12-04T17:03:11.123456Z"}
    assert set(body["probabilities"]) == {"no", "yes"}  # customer ignored by default


def test_passthrough_copies_other_fields_first_and_refuse_names_them(
        model: modelport.Model) -> None:
    body = b'[{"a": 1.0, "b": 2.0, "customer": "c-1"}, {"a": -1.0, "b": 0.0, "customer": "c-2"}]'
    decoded = records.decode(body, model, "passthrough")
    result = model.predict_batch(decoded.batch)
    answer = orjson.loads(records.encode(result, model, "churn", decoded, "P", now=NOW))
    assert (answer["model"], answer["version"]) == ("churn", None)
    rows = answer["predictions"]
    assert [list(r)[:3] for r in rows] == [["customer", "prediction_id", "prediction"]] * 2
    assert [(r["customer"], r["prediction_id"]) for r in rows] == [("c-1", "P-0"),
                                                                   ("c-2", "P-1")]
    with pytest.raises(InvalidInputError, match="unexpected column 'customer'"):
        records.decode(body, model, "refuse")
