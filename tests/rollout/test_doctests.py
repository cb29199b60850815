"""The rollout modules' docstring examples run as tests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "assignment", "spec", "policy", "bandit", "canary", "stats", "telemetry",
           "store", "simulate"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(
        "modelport.rollout" if name == "__init__" else f"modelport.rollout.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
