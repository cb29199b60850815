"""Missing values: which inputs are nullable (flavor knowledge, save(nullable=), MLflow's
``required: false``, ``models register --nullable``), and what a null becomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import modelport
from modelport.bundle.mlflow import signature_from_mlflow
from modelport.bundle.signature import Signature
from modelport.cli.main import main
from modelport.errors import InvalidInputError


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"age": rng.integers(18, 90, 300), "income": rng.normal(5e4, 1e4, 300),
                      "score": rng.normal(0, 1, 300)})
    y = ((x["income"] > 5e4) ^ (x["score"] > 0.5)).astype(int).to_numpy()
    return x, y


def _models(x: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    import lightgbm
    import xgboost
    from sklearn.ensemble import HistGradientBoostingClassifier

    return {
        "xgboost": xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(x, y),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y),
        "hgb": HistGradientBoostingClassifier(max_iter=10).fit(x, y),
    }


def test_models_that_handle_missing_values_take_null_as_nan(
    tmp_path: Path, data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    x, y = data
    for name, model in _models(x, y).items():
        bundle = modelport.save(model, tmp_path / name, example=x.head(20))
        loaded = modelport.load(bundle)
        assert loaded.signature.nullable_names == ["age", "income", "score"], name
        rows = x.head(4).to_dict(orient="records")
        rows[0]["income"], rows[1]["age"], rows[2]["score"] = None, None, None
        got = loaded.predict(rows)
        expected = x.head(4).astype("float64")
        expected.iloc[0, 1] = expected.iloc[1, 0] = expected.iloc[2, 2] = np.nan
        assert got.tolist() == model.predict(expected).tolist(), name
        proba = loaded.predict_proba(rows)
        assert np.allclose(proba, model.predict_proba(expected), atol=1e-6), name


def test_other_models_refuse_null_and_say_how_to_declare_it(
    tmp_path: Path, data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = data
    bundle = modelport.save(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "lr",
                            example=x.head(20))
    loaded = modelport.load(bundle)
    assert loaded.signature.nullable_names == []
    row = {"age": 30, "income": None, "score": 0.1}
    with pytest.raises(InvalidInputError) as err:
        loaded.predict([row])
    assert err.value.field == "income"
    assert "modelport models register BUNDLE_DIR --nullable income" in str(err.value)
    assert "set_" not in str(err.value) and "save(" not in str(err.value)


def test_save_nullable_adds_the_named_columns_and_refuses_unknown_ones(
    tmp_path: Path, data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = data
    lr = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500)).fit(x, y)
    # an imputer first: the pipeline handles missing values
    assert modelport.load(modelport.save(lr, tmp_path / "imputed", example=x.head(10))) \
        .signature.nullable_names == ["age", "income", "score"]
    plain = LogisticRegression(max_iter=500).fit(x, y)
    sig = modelport.load(modelport.save(plain, tmp_path / "one", example=x.head(10),
                                        nullable=["score"])).signature
    assert sig.nullable_names == ["score"]
    none = modelport.load(modelport.save(_models(x, y)["hgb"], tmp_path / "none",
                                         example=x.head(10), nullable=False)).signature
    assert none.nullable_names == []
    with pytest.raises(InvalidInputError, match="'nope'"):
        modelport.save(plain, tmp_path / "bad", example=x.head(10), nullable=["nope"])


def test_a_nullable_integer_column_becomes_float_with_nan() -> None:
    sig = Signature.from_dict({"inputs": [{"name": "a", "dtype": "int64"},
                                          {"name": "b", "dtype": "int64"}]})
    with pytest.raises(InvalidInputError, match="missing value where int64"):
        sig.coerce([{"a": None, "b": 1}])
    nullable = sig.with_nullable(["a"])
    batch = nullable.coerce([{"a": None, "b": 1}, {"a": 7, "b": 2}])
    a = batch.column("a")
    assert a.dtype == np.float64 and np.isnan(a[0]) and a[1] == 7.0
    assert batch.column("b").tolist() == [1, 2]
    # columnar input and NaN in a float array take the same path
    cols = nullable.coerce({"a": np.array([np.nan, 3.0]), "b": np.array([1, 2])})
    assert np.isnan(cols.column("a")[0]) and cols.column("a")[1] == 3.0
    with pytest.raises(InvalidInputError, match="fractional"):
        nullable.coerce({"a": np.array([np.nan, 3.5]), "b": np.array([1, 2])})


def test_manifests_without_nullability_still_load() -> None:
    old = {"kind": "columns", "task": "classification",
           "inputs": [{"name": "a", "dtype": "float64"}], "outputs": []}
    sig = Signature.from_dict(old)
    assert sig.nullable_names == []
    assert "nullable" not in json.dumps(sig.to_dict())
    assert Signature.from_dict(sig.with_nullable(["a"]).to_dict()).nullable_names == ["a"]


def test_mlflow_optional_columns_are_nullable() -> None:
    block = {"inputs": json.dumps([
        {"type": "double", "name": "income", "required": False},
        {"type": "long", "name": "age", "required": True},
        {"type": "double", "name": "score"},
    ])}
    sig = signature_from_mlflow(block)
    assert sig is not None and sig.nullable_names == ["income"]
    assert sig.coerce([{"income": None, "age": 3, "score": 1.0}]).n_rows == 1


def test_models_register_nullable_declares_columns_in_the_registered_version(
    tmp_path: Path, modelport_home: Path, data: tuple[pd.DataFrame, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = data
    model = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500)).fit(x, y)
    bundle = modelport.save(model, tmp_path / "credit", example=x.head(10), nullable=False)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"age": 40, "income": None, "score": 0.3}) + "\n")
    assert main(["models", "register", str(bundle)]) == 0
    assert main(["predict", "credit:1", "--input", str(rows)]) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error:") and "--nullable income" in err
    assert "Traceback" not in err

    assert main(["models", "register", str(bundle), "--nullable", "income,score"]) == 0
    capsys.readouterr()
    assert main(["predict", "credit:2", "--input", str(rows), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    expected = model.predict(pd.DataFrame([{"age": 40.0, "income": np.nan, "score": 0.3}]))
    assert [p.get("prediction", p.get("label")) for p in answer["predictions"]] == \
        expected.tolist()
    manifest = yaml.safe_load((bundle / "modelport.yaml").read_text())
    assert not any(c.get("nullable") for c in manifest["signature"]["inputs"])  # untouched
    assert main(["models", "show", "credit:2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in shown["signature"]["inputs"] if c.get("nullable")] == \
        ["income", "score"]
    assert main(["models", "register", str(bundle), "--nullable", "ghost"]) == 3
    assert "'ghost'" in capsys.readouterr().err


def test_import_mlflow_keeps_optional_columns_nullable_and_takes_nullable(
    tmp_path: Path, modelport_home: Path, data: tuple[pd.DataFrame, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import skops.io
    from sklearn.linear_model import LogisticRegression

    x, y = data
    x = x.astype("float64")
    model = LogisticRegression(max_iter=500).fit(x, y)
    source = tmp_path / "mlflow-model"
    source.mkdir()
    skops.io.dump(model, source / "model.skops")
    inputs = [{"type": "double", "name": "age", "required": True},
              {"type": "double", "name": "income", "required": False},
              {"type": "double", "name": "score", "required": True}]
    (source / "MLmodel").write_text(yaml.safe_dump({
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.skops"},
            "sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"},
        },
        "signature": {"inputs": json.dumps(inputs),
                      "outputs": json.dumps([{"type": "long", "required": True}])},
    }))
    assert main(["import-mlflow", str(source), "--name", "credit", "--nullable", "score",
                 "--register"]) == 0
    capsys.readouterr()
    assert main(["models", "show", "credit", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in shown["signature"]["inputs"] if c.get("nullable")] == \
        ["income", "score"]
