"""Errors a user can act on: one ``error:`` line (or one JSON object with ``--json``), the right
exit code, the CLI command to run, and nothing done before the mistake is found."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelport
from modelport.cli.main import main
from modelport.errors import ConflictError, InvalidReferenceError
from modelport.extras import SCHEMES

ROOT = Path(__file__).resolve().parents[2]


def start_cli(*args: str, home: Path, block: str | None = None) -> subprocess.Popen[str]:
    """``modelport ARGS`` in a process; ``block`` makes that module unimportable there, as on a
    machine without the extra that installs it."""
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS"):
        env.pop(var, None)
    code = ("import sys\n"
            + (f"sys.modules[{block!r}] = None\n" if block else "")
            + "from modelport.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli(*args: str, home: Path, block: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    return finish(start_cli(*args, home=home, block=block))


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def churn(tmp_path: Path, cancer_pipeline: Any,
          cancer_frame: tuple[pd.DataFrame, pd.Series]) -> tuple[Path, Path]:
    """A bundle and a CSV of five input rows."""
    x, _ = cancer_frame
    bundle = modelport.save(cancer_pipeline, tmp_path / "churn", example=x.head(20))
    x.head(5).to_csv(tmp_path / "x.csv", index=False)
    return bundle, tmp_path / "x.csv"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_predict_output_into_a_missing_or_unwritable_place_fails_before_any_work(
    tmp_path: Path, modelport_home: Path, churn: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle, rows = churn
    for target, fragment in ((tmp_path / "no" / "such" / "y.csv", "does not exist"),
                             (rows / "y.csv", "is a file, not a folder"),
                             (Path("/proc/y.csv"), "cannot write")):
        assert main(["predict", str(bundle), "-i", str(rows), "-o", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
        assert "--output" in err and not target.exists()
    assert main(["predict", str(bundle), "-i", str(rows), "-o", str(tmp_path / "y.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "y.csv")) == 5
    capsys.readouterr()
    # batch outputs are folders (created with their parents) or files: checked the same way
    for target, fragment in ((Path("/proc/scores"), "cannot write"),
                             (rows / "scores", "is a file, not a folder")):
        assert main(["batch", "run", str(bundle), "-i", str(rows), "-o", str(target),
                     "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err and "--output" in err, err
    assert main(["batch", "run", str(bundle), "-i", str(rows), "-o",
                 str(tmp_path / "new" / "scores"), "--no-progress"]) == 0


@pytest.mark.parametrize(("module", "output", "extra"), [
    ("redis", "redis://127.0.0.1:6379/0", "redis"),
    ("s3fs", "s3://bucket/scores/", "s3"),
    ("psycopg", "postgresql://postgres@127.0.0.1/test", "postgres"),
    ("pymysql", "mysql://root@127.0.0.1/test", "mysql"),
])
def test_batch_to_a_url_without_its_driver_names_the_extra(
    tmp_path: Path, churn: tuple[Path, Path], module: str, output: str, extra: str,
) -> None:
    bundle, rows = churn
    table = ["--table", "mp_never"] if "sql" in output else []
    plain = start_cli("batch", "run", str(bundle), "-i", str(rows), "-o", output, *table,
                      "--no-progress", home=tmp_path / "home", block=module)
    # with --json the same error is one JSON object
    as_json = start_cli("--json", "batch", "run", str(bundle), "-i", str(rows), "-o", output,
                        *table, home=tmp_path / "home", block=module)
    done = finish(plain)
    assert done.returncode == 2, done.stderr
    line = one_error(done)
    assert f"pip install 'modelport[{extra}]'" in line and "--output" in line
    done = finish(as_json)
    error = json.loads(done.stderr)
    assert error["exit"] == done.returncode == 2 and error["code"] == "configuration"
    assert f"modelport[{extra}]" in error["error"]


def test_readme_lists_the_extra_of_every_url_scheme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Extras per URL scheme"):]
    for scheme, (_, extra) in SCHEMES.items():
        assert re.search(rf"`{scheme}://[^`]*`.*`modelport\[{extra}\]`", section), scheme


def test_errors_are_json_objects_with_json(
    modelport_home: Path, churn: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "register", str(churn[0])]) == 0
    capsys.readouterr()
    assert main(["--json", "models", "show", "ghost"]) == 4
    error = json.loads(capsys.readouterr().err)
    assert error == {"error": error["error"], "code": "not_found", "exit": 4}
    assert "ghost" in error["error"]
    with pytest.raises(SystemExit) as stop:
        main(["models", "show", "--json"])  # a usage mistake, --json anywhere
    assert stop.value.code == 2
    error = json.loads(capsys.readouterr().err)
    assert error["code"] == "usage" and error["exit"] == 2


def test_messages_name_cli_commands_not_python_calls(
    tmp_path: Path, modelport_home: Path, churn: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle, _ = churn
    assert main(["models", "register", str(bundle)]) == 0
    assert main(["models", "list", "ghost"]) == 4
    err = capsys.readouterr().err
    assert "'modelport models list'" in err and "Registry." not in err
    with modelport.Registry() as registry, pytest.raises(InvalidReferenceError) as alias:
        registry.set_alias("churn", "production")
    assert "modelport alias set churn production VERSION" in str(alias.value)
    with pytest.raises(ConflictError) as exists:
        modelport.save(object(), bundle)
    assert "--overwrite" in str(exists.value)


def test_an_unreachable_kafka_broker_is_one_error_and_librdkafka_speaks_only_with_v(
    tmp_path: Path, churn: tuple[Path, Path],
) -> None:
    bundle, _ = churn
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"kafka://127.0.0.1:{port}"
    args = ["stream", "run", str(bundle), "--source", f"{url}/events", "--sink", f"{url}/out"]
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "home")}
    quiet = subprocess.Popen([sys.executable, "-m", "modelport.cli.main", *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    loud = subprocess.Popen([sys.executable, "-m", "modelport.cli.main", "-v", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, quiet_err = quiet.communicate(timeout=120)
    _, loud_err = loud.communicate(timeout=120)
    assert quiet.returncode == 2, quiet_err
    lines = quiet_err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Kafka"), quiet_err
    assert "KafkaError{" not in lines[0]
    assert loud.returncode == 2
    assert sum("Connection refused" in line for line in loud_err.splitlines()) > 1, loud_err


def test_ports_in_use_and_bad_hosts_fail_alike_before_loading(
    tmp_path: Path, churn: tuple[Path, Path], busy_port: int
) -> None:
    bundle, _ = churn
    home = tmp_path / "home"
    from modelport.settings import Settings

    with modelport.Registry(settings=Settings.from_env({"MODELPORT_HOME": str(home)})) as reg:
        reg.register(bundle)
    started = [start_cli(*args, home=home) for args in (
        ("serve", "churn", "--port", str(busy_port)),
        ("serve", "churn", "--port", "0", "--grpc-port", str(busy_port)),
        ("serve", "churn", "--port", "0", "--workers", "2", "--grpc-port", str(busy_port)),
        ("serve", "churn", "--host", "0.0.0.0.1"),  # (not loopback either)
    )]
    http, grpc, many, host = (finish(proc) for proc in started)
    assert http.returncode == grpc.returncode == 2, (http.stderr, grpc.stderr)
    assert "choose another --port" in one_error(http)
    line = one_error(grpc)
    assert "choose another --grpc-port" in line and str(busy_port) in line
    assert many.returncode == 2 and "--grpc-port" in one_error(many)
    assert host.returncode == 2
    line = one_error(host)
    assert "invalid --host '0.0.0.0.1'" in line and "--port" not in line


def test_quickstart_checks_its_port_before_registering_anything(
    tmp_path: Path, busy_port: int
) -> None:
    home = tmp_path / "home"
    started = time.monotonic()
    done = run_cli("quickstart", "--port", str(busy_port), home=home)
    assert done.returncode == 2
    assert "choose another --port" in one_error(done)
    assert not home.exists()  # nothing trained, saved or registered
    assert time.monotonic() - started < 60


#: advice a CLI user cannot follow without Python, unless the message names the CLI way too
_PYTHON_ADVICE = re.compile(r"\b(set_alias|list_models|register|set_tag|delete_alias)\(|"
                            r"\bRegistry\.|\b(overwrite|trusted|nullable)=")


def test_no_error_message_sends_a_cli_user_to_python() -> None:
    import ast

    offenders = []
    for path in sorted((ROOT / "src" / "modelport").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            text = "".join(sub.value for arg in node.exc.args for sub in ast.walk(arg)
                           if isinstance(sub, ast.Constant) and isinstance(sub.value, str))
            if _PYTHON_ADVICE.search(text) and "--" not in text and "'modelport " not in text:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:100]}")
    assert offenders == []
