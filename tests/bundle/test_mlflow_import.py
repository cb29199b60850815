"""``import_mlflow`` / ``modelport import-mlflow`` over MLflow model directories.

MLflow is not installed: each test writes the directory exactly as MLflow's ``save_model`` lays it
out (``MLmodel`` YAML with the flavor configuration, JSON-string signature and input-example info;
the artifact file; ``input_example.json``), then imports it and compares predictions with the
original object's.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import modelport
from modelport.bundle.mlflow import import_mlflow, signature_from_mlflow
from modelport.bundle.model import load_bundle
from modelport.errors import (
    InvalidInputError,
    NotFoundError,
    UnsupportedModelError,
    UntrustedArtifactError,
)

MLFLOW_TYPES = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer",
                "object": "string", "bool": "boolean"}


def column_signature(frame: pd.DataFrame, output: str = "long") -> dict[str, str]:
    """MLmodel's ``signature`` block as MLflow writes it: JSON strings of column specs."""
    inputs = [{"type": MLFLOW_TYPES[str(frame[c].dtype)], "name": str(c), "required": True}
              for c in frame.columns]
    return {"inputs": json.dumps(inputs),
            "outputs": json.dumps([{"type": output, "required": True}]), "params": None}


def tensor_signature(dtype: str, width: int) -> dict[str, str]:
    spec = [{"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": [-1, width]}}]
    return {"inputs": json.dumps(spec), "outputs": json.dumps(spec), "params": None}


def write_mlflow_model(
    directory: Path,
    flavor: str,
    conf: dict[str, Any],
    *,
    loader: str,
    data: str,
    signature: dict[str, Any] | None = None,
    example: pd.DataFrame | np.ndarray | None = None,
) -> Path:
    """The MLmodel file and input example of an MLflow model directory."""
    directory.mkdir(parents=True, exist_ok=True)
    mlmodel: dict[str, Any] = {
        "artifact_path": "model",
        "flavors": {
            "python_function": {"env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                                "loader_module": loader, "model_path" if flavor == "sklearn"
                                else "data": data, "python_version": "3.11.7"},
            flavor: conf,
        },
        "mlflow_version": "2.16.2",
        "model_size_bytes": 1234,
        "model_uuid": "6d4a1e2c1bb84bb4a5a3a5c36dbe3c11",
        "run_id": "d1f6a2b0c33f4c0e9a2f7d6b3c6a9e01",
        "utc_time_created": "2026-11-20 10:00:00.000000",
    }
    if signature is not None:
        mlmodel["signature"] = signature
    if isinstance(example, pd.DataFrame):
        (directory / "input_example.json").write_text(json.dumps(
            {"columns": list(example.columns), "data": example.to_numpy().tolist()}))
        mlmodel["saved_input_example_info"] = {
            "artifact_path": "input_example.json", "pandas_orient": "split", "type": "dataframe",
            "serving_input_path": "serving_input_example.json"}
    elif isinstance(example, np.ndarray):
        (directory / "input_example.json").write_text(json.dumps({"inputs": example.tolist()}))
        mlmodel["saved_input_example_info"] = {
            "artifact_path": "input_example.json", "type": "ndarray", "format": "tf-serving"}
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=True))
    for name in ("conda.yaml", "python_env.yaml", "requirements.txt"):
        (directory / name).write_text("")
    return directory


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True, as_frame=True)
    return x, y


@pytest.fixture(scope="module")
def forest(iris: tuple[pd.DataFrame, pd.Series]) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    x, y = iris
    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)


def sklearn_pickle_dir(root: Path, model: Any, x: pd.DataFrame, fmt: str = "cloudpickle"
                       ) -> Path:
    directory = root / "mlflow_sklearn"
    directory.mkdir(parents=True)
    with (directory / "model.pkl").open("wb") as fh:
        if fmt == "cloudpickle":
            import cloudpickle

            cloudpickle.dump(model, fh)
        else:
            pickle.dump(model, fh)
    return write_mlflow_model(
        directory, "sklearn",
        {"code": None, "pickled_model": "model.pkl", "serialization_format": fmt,
         "sklearn_version": "1.5.1"},
        loader="mlflow.sklearn", data="model.pkl", signature=column_signature(x),
        example=x.head(5),
    )


