"""``modelport batch run --log``: every scored row logged as ``<run_id>-<row>``; a rerun of the
same run id (``--resume``) writes no duplicate ids."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelport.log as ml
from modelport.cli.main import main
from modelport.log.delta import DeltaStore

from .conftest import frame


def test_batch_run_logs_every_row_with_its_run_id(modelport_home: Path, churn_bundle: Path,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.parquet"
    frame(2500, 3).to_parquet(source)
    args = ["batch", "run", str(churn_bundle), "--input", str(source), "--output",
            str(tmp_path / "out.parquet"), "--chunk-rows", "1000", "--no-progress",
            "--run-id", "nightly", "--log", "delta"]
    assert main(args) == 0, capsys.readouterr().err
    store = DeltaStore(str(modelport_home / "log"))
    table = ml.read(model="churn", store=store)
    assert sorted(table.column("prediction_id").to_pylist()) == sorted(
        f"nightly-{i}" for i in range(2500))
    assert set(table.column("source").to_pylist()) == {"batch:nightly"}
    assert main([*args, "--resume"]) == 0  # the committed run: nothing new, no duplicates
    ids = ml.read(model="churn", store=store).column("prediction_id").to_pylist()
    assert len(ids) == len(set(ids)) == 2500
