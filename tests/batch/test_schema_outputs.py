"""Batch outputs in the one prediction schema: a real CSV file, row-level rejects of text cells,
the reject-rate rule and the extra-column policy, as a user runs them (real processes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq

from .conftest import FEATURES, frame, write_parquet
from .test_cli import cli

SCHEMA = ["id", "prediction_id", "prediction", "probability_0", "probability_1", "model",
          "version", "predicted_at"]


def write_csv(path: Path, n: int, bad: dict[int, str] | None = None) -> None:
    data = frame(n)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", *FEATURES])
        for i, row in enumerate(data.itertuples(index=False)):
            cells = [str(v) for v in row]
            if bad and i in bad:
                cells[2] = bad[i]  # f1
            out.writerow(cells)


def test_csv_output_is_one_file_replaced_atomically_and_csv_cells_reject_one_row(
        classifier_bundle: Path, tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv", 20, bad={17: "abc"})
    out = tmp_path / "scores.csv"
    done = cli("batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.csv"),
               "--output", str(out), "--keep", "id", "--json", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rows_in"], summary["rows_out"], summary["rejected"]) == (20, 19, 1)
    assert summary["first_reject_reason"].startswith("row 17: column 'f1': 'abc'")
    assert out.is_file() and not out.is_symlink()  # a file, not a dataset behind a link
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == SCHEMA and len(rows) == 19
    assert [r["id"] for r in rows] == [str(i) for i in range(20) if i != 17]
    assert rows[0]["prediction_id"] == f"{summary['run_id']}-0"
    assert rows[-1]["prediction_id"] == f"{summary['run_id']}-19"
    rejects = pq.read_table(summary["rejects"]).to_pylist()
    assert [(r["row"], r["column"], r["value"]) for r in rejects] == [(17, "f1", "abc")]

    write_csv(tmp_path / "in.csv", 5)  # a new run replaces the file whole
    again = cli("batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.csv"),
                "--output", str(out), "--keep", "id", "--json", home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    with out.open() as fh:
        assert len(list(csv.DictReader(fh))) == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".scores.csv.")
            and p.name.endswith(".tmp")] == []


def test_a_run_where_every_row_is_rejected_fails_and_publishes_nothing(
        classifier_bundle: Path, tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv", 4, bad={0: "x", 1: "y", 2: "z", 3: "w"})
    out = tmp_path / "scores.csv"
    done = cli("batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.csv"),
               "--output", str(out), home=tmp_path / "home")
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: all 4 rows failed") and "'x'" in done.stderr
    assert not out.exists()
    over = cli("batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.csv"),
               "--output", str(tmp_path / "o"), "--max-reject-rate", "0.5",
               home=tmp_path / "home")
    assert over.returncode == 3 and "--max-reject-rate 0.5" in over.stderr


def test_extra_columns_ignore_by_default_passthrough_or_refuse(
        classifier_bundle: Path, tmp_path: Path) -> None:
    data = frame(6)
    data["segment"] = ["a", "b"] * 3
    write_parquet(tmp_path / "in.parquet", data)
    common = ["batch", "run", str(classifier_bundle), "--input", str(tmp_path / "in.parquet")]
    ignored = cli(*common, "--output", str(tmp_path / "a"), home=tmp_path / "home")
    assert ignored.returncode == 0, ignored.stderr
    assert "segment" not in pq.read_table(tmp_path / "a").column_names
    passed = cli(*common, "--output", str(tmp_path / "b"), "--extra-columns", "passthrough",
                 home=tmp_path / "home")
    assert passed.returncode == 0, passed.stderr
    table = pq.read_table(tmp_path / "b")
    assert table.column_names[:3] == ["id", "segment", "prediction_id"]
    assert table["segment"].to_pylist() == data["segment"].tolist()
    refused = cli(*common, "--output", str(tmp_path / "c"), "--extra-columns", "refuse",
                  home=tmp_path / "home")
    assert refused.returncode == 2 and "column 'id'" in refused.stderr
    bad_suffix = cli(*common, "--output", str(tmp_path / "x.jsonl"), home=tmp_path / "home")
    assert bad_suffix.returncode == 2 and ".csv file" in bad_suffix.stderr