def test_pickled_sklearn_model_needs_trust(tmp_path: Path, forest: Any,
                                           iris: tuple[pd.DataFrame, pd.Series]) -> None:
    source = sklearn_pickle_dir(tmp_path, forest, iris[0])
    with pytest.raises(UntrustedArtifactError, match="trusted=True"):
        import_mlflow(source, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_trusted_pickled_sklearn_model_becomes_a_safe_bundle(
    tmp_path: Path, forest: Any, iris: tuple[pd.DataFrame, pd.Series], fmt: str
) -> None:
    x, _ = iris
    source = sklearn_pickle_dir(tmp_path, forest, x, fmt)
    path = import_mlflow(source, tmp_path / "bundle", name="iris-forest", trusted=True)
    model = load_bundle(path)  # stored with skops: no trust needed any more
    assert model.name == "iris-forest"
    assert model.flavor == "sklearn"
    assert model.manifest.flavor_info["serialization"] == "skops"
    assert model.signature.input_names == list(x.columns)
    assert {c.dtype for c in model.signature.inputs} == {"float64"}
    assert model.signature.classes == (0, 1, 2)
    assert model.manifest.example is not None
    assert model.manifest.tags["mlflow_run_id"] == "d1f6a2b0c33f4c0e9a2f7d6b3c6a9e01"
    assert np.array_equal(model.predict(x), forest.predict(x))
    assert np.array_equal(model.predict_proba(x), forest.predict_proba(x))


def test_skops_sklearn_model_imports_without_trust(
    tmp_path: Path, forest: Any, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    import skops.io

    x, _ = iris
    directory = tmp_path / "mlflow_skops"
    directory.mkdir()
    skops.io.dump(forest, directory / "model.skops")
    write_mlflow_model(
        directory, "sklearn",
        {"code": None, "pickled_model": "model.skops", "serialization_format": "skops",
         "sklearn_version": "1.5.1"},
        loader="mlflow.sklearn", data="model.skops", signature=column_signature(x),
    )
    model = load_bundle(import_mlflow(directory, tmp_path / "bundle"))
    assert np.array_equal(model.predict_proba(x), forest.predict_proba(x))
    assert model.manifest.example is None


def test_xgboost_classifier_in_default_xgb_format(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    import xgboost as xgb

    x, y = iris
    clf = xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(x, y)
    directory = tmp_path / "mlflow_xgb"
    directory.mkdir()
    # MLflow's default model_format "xgb": XGBoost >= 2.1 writes UBJSON into that file
    clf.save_model(directory / "model.ubj")
    (directory / "model.ubj").rename(directory / "model.xgb")
    write_mlflow_model(
        directory, "xgboost",
        {"code": None, "data": "model.xgb", "model_class": "xgboost.sklearn.XGBClassifier",
         "model_format": "xgb", "xgb_version": "2.1.1"},
        loader="mlflow.xgboost", data="model.xgb", signature=column_signature(x),
        example=x.head(3),
    )
    model = load_bundle(import_mlflow(directory, tmp_path / "bundle"))
    assert model.flavor == "xgboost"
    assert model.manifest.flavor_info["model_class"] == "XGBClassifier"
    assert np.array_equal(model.predict(x), clf.predict(x))
    assert np.array_equal(model.predict_proba(x), clf.predict_proba(x))


def test_xgboost_booster_in_json_format_with_tensor_signature(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    import xgboost as xgb

    x, y = iris
    arr = x.to_numpy()
    booster = xgb.train({"objective": "reg:squarederror", "nthread": 1},
                        xgb.DMatrix(arr, y.to_numpy(np.float64)), num_boost_round=3)
    directory = tmp_path / "mlflow_booster"
    directory.mkdir()
    booster.save_model(directory / "model.json")
    write_mlflow_model(
        directory, "xgboost",
        {"code": None, "data": "model.json", "model_class": "xgboost.core.Booster",
         "model_format": "json", "xgb_version": "2.1.1"},
        loader="mlflow.xgboost", data="model.json", signature=tensor_signature("float64", 4),
        example=arr[:2],
    )
    model = load_bundle(import_mlflow(directory, tmp_path / "bundle"))
    assert model.signature.kind == "tensor"
    assert model.signature.inputs[0].shape == (4,)
    assert model.signature.task == "regression"
    assert np.array_equal(model.predict(arr), booster.inplace_predict(arr))


def test_lightgbm_booster_and_refused_pickled_sklearn_api(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    import cloudpickle
    import lightgbm as lgb

    x, y = iris
    clf = lgb.LGBMClassifier(n_estimators=4, num_leaves=4, verbose=-1, n_jobs=1).fit(x, y)
    directory = tmp_path / "mlflow_lgb"
    directory.mkdir()
    clf.booster_.save_model(directory / "model.lgb")
    write_mlflow_model(
        directory, "lightgbm",
        {"code": None, "data": "model.lgb", "lgb_version": "4.5.0",
         "model_class": "lightgbm.basic.Booster"},
        loader="mlflow.lightgbm", data="model.lgb", signature=column_signature(x, "double"),
    )
    model = load_bundle(import_mlflow(directory, tmp_path / "bundle"))
    assert model.flavor == "lightgbm"
    assert model.signature.classes == (0, 1, 2)
    assert np.array_equal(model.predict_proba(x), clf.predict_proba(x))
    assert np.array_equal(model.predict(x), clf.predict(x))

    pickled = tmp_path / "mlflow_lgb_sklearn"
    pickled.mkdir()
    with (pickled / "model.pkl").open("wb") as fh:
        cloudpickle.dump(clf, fh)
    write_mlflow_model(
        pickled, "lightgbm",
        {"code": None, "data": "model.pkl", "lgb_version": "4.5.0",
         "model_class": "lightgbm.sklearn.LGBMClassifier"},
        loader="mlflow.lightgbm", data="model.pkl", signature=column_signature(x),
    )
    with pytest.raises(UntrustedArtifactError, match="cloudpickle"):
        import_mlflow(pickled, tmp_path / "refused")
    trusted = load_bundle(import_mlflow(pickled, tmp_path / "trusted", trusted=True))
    assert np.array_equal(trusted.predict(x), clf.predict(x))


def test_onnx_model_with_its_graph_signature(
    tmp_path: Path, forest: Any, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    from skl2onnx import to_onnx

    arr = iris[0].to_numpy(np.float32)
    proto = to_onnx(forest, arr[:1], options={"zipmap": False})
    directory = tmp_path / "mlflow_onnx"
    directory.mkdir()
    (directory / "model.onnx").write_bytes(proto.SerializeToString())
    write_mlflow_model(
        directory, "onnx",
        {"code": None, "data": "model.onnx", "onnx_version": "1.16.2",
         "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
         "onnx_session_options": None},
        loader="mlflow.onnx", data="model.onnx",
    )
    model = load_bundle(import_mlflow(directory, tmp_path / "bundle"))
    assert model.flavor == "onnx"
    assert model.signature.input_names == ["X"]
    x = iris[0]
    assert np.array_equal(model.predict(arr), forest.predict(x))
    assert np.allclose(model.predict_proba(arr), forest.predict_proba(x), atol=1e-6)


def test_mlflow_signature_types_map_to_modelport_dtypes() -> None:
    specs = [{"type": "double", "name": "a", "required": True},
             {"type": "float", "name": "b", "required": False},
             {"type": "long", "name": "c"}, {"type": "integer", "name": "d"},
             {"type": "string", "name": "e"}, {"type": "boolean", "name": "f"}]
    sig = signature_from_mlflow({"inputs": json.dumps(specs), "outputs": None})
    assert sig is not None
    assert [(c.name, c.dtype, c.nullable) for c in sig.inputs] == [
        ("a", "float64", False), ("b", "float32", True), ("c", "int64", False),
        ("d", "int32", False), ("e", "string", False), ("f", "bool", False)]
    with pytest.raises(UnsupportedModelError, match="datetime"):
        signature_from_mlflow({"inputs": json.dumps([{"type": "datetime", "name": "t"}])})
    assert signature_from_mlflow(None) is None


def test_directories_that_cannot_be_imported_say_why(
    tmp_path: Path, forest: Any, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    with pytest.raises(NotFoundError, match="MLmodel"):
        import_mlflow(tmp_path, tmp_path / "out")
    torch_dir = write_mlflow_model(tmp_path / "torch", "pytorch", {"pytorch_version": "2.4"},
                                   loader="mlflow.pytorch", data="data")
    with pytest.raises(UnsupportedModelError, match="pytorch"):
        import_mlflow(torch_dir, tmp_path / "out")
    bare = sklearn_pickle_dir(tmp_path / "bare", forest, iris[0])
    config = yaml.safe_load((bare / "MLmodel").read_text())
    del config["signature"], config["saved_input_example_info"]
    (bare / "MLmodel").write_text(yaml.safe_dump(config))
    with pytest.raises(InvalidInputError, match="signature"):
        import_mlflow(bare, tmp_path / "out", trusted=True)
    escaping = sklearn_pickle_dir(tmp_path / "escape", forest, iris[0])
    config = yaml.safe_load((escaping / "MLmodel").read_text())
    config["flavors"]["sklearn"]["pickled_model"] = "../../etc/passwd"
    (escaping / "MLmodel").write_text(yaml.safe_dump(config))
    with pytest.raises(InvalidInputError, match="leaves the model directory"):
        import_mlflow(escaping, tmp_path / "out", trusted=True)


def test_cli_imports_and_the_bundle_predicts(
    tmp_path: Path, modelport_home: Path, forest: Any, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, _ = iris
    source = sklearn_pickle_dir(tmp_path, forest, x)
    env = {**os.environ, "MODELPORT_HOME": str(modelport_home)}
    out = tmp_path / "imported"
    refused = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "import-mlflow", str(source), "-o",
         str(out)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
    assert "--trusted" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "import-mlflow", str(source), "-o",
         str(out), "--trusted", "--name", "iris"], env=env, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    model = modelport.load(str(out))
    assert model.name == "iris"
    assert np.array_equal(model.predict(x), forest.predict(x))
    shutil.rmtree(out)


def test_lightgbm_sklearn_api_saved_as_skops_by_mlflow_3(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    """MLflow 3 writes LGBMClassifier as skops (``serialization_format: skops``): read it with
    skops, without --trusted, never as a pickle."""
    import lightgbm as lgb
    import skops.io

    x, y = iris
    clf = lgb.LGBMClassifier(n_estimators=4, num_leaves=4, verbose=-1, n_jobs=1).fit(x, y)
    directory = tmp_path / "mlflow3_lgb"
    directory.mkdir()
    skops.io.dump(clf, directory / "model.skops")
    write_mlflow_model(
        directory, "lightgbm",
        {"code": None, "data": "model.skops", "lgb_version": lgb.__version__,
         "model_class": "lightgbm.sklearn.LGBMClassifier", "serialization_format": "skops",
         "skops_trusted_types": ["collections.OrderedDict", "lightgbm.basic.Booster",
                                 "lightgbm.sklearn.LGBMClassifier"]},
        loader="mlflow.lightgbm", data="model.skops", signature=column_signature(x), example=x[:3],
    )
    for trusted in (False, True):
        model = load_bundle(import_mlflow(directory, tmp_path / f"bundle-{trusted}",
                                          trusted=trusted))
        assert np.array_equal(model.predict(x), clf.predict(x))
        assert np.allclose(model.predict_proba(x), clf.predict_proba(x))

    config = yaml.safe_load((directory / "MLmodel").read_text())
    config["flavors"]["lightgbm"]["serialization_format"] = "joblib"
    (directory / "MLmodel").write_text(yaml.safe_dump(config))
    with pytest.raises(UnsupportedModelError, match="serialization_format 'joblib'"):
        import_mlflow(directory, tmp_path / "unknown")


class NeedsTrust:
    """A pyfunc model whose load would run code from its artifacts (as MLflow pyfunc does)."""

    requires_trust = True

    def load(self, path: Path) -> None:
        pass

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), 2.0)


def test_pyfunc_only_models_need_mlflow_and_trust(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    """MLflow is not installed here: the error says to install it (the install tests import
    real pyfunc models with mlflow); a bundle whose pyfunc class needs trust loads only with it.
    """
    x, _ = iris
    directory = tmp_path / "pyfunc"
    directory.mkdir()
    (directory / "python_model.pkl").write_bytes(b"not read")
    config = {"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model",
                                              "python_model": "python_model.pkl"}},
              "signature": column_signature(x, "double")}
    (directory / "MLmodel").write_text(yaml.safe_dump(config))
    with pytest.raises(UnsupportedModelError, match="pip install mlflow"):
        import_mlflow(directory, tmp_path / "out", trusted=True)

    bundle = modelport.save(NeedsTrust(), tmp_path / "needs-trust", name="needs-trust",
                            example=x[:3])
    with pytest.raises(UntrustedArtifactError, match="--trusted"):
        load_bundle(bundle).predict(x[:2])
    assert list(load_bundle(bundle, trusted=True).predict(x[:2])) == [2.0, 2.0]
