"""Parquet outputs: local folders and S3 (moto server), atomic, idempotent, with rejects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import modelport
from modelport.batch import JobSpec, read_output, run_job
from modelport.batch.progress import Progress
from modelport.bundle.manifest import Manifest
from modelport.errors import ConfigurationError, InvalidInputError

from .conftest import FEATURES, frame, write_parquet

QUIET = {"progress": Progress(enabled=False)}


def test_local_run_writes_predictions_for_every_row(classifier_bundle: Path, tmp_path: Path,
                                                    home: Path) -> None:
    data = frame(1000)
    write_parquet(tmp_path / "in" / "a.parquet", data.iloc[:600])
    write_parquet(tmp_path / "in" / "b.parquet", data.iloc[600:])
    out = tmp_path / "scores"
    summary = run_job(JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in"),
                              output=str(out), keep=("id",), chunk_rows=128), **QUIET)
    assert (summary.rows_in, summary.rows_out, summary.rejected) == (1000, 1000, 0)
    assert summary.chunks == 8 and not summary.noop
    table = pq.read_table(out)  # any Parquet reader sees the published dataset
    model = modelport.load(str(classifier_bundle))
    assert table["id"].to_pylist() == list(range(1000))
    np.testing.assert_allclose(table["probability_1"].to_numpy(),
                               model.predict_proba(data[FEATURES])[:, 1], atol=1e-5)
    assert table["prediction_id"].to_pylist() == [f"{summary.run_id}-{i}" for i in range(1000)]
    assert read_output(str(out)).equals(table)


def test_rerun_is_a_noop_and_new_input_replaces_the_output(classifier_bundle: Path,
                                                           tmp_path: Path, home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(300))
    spec = JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"),
                   output=str(tmp_path / "out"), keep=("id",), chunk_rows=100)
    first = run_job(spec, **QUIET)
    mtime = os.lstat(tmp_path / "out").st_mtime_ns
    again = run_job(spec, **QUIET)
    assert again.noop and again.run_id == first.run_id and again.rows_out == 300
    assert os.lstat(tmp_path / "out").st_mtime_ns == mtime
    write_parquet(tmp_path / "in.parquet", frame(200, seed=5))
    second = run_job(spec, **QUIET)
    assert second.run_id != first.run_id and not second.noop
    assert pq.read_table(tmp_path / "out").num_rows == 200
    third_input = frame(100, seed=6)
    write_parquet(tmp_path / "in.parquet", third_input)
    run_job(spec, **QUIET)
    versions = sorted(os.listdir(tmp_path / ".out.modelport"))
    assert first.run_id not in versions  # older than the previous version: collected
    assert second.run_id in versions


def test_rejects_are_kept_and_the_reject_rate_guards_the_commit(
        classifier_bundle: Path, tmp_path: Path, home: Path) -> None:
    data = frame(200)
    data["f1"] = data["f1"].astype(object)
    data.loc[[10, 150], "f1"] = None
    write_parquet(tmp_path / "in.parquet", data)
    spec = JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"),
                   output=str(tmp_path / "out"), keep=("id",), chunk_rows=64,
                   max_reject_rate=0.005)
    with pytest.raises(InvalidInputError, match=r"2 of 200 rows \(1.00%\).*nothing was published"):
        run_job(spec, **QUIET)
    assert not (tmp_path / "out").exists()
    summary = run_job(spec.with_changes(max_reject_rate=0.02, resume=True), **QUIET)
    assert (summary.rows_in, summary.rows_out, summary.rejected) == (200, 198, 2)
    assert summary.resumed_chunks == 4  # the refused run's chunks were kept
    assert pq.read_table(tmp_path / "out")["id"].to_pylist() == \
        [i for i in range(200) if i not in (10, 150)]
    rejects = pq.read_table(summary.rejects)
    assert rejects["id"].to_pylist() == [10, 150]
    assert "missing value" in rejects["reason"][0].as_py()


def test_output_folder_of_someone_else_is_refused(classifier_bundle: Path, tmp_path: Path,
                                                  home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(10))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="not written by modelport"):
        run_job(JobSpec(ref=str(classifier_bundle), input=str(tmp_path / "in.parquet"),
                        output=str(tmp_path / "out")), **QUIET)
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_s3_input_and_output(classifier_bundle: Path, tmp_path: Path, home: Path,
                             s3_server: dict[str, Any]) -> None:
    import s3fs

    options = s3_server["options"]
    fs = s3fs.S3FileSystem(**options)
    data = frame(500)
    local = write_parquet(tmp_path / "in.parquet", data)
    fs.put(str(local), "scores/input/day=1/part-0.parquet")
    spec = JobSpec(ref=str(classifier_bundle), input="s3://scores/input/",
                   output="s3://scores/out", keep=("id",), chunk_rows=200,
                   storage_options=options)
    summary = run_job(spec, **QUIET)
    assert summary.rows_out == 500
    table = read_output("s3://scores/out", storage_options=options)
    assert table["id"].to_pylist() == list(range(500))
    assert fs.cat("scores/out/_modelport/CURRENT").decode() == summary.run_id
    assert run_job(spec, **QUIET).noop
    # a .csv output on S3 is one object, written in one PUT
    csv_run = run_job(spec.with_changes(output="s3://scores/scores.csv"), **QUIET)
    lines = fs.cat("scores/scores.csv").decode().splitlines()
    assert len(lines) == 501 and lines[0].startswith('"id","prediction_id","prediction"')
    assert lines[1].split(",")[1] == f'"{csv_run.run_id}-0"'


def test_onnx_conversion_is_cached_for_the_next_run(slow_bundle: Path, tmp_path: Path,
                                                    home: Path) -> None:
    """A bundle saved without its ONNX form is converted by the first run, then from cache."""
    import shutil

    bundle = tmp_path / "unconverted"
    shutil.copytree(slow_bundle, bundle)
    manifest = Manifest.read(bundle)
    manifest.accelerated = None  # as a bundle saved with accelerate=False, or imported
    for name in ("accelerated.onnx", "accelerated-check.npz"):
        (bundle / name).unlink()
        del manifest.files[name]
    manifest.write(bundle)
    write_parquet(tmp_path / "in.parquet", frame(300))
    spec = JobSpec(ref=str(bundle), input=str(tmp_path / "in.parquet"),
                   output=str(tmp_path / "first"), keep=("id",))
    first = run_job(spec, **QUIET)
    second = run_job(spec.with_changes(output=str(tmp_path / "second")), **QUIET)
    assert first.accelerated and second.accelerated
    assert "cached" not in (first.acceleration or "")
    assert "conversion cached" in (second.acceleration or "")
    assert len(list((home / "cache" / "onnx").glob("*.onnx"))) == 1
    drop = ["prediction_id", "predicted_at"]
    assert pq.read_table(tmp_path / "first").drop_columns(drop).equals(
        pq.read_table(tmp_path / "second").drop_columns(drop))
    native = run_job(spec.with_changes(output=str(tmp_path / "native"), accelerate="off"),
                     **QUIET)
    assert not native.accelerated
    np.testing.assert_allclose(pq.read_table(tmp_path / "native")["probability_1"].to_numpy(),
                               pq.read_table(tmp_path / "first")["probability_1"].to_numpy(),
                               atol=1e-5)


def test_first_run_uses_the_bundles_stored_onnx_form(slow_bundle: Path, tmp_path: Path,
                                                      home: Path) -> None:
    write_parquet(tmp_path / "in.parquet", frame(300))
    spec = JobSpec(ref=str(slow_bundle), input=str(tmp_path / "in.parquet"),
                   output=str(tmp_path / "out"), keep=("id",))
    summary = run_job(spec, **QUIET)
    assert summary.accelerated
    assert (summary.acceleration or "").startswith("stored ONNX form")
    assert not list((home / "cache").glob("onnx/*.onnx"))  # nothing to convert, nothing cached
    native = run_job(spec.with_changes(output=str(tmp_path / "native"), accelerate="off"),
                     **QUIET)
    assert not native.accelerated
    assert pq.read_table(tmp_path / "native")["prediction"].to_pylist() == \
        pq.read_table(tmp_path / "out")["prediction"].to_pylist()
    np.testing.assert_allclose(pq.read_table(tmp_path / "native")["probability_1"].to_numpy(),
                               pq.read_table(tmp_path / "out")["probability_1"].to_numpy(),
                               atol=1e-5)


def test_cached_conversion_still_verifies_the_bundle(classifier_bundle: Path, tmp_path: Path,
                                                     home: Path) -> None:
    import shutil

    from modelport.errors import IntegrityError

    bundle = tmp_path / "bundle"
    shutil.copytree(classifier_bundle, bundle)
    write_parquet(tmp_path / "in.parquet", frame(20))
    spec = JobSpec(ref=str(bundle), input=str(tmp_path / "in.parquet"),
                   output=str(tmp_path / "a"))
    assert run_job(spec, **QUIET).accelerated
    artifact = next(p for p in bundle.iterdir() if p.suffix == ".skops")
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError):
        run_job(spec.with_changes(output=str(tmp_path / "b")), **QUIET)


def test_only_columns_with_few_values_are_dictionary_encoded(classifier_bundle: Path,
                                                            tmp_path: Path, home: Path) -> None:
    source = write_parquet(tmp_path / "in" / "data.parquet", frame(300))
    out = tmp_path / "scores"
    run_job(JobSpec(ref=str(classifier_bundle), input=str(source), output=str(out),
                    keep=("id",)), **QUIET)
    part = next(out.glob("part-*.parquet"))
    group = pq.ParquetFile(part).metadata.row_group(0)
    encoded = {group.column(i).path_in_schema for i in range(group.num_columns)
               if any("DICTIONARY" in e for e in group.column(i).encodings)}
    assert encoded == {"prediction", "model", "version", "predicted_at"}
    table = read_output(str(out))
    assert table["id"].to_pylist() == list(range(300))
    assert set(table["model"].to_pylist()) == {modelport.load(str(classifier_bundle)).name}
