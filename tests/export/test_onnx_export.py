"""``modelport export --format onnx``: parity with the native model for every flavor that
converts, the options, the metadata, and clear refusals."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from export_helpers import MODEL, VERSION, Setup

import modelport
from modelport.cli.main import main
from modelport.errors import UnsupportedModelError
from modelport.export.onnx_file import OnnxOptions, export_onnx
from modelport.export.source import ExportSource


def _run(graph: bytes, matrix: np.ndarray) -> list[Any]:
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: matrix})  # type: ignore[no-any-return]


def test_cli_exports_registered_version_with_signature_and_parity(
        cli_env: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "churn.onnx"
    assert main(["export", f"{MODEL}:{VERSION}", "--format", "onnx", "-o", str(target),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["passed"] and report["parity"]["rows"] == 100
    assert report["parity"]["max_probability_diff"] < 1e-4
    proto = onnx.load(str(target))
    meta = {p.key: p.value for p in proto.metadata_props}
    registered = modelport.load(f"{MODEL}:{VERSION}")
    assert json.loads(meta["modelport.signature"]) == registered.signature.to_dict()
    assert meta["modelport.version"] == str(VERSION) and proto.model_version == VERSION
    assert f"model {MODEL} version {VERSION}" in meta["modelport.made_by"]
    # the file alone answers like the model: labels equal, probabilities close
    rows = cli_env.frame.iloc[200:260]
    label, proba = _run(target.read_bytes(), rows.to_numpy(np.float32))
    assert [p.name for p in proto.graph.output] == ["label", "probabilities"]  # no ZipMap
    np.testing.assert_array_equal(label, registered.predict(rows))
    np.testing.assert_allclose(proba, registered.predict_proba(rows), atol=1e-4)


def test_options_opset_float64_and_fixed_batch(setup: Setup) -> None:
    source = ExportSource.open(str(setup.bundle))
    rows = setup.frame.iloc[:16]
    expected = source.model.predict_proba(rows)

    at15 = export_onnx(source, OnnxOptions(opset=15))
    proto = onnx.load_model_from_string(at15.onnx_bytes)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 15

    double = export_onnx(source, OnnxOptions(dtype="float64"))
    graph_input = onnx.load_model_from_string(double.onnx_bytes).graph.input[0]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    _, proba = _run(double.onnx_bytes, rows.to_numpy(np.float64))
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, expected, atol=1e-9)  # double precision end to end

    fixed = export_onnx(source, OnnxOptions(batch_size=8))
    dims = onnx.load_model_from_string(fixed.onnx_bytes).graph.input[0].type.tensor_type.shape
    assert dims.dim[0].dim_value == 8
    assert fixed.parity.rows == 100 and fixed.parity.passed
    with pytest.raises(Exception, match="8"):  # the graph refuses any other batch size
        _run(fixed.onnx_bytes, rows.to_numpy(np.float32))


@pytest.fixture(scope="module")
def boosters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import lightgbm
    import xgboost
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True, as_frame=True)
    root = tmp_path_factory.mktemp("boosters")
    out = {}
    for name, model in (
            ("xgb", xgboost.XGBClassifier(n_estimators=20, max_depth=3)),
            ("lgbm", lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1))):
        model.fit(x, y)
        out[name] = modelport.save(model, root / name, example=x.sample(60, random_state=0))
    return out


@pytest.mark.parametrize("flavor", ["xgb", "lgbm"])
def test_boosters_export_with_parity(boosters: dict[str, Path], flavor: str) -> None:
    source = ExportSource.open(str(boosters[flavor]))
    exported = export_onnx(source)
    assert exported.parity.passed and exported.parity.labels_equal
    assert exported.parity.max_probability_diff is not None
    assert exported.parity.max_probability_diff < 1e-4
    meta = {p.key: p.value for p in onnx.load_model_from_string(exported.onnx_bytes)
            .metadata_props}
    assert meta["modelport.labels_from_proba"] == str(exported.labels_from_proba).lower()


def test_torch_module_exports_with_parity(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Scores(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.linear(x), dim=1)

    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bundle = modelport.save(Scores(), tmp_path / "torch", example=x)
        source = ExportSource.open(str(bundle))
        exported = export_onnx(source)
        native = source.model.predict_batch(source.model.coerce(x)).outputs["output"]
    assert exported.parity.passed and exported.parity.max_value_rel_diff is not None
    (value,) = _run(exported.onnx_bytes, x)
    np.testing.assert_allclose(value, native, rtol=1e-4, atol=1e-6)


class Echo:
    """A pyfunc model: nothing converts plain Python to ONNX."""

    def load(self, path: Path) -> None:
        pass

    def predict(self, frame: pd.DataFrame) -> list[float]:
        return [float(v) for v in frame["a"]]


def test_unconvertible_model_is_refused_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = modelport.save(Echo(), tmp_path / "echo", example=pd.DataFrame({"a": [1.0, 2.0]}),
                            trusted=True)
    with pytest.raises(UnsupportedModelError, match="has no ONNX converter"):
        export_onnx(ExportSource.open(str(bundle), trusted=True))
    assert main(["export", str(bundle), "--format", "onnx", "-o", str(tmp_path / "x.onnx"),
                 "--trusted"]) == 8
    err = capsys.readouterr().err
    assert err.startswith("error: model echo cannot be exported to ONNX") and err[-1] == "\n"
    assert err.count("\n") == 1 and not (tmp_path / "x.onnx").exists()


def test_float64_refused_for_boosters(boosters: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedModelError, match="only scikit-learn models"):
        export_onnx(ExportSource.open(str(boosters["xgb"])), OnnxOptions(dtype="float64"))


def test_bad_input_one_error_line_each(cli_env: Setup, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    ref = f"{MODEL}:{VERSION}"
    cases = [
        (["export", ref, "--format", "tflite"], 2, "unknown export format 'tflite'"),
        (["export", ref, "--format", "onnx", "-o", str(target)], 5, "--force"),
        (["export", ref, "--format", "onnx", "--opset", "7", "-o", str(tmp_path / "a.onnx")],
         2, "--opset must be at least 13"),
        (["export", "nosuch:1", "--format", "onnx"], 4, "nosuch"),
    ]
    for argv, code, text in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and text in err and err.count("\n") == 1, err
    assert target.read_bytes() == b"old"  # refused, not overwritten
    assert main(["export", ref, "--format", "onnx", "-o", str(target), "--force"]) == 0
    assert onnx.load(str(target)).model_version == VERSION
