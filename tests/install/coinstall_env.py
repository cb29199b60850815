"""Helpers of the install tests: a fresh environment with ``modelport[serve]`` and the clients
users install next to it.

The session fixture ``coinstall`` (conftest.py) makes a new virtual environment under the test's
temporary directory and installs, in ONE resolution, a wheel built from this checkout with the
``serve`` and ``lightgbm`` extras plus ``tritonclient[grpc,http]``, ``kserve`` and ``mlflow``:
the set a user switching from Triton, KServe or MLflow ends up with. Nothing is reused from the
project's own environment: the resolver picks every version itself (tritonclient and kserve pin
protobuf 6, so the environment gets protobuf 6 while the project's has protobuf 7).

It uses ``uv`` (the [dev] extra) rather than pip: the same resolution, but packages come from
uv's cache (~/.cache/uv) as hard links, so a fresh environment takes about 8 s once the cache is
warm (20 s cold) where pip takes about 5 minutes on these 2-core machines. The packages still
come from the registry the user's pip would use; the cache only saves the download.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: what users install next to modelport[serve] (the issue's versions: current releases)
CLIENTS = ("tritonclient[grpc,http]==2.73.*", "kserve==0.21.*", "mlflow==3.17.*")
INSTALL_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: pip install -e '.[dev]' installs it")
    return found


def source_copy(dest: Path) -> Path:
    """The files a wheel is built from, without build outputs of the checkout (egg-info,
    compiled extensions, caches), so building it does not write into the working tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build")
    shutil.copytree(ROOT / "src", dest / "src", ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    return dest


@dataclass
class Env:
    """A virtual environment: run its Python and its ``modelport``."""

    path: Path
    home: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def modelport(self) -> str:
        return str(self.path / "bin" / "modelport")

    @property
    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MODELPORT_", "VIRTUAL_ENV", "PYTHON"))}
        env.update(MODELPORT_HOME=str(self.home), OMP_NUM_THREADS="1",
                   MLFLOW_TRACKING_URI=f"file://{self.home / 'mlruns'}",
                   MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        return env

    def run(self, args: Sequence[str], *, timeout: float = 180, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(args), env=self.environ, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd)
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n"
                                 f"{done.stderr}")
        return done

    def script(self, code: str, *args: str, timeout: float = 180) -> Any:
        """Run ``code`` with the environment's Python; it prints one JSON value last."""
        done = self.run([self.python, "-c", code, *args], timeout=timeout)
        return json.loads(done.stdout.strip().splitlines()[-1])


def build(tmp: Path) -> Env:
    """A new virtual environment under ``tmp`` with modelport[serve,lightgbm] and CLIENTS."""
    source = source_copy(tmp / "source")
    venv = tmp / "venv"
    env = Env(venv, tmp / "home")
    subprocess.run([uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True,
                   timeout=120)
    done = subprocess.run(
        [uv(), "pip", "install", "-q", "--python", env.python,
         f"modelport[serve,lightgbm] @ {source.as_uri()}", *CLIENTS],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        pytest.fail(f"modelport[serve] and {CLIENTS} do not install together:\n{done.stderr}")
    return env


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    grpc: str
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def serve(env: Env, log_dir: Path, *args: str) -> Served:
    """``modelport serve ARGS --grpc-port`` from the environment, ready to answer."""
    import httpx

    port, grpc_port = free_port(), free_port()
    log = log_dir / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([env.modelport, "serve", *args, "--port", str(port),
                                 "--grpc-port", str(grpc_port)],
                                env=env.environ, stdout=out, stderr=subprocess.STDOUT)
    served = Served(proc, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(served.url + "/v2/health/ready", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    served.stop()
    raise AssertionError(f"serve not ready in 120 s:\n{log.read_text()}")
