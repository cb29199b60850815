"""``modelport package --target python``: the wheel installs into a fresh virtualenv holding
only numpy and onnxruntime, answers like ``modelport serve``, and refuses a tampered payload."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from export_helpers import MODEL, VERSION, Setup, same_answers

from modelport.cli.main import main

PREDICT = """
import json, sys
import {package} as m
rows = json.load(open(sys.argv[1]))
out = m.predict(rows)
import importlib.util
out["sklearn_importable"] = importlib.util.find_spec("sklearn") is not None
out["modelport_importable"] = importlib.util.find_spec("modelport") is not None
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def wheelhouse(request: pytest.FixtureRequest) -> Path:
    """Wheels of this environment's numpy and onnxruntime (downloaded once, kept in pytest's
    cache), so the fresh virtualenv installs without reaching an index."""
    from importlib.metadata import version

    folder = Path(request.config.cache.mkdir("wheelhouse-numpy-onnxruntime"))
    pins = [f"numpy=={version('numpy')}", f"onnxruntime=={version('onnxruntime')}"]
    marker = folder / ("-".join(pins) + ".done")
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
                        "-d", str(folder), *pins], check=True, timeout=600)
        marker.touch()
    return folder


@pytest.fixture(scope="module")
def built(cli_env_module: Setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel") / "out"
    assert main(["package", f"{MODEL}:{VERSION}", "--target", "python", "-o", str(out)]) == 0
    (wheel,) = out.glob("*.whl")
    assert wheel.name == f"{MODEL}_model-{VERSION}-py3-none-any.whl"
    return wheel


@pytest.fixture(scope="module")
def cli_env_module(setup: Setup) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELPORT_HOME", str(setup.home))
        yield setup


def _pip(python: Path, *args: str) -> str:
    """This environment's pip, working on the virtualenv of ``python`` (which has none)."""
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args],
                          check=True, capture_output=True, text=True, timeout=300)
    return done.stdout


@pytest.fixture(scope="module")
def venv(built: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed: numpy and onnxruntime come with it."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = path / "bin" / "python"
    _pip(python, "install", "-q", "--no-index", "--find-links", str(wheelhouse), str(built))
    return python


def test_wheel_installs_with_numpy_and_onnxruntime_only_and_answers_like_serve(
        venv: Path, setup: Setup, served: Any, tmp_path: Path) -> None:
    python = venv
    listed = _pip(python, "list", "--format", "json")
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed)}
    assert {"numpy", "onnxruntime", f"{MODEL}-model"} <= installed
    assert not installed & {"scikit-learn", "modelport", "pandas", "skops", "pyarrow"}
    rows = setup.rows(100, 100)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    script = PREDICT.format(package=f"{MODEL}_model")
    done = subprocess.run([str(python), "-c", script, str(tmp_path / "rows.json")],
                          check=True, capture_output=True, text=True, timeout=120)
    answer = json.loads(done.stdout)
    assert answer["model"] == MODEL and answer["version"] == VERSION
    assert answer["sklearn_importable"] is False and answer["modelport_importable"] is False
    same_answers(served.predict(rows)["predictions"], answer["predictions"])

    # a bad row names the field, as the server would
    bad = subprocess.run([str(python), "-c", f"import {MODEL}_model as m; m.predict([{{}}])"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "InputError: row 0: missing column 'mean radius'" in bad.stderr

    # tampering with the installed payload refuses the import
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    graph = site / f"{MODEL}_model" / "model.onnx"
    graph.write_bytes(graph.read_bytes().replace(b"probabilities", b"probabilitieZ", 1))
    tampered = subprocess.run([str(python), "-c", f"import {MODEL}_model"],
                              capture_output=True, text=True, timeout=60)
    assert tampered.returncode != 0
    assert "IntegrityError" in tampered.stderr and "model.onnx does not match" in tampered.stderr


def test_tampered_wheel_is_refused_on_import(built: Path, venv: Path, tmp_path: Path) -> None:
    """A wheel whose bundle payload was swapped (RECORD and all) installs but never imports."""
    tampered = tmp_path / built.name
    with zipfile.ZipFile(built) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("bundle/modelport.yaml"):
                data = data.replace(b"name: churn", b"name: churm")
            dst.writestr(item, data)
    with zipfile.ZipFile(tampered) as check:
        inits = [n for n in check.namelist() if n.endswith("/__init__.py")]
        assert inits == [f"{MODEL}_model/__init__.py"]
    python = venv
    _pip(python, "install", "-q", "--no-index", "--no-deps", "--force-reinstall", str(tampered))
    done = subprocess.run([str(python), "-c", f"import {MODEL}_model"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "bundle/modelport.yaml does not match its recorded SHA-256" in done.stderr


def test_embedded_runtime_feeds_string_and_integer_columns(mixed_bundle: Path,
                                                            tmp_path: Path) -> None:
    """The runtime alone (unpacked, no install) on one graph input per column, string labels."""
    import modelport
    from modelport.export.source import ExportSource
    from modelport.export.wheel import build_wheel

    built = build_wheel(ExportSource.open(str(mixed_bundle)))
    assert built.filename == "mixed_model-0-py3-none-any.whl"
    wheel = tmp_path / built.filename
    wheel.write_bytes(built.data)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    rows = json.loads((mixed_bundle.parent / "rows.json").read_text())
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    script = f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r})\n" + \
        PREDICT.format(package="mixed_model")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "rows.json")],
                          check=True, capture_output=True, text=True, timeout=120)
    got = json.loads(done.stdout)["predictions"]
    model = modelport.load(str(mixed_bundle))
    result = model.predict_batch(model.coerce(rows))
    assert [r["prediction"] for r in got] == result.labels.tolist()
    for row, proba in zip(got, result.probabilities.tolist(), strict=True):
        assert list(row["probabilities"]) == ["no", "yes"]
        assert max(abs(a - b) for a, b in zip(row["probabilities"].values(), proba,
                                              strict=True)) < 1e-5
    bad = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, "
                          f"{str(tmp_path / 'site')!r}); import mixed_model as m; "
                          "m.predict({'plan': 'pro', 'tenure': 1.5, 'spend': 3.0})"],
                         capture_output=True, text=True, timeout=60)
    assert "column 'tenure': expected int64, got a fractional number (1.5)" in bad.stderr
