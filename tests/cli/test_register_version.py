"""``modelport models register DIR --version N``: a bundle keeps the number it has elsewhere
(container images mirror their source version this way); a number already taken is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelport
from modelport.cli.main import main


def test_register_at_an_explicit_version_and_refuse_a_taken_one(
    tmp_path: Path, modelport_home: Path, cancer_pipeline: Any,
    cancer_frame: tuple[pd.DataFrame, pd.Series], capsys: pytest.CaptureFixture[str],
) -> None:
    x, _ = cancer_frame
    bundle = modelport.save(cancer_pipeline, tmp_path / "churn", example=x.head(20))
    assert main(["models", "register", str(bundle), "--version", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["name"], answer["version"], answer["registered"]) == ("churn", 3, True)

    assert main(["models", "register", str(bundle), "--version", "3"]) == 5
    err = capsys.readouterr().err
    assert err.startswith("error: model 'churn' already has version 3; versions are immutable")
    assert "modelport models register" in err and err.count("\n") == 1

    for bad in ("0", "x"):
        with pytest.raises(SystemExit) as exited:
            main(["models", "register", str(bundle), "--version", bad])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "--version" in err and "Traceback" not in err
    assert main(["models", "register", str(bundle), "--version", "2147483648"]) == 3
    assert capsys.readouterr().err.startswith("error: version must be a positive integer")

    assert main(["models", "register", str(bundle)]) == 0
    assert capsys.readouterr().out.strip().startswith("registered churn version 4")
    assert main(["models", "list", "churn", "--json"]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)] == [3, 4]
