"""Export fixtures: one registry with real models, a real ``modelport serve`` to compare with,
and onnxruntime-web fetched once (npm) into pytest's cache.

The classifier is registered twice, so the version every target must carry is 2, not the 1 a
fresh registry would give.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the test modules import export_helpers

from export_helpers import MODEL, VERSION, Setup, free_port  # noqa: E402


@pytest.fixture(scope="session")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A registry holding churn:1 and churn:2 (a breast-cancer pipeline, 100 example rows)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import modelport

    root = tmp_path_factory.mktemp("export")
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    bundle = root / "bundle"
    modelport.save(pipe, bundle, name=MODEL, example=x.head(100))
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELPORT_HOME", str(home))
        for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS",
                    "MODELPORT_STORAGE_OPTIONS"):
            mp.delenv(var, raising=False)
        from modelport.registry import Registry

        with Registry() as registry:
            registry.register(bundle)
            assert registry.register(bundle).version == VERSION
        yield Setup(home, x, bundle)


@pytest.fixture(scope="session")
def mixed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline over a string column and integer / float columns, with string labels."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import modelport

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], 400),
                      "tenure": rng.integers(0, 60, 400), "spend": rng.normal(50, 10, 400)})
    y = np.where((x.plan == "basic") & (x.tenure < 12), "yes", "no")
    columns = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                 ("num", StandardScaler(), ["tenure", "spend"])])
    pipe = make_pipeline(columns, LogisticRegression()).fit(x, y)
    root = tmp_path_factory.mktemp("mixed")
    bundle: Path = modelport.save(pipe, root / "bundle", name="mixed", example=x.head(40))
    (root / "rows.json").write_text(x.iloc[100:200].to_json(orient="records"))
    return bundle


@pytest.fixture
def cli_env(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Setup:
    """The registry of ``setup`` for in-process CLI calls."""
    monkeypatch.setenv("MODELPORT_HOME", str(setup.home))
    for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS", "MODELPORT_STORAGE_OPTIONS"):
        monkeypatch.delenv(var, raising=False)
    return setup


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/predict/{MODEL}", json=rows, timeout=30)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture(scope="session")
def served(setup: Setup) -> Iterator[Served]:
    """``modelport serve churn:2`` on a free loopback port (stopped by PID)."""
    yield from start_server([sys.executable, "-m", "modelport.cli.main", "serve",
                             f"{MODEL}:{VERSION}", "--port", "{port}", "--poll-interval", "0"],
                            setup.env)


def start_server(command: list[str], env: dict[str, str], *, ready_path: str = "/v2/health/ready",
                 timeout: float = 60.0) -> Iterator[Served]:
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in command]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"server exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(url + ready_path, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready within {timeout} s")
            time.sleep(0.2)
        yield Served(url, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture(scope="session")
def ortweb_tarball(request: pytest.FixtureRequest) -> Path:
    """onnxruntime-web's npm tarball, fetched with npm once and kept in pytest's cache."""
    import shutil

    from modelport.export.ortweb import PACKAGE
    from modelport.export.ortweb import VERSION as ORT_VERSION

    folder = Path(request.config.cache.mkdir("onnxruntime-web"))
    tarball = folder / f"{PACKAGE}-{ORT_VERSION}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        assert npm is not None, "the web export tests need npm (CI installs it: .ci/run)"
        subprocess.run([npm, "pack", f"{PACKAGE}@{ORT_VERSION}", "--silent",
                        "--pack-destination", str(folder)], check=True, timeout=600,
                       capture_output=True)
    assert tarball.is_file()
    return tarball
