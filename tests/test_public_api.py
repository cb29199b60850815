"""The public API is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import doctest
import importlib

import pytest

import modelport


def test_exported_members() -> None:
    assert sorted(modelport.__all__) == [
        "Batch", "ColumnSpec", "Model", "ModelportError", "Registry", "Result", "Signature",
        "__version__", "feedback", "load", "save",
    ]
    for name in modelport.__all__:
        assert getattr(modelport, name) is not None


def test_error_tree_has_one_root() -> None:
    from modelport import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.ModelportError)
        assert name in (errors.__doc__ or "") or name == "ModelportError"


@pytest.mark.parametrize("module", [
    "modelport", "modelport.bundle.signature", "modelport.testing", "modelport.stream.codec",
    "modelport.stream.fastcodec", "modelport.monitor.drift", "modelport.monitor.rules",
    "modelport.monitor.concept", "modelport.durations", "modelport.logformat", "modelport.extras",
])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
