"""Small surprises a real user met (issue 11, item 11), each pinned by a test."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelport
from modelport.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("MODELPORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def churn(tmp_path: Path, cancer_pipeline: Any,
          cancer_frame: tuple[pd.DataFrame, pd.Series]) -> tuple[Path, Path]:
    x, _ = cancer_frame
    bundle = modelport.save(cancer_pipeline, tmp_path / "churn", example=x.head(20))
    rows = x.head(8).copy()
    rows.insert(0, "customer_id", range(8))
    rows.to_parquet(tmp_path / "rows.parquet")
    return bundle, tmp_path / "rows.parquet"


def out(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_batch_schedule_refuses_a_model_that_does_not_exist_and_once_says_the_next_slot(
    tmp_path: Path, modelport_home: Path, churn: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle, rows = churn
    job = ["--cron", "0 * * * *", "--input", str(rows), "--output", str(tmp_path / "scores")]
    assert main(["models", "register", str(bundle)]) == 0
    assert main(["batch", "schedule", "ghost", *job]) == 4
    _, err = out(capsys)
    assert err.startswith("error: cannot schedule ghost:") and err.count("\n") == 1
    assert main(["batch", "schedule", "churn@production", *job]) == 4  # no such alias yet
    assert "production" in out(capsys)[1]
    assert main(["batch", "jobs", "--json"]) == 0
    assert json.loads(out(capsys)[0]) == []

    assert main(["batch", "schedule", "churn", "--name", "hourly", *job]) == 0
    out(capsys)
    assert main(["scheduler", "--once"]) == 0
    text, _ = out(capsys)
    assert "nothing due" in text
    slot = re.search(r"next slot: hourly at (\S+)", text)
    assert slot is not None, text
    when = datetime.fromisoformat(slot.group(1))
    assert when.tzinfo is not None and when.minute == 0 and when > datetime.now(when.tzinfo)


def test_batch_history_prints_aware_times_like_batch_jobs(
    tmp_path: Path, modelport_home: Path, churn: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle, rows = churn
    assert main(["batch", "schedule", str(bundle), "--name", "nightly", "--cron", "0 2 * * *",
                 "--input", str(rows), "--output", str(tmp_path / "scores")]) == 0
    with sqlite3.connect(modelport_home / "registry.db") as db:  # the slot is due now
        db.execute("UPDATE modelport_batch_jobs SET next_slot = '2026-01-01 02:00:00.000000'")
    assert main(["scheduler", "--once", "--json"]) == 0
    out(capsys)
    assert main(["batch", "history", "--json"]) == 0
    (entry,) = json.loads(out(capsys)[0])
    assert main(["batch", "jobs", "--json"]) == 0
    (job,) = json.loads(out(capsys)[0])
    for value in (entry["slot"], entry["started_at"], entry["finished_at"], job["next_slot"]):
        assert value.endswith("+00:00"), value
    assert main(["batch", "history"]) == 0
    assert "+00:00" in out(capsys)[0]


def test_models_tag_is_all_or_nothing(
    modelport_home: Path, churn: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "register", str(churn[0])]) == 0
    assert main(["models", "tag", "churn:1", "team=risk"]) == 0
    assert main(["models", "tag", "churn:1", "stage=prod", "missing"]) == 4  # no tag 'missing'
    assert main(["models", "tag", "churn:1", "stage=prod", "bad key!=x"]) == 3
    assert main(["models", "tag", "churn:1", "stage=prod", "=x"]) == 3
    out(capsys)
    assert main(["models", "show", "churn:1", "--json"]) == 0
    assert json.loads(out(capsys)[0])["tags"] == {"team": "risk"}
    assert main(["models", "tag", "churn:1", "stage=prod", "team"]) == 0
    out(capsys)
    assert main(["models", "show", "churn:1", "--json"]) == 0
    assert json.loads(out(capsys)[0])["tags"] == {"stage": "prod"}


def test_registering_an_identical_bundle_says_so_and_if_changed_returns_the_version(
    tmp_path: Path, modelport_home: Path, churn: tuple[Path, Path],
    cancer_frame: tuple[pd.DataFrame, pd.Series], capsys: pytest.CaptureFixture[str],
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bundle, _ = churn
    assert main(["models", "register", str(bundle)]) == 0
    assert out(capsys)[0].strip() == "registered churn version 1"
    assert main(["models", "register", str(bundle)]) == 0
    assert "registered churn version 2 (identical to version 1;" in out(capsys)[0]
    assert main(["models", "register", str(bundle), "--if-changed", "--json"]) == 0
    answer = json.loads(out(capsys)[0])
    assert (answer["version"], answer["registered"]) == (2, False)
    assert main(["models", "list", "churn", "--json"]) == 0
    assert [v["version"] for v in json.loads(out(capsys)[0])] == [1, 2]
    # a changed bundle is registered, --if-changed or not
    x, y = cancer_frame
    # (scaled: lbfgs on the raw features misses 2000 iterations on some CPUs)
    changed = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(x, y)
    modelport.save(changed, bundle, name="churn",
                   example=x.head(20), overwrite=True)
    assert main(["models", "register", str(bundle), "--if-changed"]) == 0
    assert out(capsys)[0].strip() == "registered churn version 3"
    # declaring a column nullable changes the registered manifest: not identical
    assert main(["models", "register", str(bundle), "--if-changed", "--nullable",
                 "mean radius"]) == 0
    assert out(capsys)[0].strip() == "registered churn version 4"


def test_read_only_commands_create_nothing_and_say_where_they_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for var in ("MODELPORT_HOME", "MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    where = str(tmp_path / ".modelport" / "registry.db")
    assert main(["models", "list"]) == 0
    text, _ = out(capsys)
    assert text.startswith("(none): no registry at ") and where in text
    assert main(["models", "list", "--json"]) == 0
    assert json.loads(out(capsys)[0]) == []
    for argv in (["batch", "jobs"], ["batch", "history"]):
        assert main(argv) == 0
        text, _ = out(capsys)
        assert text.startswith("(none): no registry at ") and where in text
    for argv in (["models", "show", "churn"], ["models", "list", "churn"],
                 ["models", "audit"], ["alias", "list", "churn"], ["serve", "churn"],
                 ["predict", "churn", "--input", str(tmp_path / "x.csv")]):
        (tmp_path / "x.csv").write_text("a\n1\n")
        assert main(argv) == 4, argv
        _, err = out(capsys)
        assert err.startswith("error: ") and where in err and err.count("\n") == 1, (argv, err)
    assert main(["serve"]) == 2  # nothing to serve: a configuration mistake, as when empty
    _, err = out(capsys)
    assert "registry is empty" in err and where in err
    assert not (tmp_path / ".modelport").exists()
    # an existing but empty registry says so too
    home = tmp_path / "team"
    monkeypatch.setenv("MODELPORT_HOME", str(home))
    modelport.Registry().list_models()  # creates it
    assert main(["models", "list"]) == 0
    text, _ = out(capsys)
    assert text.startswith("(none): no models registered in ") and "team" in text


@pytest.fixture
def pg_schema() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"mps_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}_scores"'))
    engine.dispose()


def test_postgresql_bookkeeping_tables_go_to_the_state_schema(
    tmp_path: Path, modelport_home: Path, churn: tuple[Path, Path], pg_schema: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sqlalchemy as sa

    bundle, rows = churn
    table = f"{pg_schema}_scores"
    assert main(["batch", "run", str(bundle), "--input", str(rows), "--output", PG_URL,
                 "--table", table, "--key", "customer_id", "--state-schema", pg_schema,
                 "--no-progress", "--json"]) == 0
    run_id = json.loads(out(capsys)[0])["run_id"]
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert set(inspector.get_table_names(schema=pg_schema)) == {
                "modelport_batch_runs", "modelport_batch_chunks"}
            assert conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar() == 8
            runs = conn.execute(sa.text(
                f'SELECT run_id FROM "{pg_schema}".modelport_batch_runs')).scalars().all()
            assert runs == [run_id]
            if inspector.has_table("modelport_batch_runs"):  # other runs' default schema
                assert conn.execute(sa.text(
                    "SELECT count(*) FROM modelport_batch_runs WHERE run_id = :r"),
                    {"r": run_id}).scalar() == 0
    finally:
        engine.dispose()
    # the same run again is a no-op: its record was found in the state schema
    assert main(["batch", "run", str(bundle), "--input", str(rows), "--output", PG_URL,
                 "--table", table, "--key", "customer_id", "--state-schema", pg_schema,
                 "--no-progress"]) == 0
    assert "nothing to do" in out(capsys)[0]


def _serve_log(home: Path, *args: str) -> str:
    """Start ``modelport -v serve`` on a free port, stop it once ready, return its stderr."""
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    env.pop("MODELPORT_LOG_FORMAT", None)
    proc = subprocess.Popen([sys.executable, "-m", "modelport.cli.main", "-v", "serve", "churn",
                             "--port", "0", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 90
    for line in proc.stderr:
        lines.append(line)
        if ("serving churn" in line and "http://" in line) or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    return "".join(lines) + rest


def test_serve_and_stream_share_one_log_format_flag(
    tmp_path: Path, modelport_home: Path, churn: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelport.cli.main import build_parser

    assert main(["models", "register", str(churn[0])]) == 0
    parser = build_parser()
    for argv in (["serve"], ["stream", "run", "x", "--source", "a", "--sink", "b"]):
        assert parser.parse_args(argv).log_format is None  # one default: MODELPORT_LOG_FORMAT
        assert parser.parse_args([*argv, "--log-format", "json"]).log_format == "json"
    plain = _serve_log(modelport_home)
    assert re.search(r"^\d{4}-\d\d-\d\d \S+ INFO modelport\.serving: serving churn", plain,
                     re.M), plain
    assert not any(line.startswith("{") for line in plain.splitlines())
    structured = _serve_log(modelport_home, "--log-format", "json")
    entries = [json.loads(line) for line in structured.splitlines() if line.startswith("{")]
    started = [e for e in entries if e["message"].startswith("serving churn")]
    assert started and started[0]["level"] == "info" and started[0]["logger"] == \
        "modelport.serving"
    with pytest.raises(SystemExit) as bad:
        main(["serve", "churn", "--log-format", "xml"])
    assert bad.value.code == 2 and "plain" in capsys.readouterr().err


def test_stream_key_and_keep_are_the_batch_names_and_old_names_still_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelport.cli.main import build_parser
    from modelport.cli.stream import key_and_keep

    parser = build_parser()
    base = ["stream", "run", "m", "--source", "kafka://h:1/a", "--sink", "postgresql://h/db"]
    new = parser.parse_args([*base, "--key", "customer", "--keep", "region,segment"])
    assert key_and_keep(new) == (("customer",), ("customer", "region", "segment"))
    assert capsys.readouterr().err == ""
    old = parser.parse_args([*base, "--key-columns", "customer", "--passthrough",
                             "region,segment"])
    assert key_and_keep(old) == key_and_keep(new)
    err = capsys.readouterr().err
    assert "--key-columns is deprecated; use --key" in err
    assert "--passthrough is deprecated; use --keep" in err
    batch = parser.parse_args(["batch", "run", "m", "-i", "a", "-o", "b", "--key", "customer",
                               "--keep", "region,segment"])
    from modelport.cli.batch import _columns

    assert _columns(batch.key) == ("customer",)
    assert _columns([*batch.key, *batch.keep]) == ("customer", "region", "segment")


def test_the_readme_links_architecture_notes_that_are_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme
    assert "(docs/ARCHITECTURE.md)" in readme
    notes = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for module in re.findall(r"`(modelport(?:\.\w+)+)`", notes):
        if module.endswith(".yaml"):
            continue
        path = ROOT / "src" / Path(*module.split("."))
        assert path.with_suffix(".py").exists() or path.is_dir(), module
