"""``ServeConfig``: defaults, YAML files, flags over files, and mistakes reported by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import ConfigurationError
from modelport.serving.config import ServeConfig


def test_defaults_bind_loopback_and_accelerate() -> None:
    config = ServeConfig()
    assert config.host == "127.0.0.1" and config.port == 8000
    assert config.accelerate == "auto" and config.workers == 1
    options = config.runner_options()
    assert options.accelerate == "auto"
    assert options.max_batch_rows == config.batching.max_batch_rows
    assert options.max_queue_wait_ms == config.limits.max_queue_wait_ms


def test_yaml_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("models: churn@production\nport: 9000\nworkers: 2\n"
                    "limits: {max_rows: 10, request_timeout_s: 2.5}\n"
                    "batching: {max_wait_ms: 1}\n")
    config = ServeConfig.from_file(path)
    assert config.models == ("churn@production",) and config.port == 9000
    assert config.limits.max_rows == 10 and config.batching.max_wait_ms == 1
    changed = config.with_overrides(port=9100, max_rows=None, max_body_bytes=10, host=None)
    assert changed.port == 9100 and changed.limits.max_rows == 10
    assert changed.limits.max_body_bytes == 10 and changed.limits.request_timeout_s == 2.5
    assert changed.host == "127.0.0.1"


@pytest.mark.parametrize(("text", "message"), [
    ("prot: 1\n", "unknown setting(s) ['prot']"),
    ("limits: {max_row: 1}\n", "unknown setting(s) ['max_row'] in limits"),
    ("accelerate: always\n", "accelerate must be one of"),
    ("workers: 0\n", "workers must be at least 1"),
    ("limits: {max_rows: 0}\n", "limits.max_rows must be positive"),
    ("- a\n- b\n", "must be a mapping"),
    ("port: [1\n", "is not YAML"),
])
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        ServeConfig.from_file(path)


def test_missing_file_and_unknown_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        ServeConfig.from_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigurationError, match="unknown serve setting 'colour'"):
        ServeConfig().with_overrides(colour="red")
