"""Sources stream fixed-size chunks from files (local, folders, globs) and SQL queries."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from modelport.batch.source import FileSource, Source, SqlSource, open_source
from modelport.errors import ConfigurationError, NotFoundError

from .conftest import frame, write_parquet


def ids(source: Source, rows: int) -> list[tuple[int, list[int]]]:
    return [(i, b.column("id").to_pylist()) for i, b in source.chunks(rows)]


def test_chunks_have_exact_sizes_across_files_and_row_groups(tmp_path: Path) -> None:
    write_parquet(tmp_path / "in" / "a.parquet", frame(25), row_group=7)
    write_parquet(tmp_path / "in" / "b.parquet", frame(20, start=25), row_group=6)
    (tmp_path / "in" / "_SUCCESS").write_text("")
    write_parquet(tmp_path / "in" / ".hidden" / "c.parquet", frame(5, start=99))
    source = FileSource(str(tmp_path / "in"))
    chunks = ids(source, 10)
    assert [i for i, _ in chunks] == [0, 1, 2, 3, 4]
    assert [len(c) for _, c in chunks] == [10, 10, 10, 10, 5]
    assert [i for _, c in chunks for i in c] == list(range(45))
    assert source.total_rows() == 45


def test_csv_and_json_lines_globs(tmp_path: Path) -> None:
    data = frame(30)
    data.iloc[:15].to_csv(tmp_path / "p1.csv", index=False)
    data.iloc[15:].to_csv(tmp_path / "p2.csv", index=False)
    source = open_source(str(tmp_path / "p*.csv"))
    assert [i for _, c in ids(source, 8) for i in c] == list(range(30))
    with (tmp_path / "rows.jsonl").open("w") as fh:
        for rec in data.to_dict("records"):
            fh.write(json.dumps(rec) + "\n")
    source = open_source(str(tmp_path / "*.jsonl"))
    assert source.schema().names == ["id", "f0", "f1", "f2", "f3"]
    assert [i for _, c in ids(source, 8) for i in c] == list(range(30))


def test_fingerprint_follows_the_files(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", frame(5))
    before = FileSource(str(tmp_path / "a.parquet")).fingerprint()
    assert FileSource(str(tmp_path / "a.parquet")).fingerprint() == before
    write_parquet(tmp_path / "a.parquet", frame(6))
    assert FileSource(str(tmp_path / "a.parquet")).fingerprint() != before


def test_clear_errors_for_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no input files"):
        FileSource(str(tmp_path / "nothing*.parquet")).files()
    (tmp_path / "x.csv").write_text("id\n1\n")
    write_parquet(tmp_path / "y.parquet", frame(2))
    with pytest.raises(ConfigurationError, match="mixes formats"):
        FileSource(str(tmp_path)).files()
    with pytest.raises(ConfigurationError, match="--query"):
        open_source("sqlite:///x.db")


def test_sql_query_is_read_in_chunks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'in.db'}"
    frame(23).to_sql("features", sa.create_engine(url), index=False)
    source = open_source(url, query="SELECT * FROM features ORDER BY id")
    assert isinstance(source, SqlSource)
    source.read_rows = 5
    chunks = ids(source, 10)
    assert [len(c) for _, c in chunks] == [10, 10, 3]
    assert source.schema().field("f0").type == pa.float64()
