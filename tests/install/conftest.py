"""The install tests' fixtures; the helpers are in coinstall_env.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from coinstall_env import Env, build


@pytest.fixture(scope="session")
def coinstall(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """modelport[serve] + tritonclient[grpc,http] + kserve + mlflow, in one new environment."""
    return build(tmp_path_factory.mktemp("coinstall"))
