"""The command line, as a user runs it: real processes for the main path, main() for errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.cli.main import main


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def churn_bundle(tmp_path: Path, cancer_pipeline: Any,
                 cancer_frame: tuple[pd.DataFrame, pd.Series]) -> Path:
    x, _ = cancer_frame
    return modelport.save(cancer_pipeline, tmp_path / "churn", example=x.head(20))


def test_register_alias_predict_prints_exactly_the_in_process_predictions(
    tmp_path: Path, modelport_home: Path, churn_bundle: Path, cancer_pipeline: Any,
    cancer_frame: tuple[pd.DataFrame, pd.Series],
) -> None:
    x, _ = cancer_frame
    sample = x.sample(60, random_state=1)
    sample.to_csv(tmp_path / "x.csv", index=False)

    out = run_cli("models", "register", str(churn_bundle), home=modelport_home)
    assert out.returncode == 0, out.stderr
    assert "registered churn version 1" in out.stdout
    out = run_cli("alias", "set", "churn", "production", "1", home=modelport_home)
    assert out.returncode == 0, out.stderr
    # --accelerate off: the native model itself, so exactly its numbers
    out = run_cli("predict", "churn@production", "--input", str(tmp_path / "x.csv"),
                  "--accelerate", "off", home=modelport_home)
    assert out.returncode == 0, out.stderr
    printed = [json.loads(line) for line in out.stdout.splitlines()]
    assert list(printed[0]) == ["prediction_id", "prediction", "probabilities", "model",
                                "version", "predicted_at"]
    assert [p["prediction"] for p in printed] == cancer_pipeline.predict(sample).tolist()
    expected = cancer_pipeline.predict_proba(sample)
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in printed])
    assert np.array_equal(got, expected)
    # by default (as batch run) the stored ONNX form answers: same labels, float32 precision
    out = run_cli("predict", "churn@production", "--input", str(tmp_path / "x.csv"),
                  home=modelport_home)
    assert out.returncode == 0, out.stderr
    printed = [json.loads(line) for line in out.stdout.splitlines()]
    assert [p["prediction"] for p in printed] == cancer_pipeline.predict(sample).tolist()
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in printed])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_predict_reads_and_writes_every_format(
    tmp_path: Path, modelport_home: Path, churn_bundle: Path, cancer_pipeline: Any,
    cancer_frame: tuple[pd.DataFrame, pd.Series], suffix: str,
) -> None:
    x, _ = cancer_frame
    sample = x.head(25).copy()
    sample.insert(0, "customer_id", range(100, 125))
    src = tmp_path / f"in{suffix}"
    if suffix == ".parquet":
        sample.to_parquet(src)
    elif suffix == ".jsonl":
        sample.to_json(src, orient="records", lines=True)
    else:
        sample.to_csv(src, index=False)
    assert main(["models", "register", str(churn_bundle)]) == 0
    dest = tmp_path / f"out{suffix}"
    assert main(["predict", "churn", "-i", str(src), "-o", str(dest),
                 "--keep", "customer_id"]) == 0
    result = (pd.read_parquet(dest) if suffix == ".parquet" else
              pd.read_json(dest, lines=True) if suffix == ".jsonl" else pd.read_csv(dest))
    assert result["customer_id"].tolist() == list(range(100, 125))
    assert list(result.columns) == ["customer_id", "prediction_id", "prediction",
                                    "probability_0", "probability_1", "model", "version",
                                    "predicted_at"]
    assert result["prediction"].tolist() == cancer_pipeline.predict(x.head(25)).tolist()
    # the stored ONNX form answers (float32 inside), as in batch run
    assert np.allclose(result["probability_1"],
                       cancer_pipeline.predict_proba(x.head(25))[:, 1], rtol=0, atol=1e-6)
    ids = result["prediction_id"].tolist()
    assert ids[3] == f"{ids[0][:-2]}-3" and len(ids[0]) == 34  # P-<row>, P 32 hex


def test_predict_rejects_only_the_row_with_a_bad_cell(
    tmp_path: Path, modelport_home: Path, churn_bundle: Path, cancer_pipeline: Any,
    cancer_frame: tuple[pd.DataFrame, pd.Series], capsys: pytest.CaptureFixture[str],
) -> None:
    x, _ = cancer_frame
    sample = x.head(20).astype(object)
    column = sample.columns[1]
    sample.iloc[17, 1] = "abc"
    sample.to_csv(tmp_path / "x.csv", index=False)
    assert main(["models", "register", str(churn_bundle)]) == 0
    capsys.readouterr()
    assert main(["predict", "churn", "-i", str(tmp_path / "x.csv")]) == 0
    out, err = capsys.readouterr()
    printed = [json.loads(line) for line in out.splitlines()]
    assert len(printed) == 19
    good = x.head(20).drop(index=x.index[17])
    assert [p["prediction"] for p in printed] == cancer_pipeline.predict(good).tolist()
    assert err.strip() == f"rejected row 17: column {column!r}: 'abc' is not a number (float64)"
    sample.iloc[:, 1] = "abc"  # every row bad: a failure, not an empty answer
    sample.to_csv(tmp_path / "x.csv", index=False)
    assert main(["predict", "churn", "-i", str(tmp_path / "x.csv")]) == 3
    assert "all 20 rows were rejected" in capsys.readouterr().err


def test_models_list_show_tag_archive_audit_json(
    modelport_home: Path, churn_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "register", str(churn_bundle), "--tag", "team=growth"]) == 0
    assert main(["models", "register", str(churn_bundle)]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing == [{"name": "churn", "versions": 2, "latest": 2, "aliases": ""}]
    assert main(["alias", "set", "churn", "staging", "2"]) == 0
    assert main(["models", "tag", "churn:2", "owner=ana", "--json"]) == 0
    capsys.readouterr()
    assert main(["--json", "models", "show", "churn@staging"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["aliases"] == ["staging"]
    assert shown["tags"] == {"owner": "ana"}
    assert shown["signature"]["inputs"][0] == {"name": "mean radius", "dtype": "float64"}
    assert shown["accelerated"]["file"] == "accelerated.onnx"
    assert main(["models", "show", "churn:2"]) == 0
    assert "ONNX form: stored (converted with skl2onnx" in capsys.readouterr().out
    assert main(["models", "archive", "churn:1"]) == 0
    assert main(["models", "list", "churn", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [v["version"] for v in versions] == [2]
    assert main(["models", "audit", "churn", "--json"]) == 0
    actions = [e["action"] for e in json.loads(capsys.readouterr().out.splitlines()[-1])]
    assert {"register", "set_alias", "archive"} <= set(actions)
    assert main(["alias", "rm", "churn", "staging"]) == 0
    assert main(["alias", "list", "churn", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []


BAD_COMMANDS: list[tuple[list[str], int, str]] = [
    (["models", "register", "/no/such/dir"], 2, "does not exist"),
    (["models", "register", "{tmp}"], 4, "modelport.yaml"),
    (["models", "register", "{bundle}", "--name", "../evil"], 3, "invalid model name"),
    (["models", "register", "{bundle}", "--tag", "novalue"], 3, "KEY=VALUE"),
    (["models", "show", "ghost"], 4, "no model named 'ghost'"),
    (["models", "show", "bad name!"], 3, "invalid"),
    (["models", "show", "churn:99"], 4, "no version 99"),
    (["models", "show", "churn@nope"], 4, "nope"),
    (["models", "list", "ghost"], 4, "ghost"),
    (["models", "archive", "ghost:1"], 4, "ghost"),
    (["alias", "set", "churn", "production", "x"], 2, "whole number"),
    (["alias", "set", "churn", "production", "0"], 2, "1 or more"),
    (["alias", "set", "churn", "production", "5"], 4, "no version 5"),
    (["alias", "rm", "churn", "nope"], 4, "nope"),
    (["predict", "churn", "--input", "/no/such.csv"], 2, "does not exist"),
    (["predict", "churn", "--input", "{tmp}/bad.txt"], 2, "unsupported input format"),
    (["predict", "churn", "--input", "{tmp}/wrong.csv"], 3, "no column"),
    (["predict", "churn", "--input", "{tmp}/garbage.parquet"], 3, "cannot read"),
    (["predict", "churn", "--input", "{tmp}/wrong.csv", "--keep", "zzz"], 3, "zzz"),
    (["predict", "ghost", "--input", "{tmp}/wrong.csv"], 4, "ghost"),
    (["import-mlflow", "/no/such/dir"], 2, "does not exist"),
    (["models"], 2, "required"),
    (["nonsense"], 2, "invalid choice"),
    (["predict", "churn"], 2, "--input"),
]


@pytest.mark.parametrize(("argv", "code", "fragment"), BAD_COMMANDS,
                         ids=[" ".join(a[:3]) for a, _, _ in BAD_COMMANDS])
def test_bad_input_gives_one_clear_line_and_a_non_zero_exit(
    tmp_path: Path, modelport_home: Path, churn_bundle: Path,
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str,
) -> None:
    assert main(["models", "register", str(churn_bundle)]) == 0
    (tmp_path / "bad.txt").write_text("a,b\n1,2\n")
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    capsys.readouterr()
    argv = [a.format(tmp=tmp_path, bundle=churn_bundle) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors exit through SystemExit
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_a_real_process_prints_no_traceback(modelport_home: Path) -> None:
    out = run_cli("models", "show", "ghost", home=modelport_home)
    assert out.returncode == 4
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_quickstart_runs_on_embedded_defaults(modelport_home: Path) -> None:
    out = run_cli("quickstart", "--no-serve", home=modelport_home)
    assert out.returncode == 0, out.stderr
    assert "registered breast-cancer version 1" in out.stderr
    assert out.stdout.count("predicted") == 5
    assert (modelport_home / "registry.db").exists()


def test_quickstart_ends_with_a_served_model_and_a_curl_line_that_works(
    modelport_home: Path, cancer_pipeline: Any
) -> None:
    import shlex
    import signal
    import time

    import httpx

    env = {**os.environ, "MODELPORT_HOME": str(modelport_home)}
    log = modelport_home.parent / "quickstart.err"
    with log.open("w") as err, subprocess.Popen(
        [sys.executable, "-m", "modelport.cli.main", "quickstart", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=err, text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 120
            curl = ""
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if line.startswith("curl "):
                    curl = line.strip()
                    break
                if not line and proc.poll() is not None:
                    break
            assert curl, log.read_text()
            words = shlex.split(curl)
            url = next(w for w in words if w.startswith("http://127.0.0.1:"))
            body = words[words.index("-d") + 1]
            response = httpx.post(url, content=body,
                                  headers={"content-type": "application/json"}, timeout=10)
            assert response.status_code == 200, response.text
            answer = response.json()
            expected = cancer_pipeline.predict(pd.DataFrame([json.loads(body)]))[0]
            assert answer["model"] == "breast-cancer" and answer["version"] == 1
            assert answer["prediction"] == expected
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()
