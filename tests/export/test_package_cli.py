"""``modelport package``: bad input gets one ``error:`` line naming what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_helpers import MODEL, VERSION, Setup

from modelport.cli.main import main


def test_bad_input_one_error_line_each(cli_env: Setup, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    ref = f"{MODEL}:{VERSION}"
    cases = [
        (["package", ref, "--target", "nomad"], 2, "unknown package target 'nomad'"),
        (["package", ref, "--target", "docker", "-o", str(existing)], 5,
         "rerun 'modelport package churn:2 --target docker' with --force"),
        (["package", ref, "--target", "python", "--package-name", "9lives",
          "-o", str(tmp_path / "w")], 3, "'9lives' is not a valid Python package name"),
        (["package", ref, "--target", "docker", "--port", "8001", "-o", str(tmp_path / "d")],
         2, "--port and --grpc-port must differ"),
        (["package", "ghost:1", "--target", "docker"], 4, "ghost"),
    ]
    for argv, code, text in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and text in err and err.count("\n") == 1, err
    assert (existing / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "w").exists() and not (tmp_path / "d").exists()
    assert main(["package", ref, "--target", "knative", "-o", str(existing), "--force"]) == 0
    assert sorted(p.name for p in existing.iterdir()) == ["service.yaml"]
