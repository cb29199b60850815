"""``Settings.from_env``: embedded defaults under MODELPORT_HOME, env variables, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import ConfigurationError
from modelport.settings import Settings


def test_defaults_live_under_dot_modelport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.home == tmp_path / ".modelport"
    assert s.registry_url == f"sqlite:///{tmp_path / '.modelport' / 'registry.db'}"
    assert s.artifacts == str(tmp_path / ".modelport" / "artifacts")
    assert s.cache_dir == tmp_path / ".modelport" / "cache"
    assert s.storage_options == {}


def test_environment_variables() -> None:
    s = Settings.from_env({
        "MODELPORT_HOME": "/srv/mp",
        "MODELPORT_REGISTRY_URL": "postgresql://mp@db/registry",
        "MODELPORT_ARTIFACTS": "s3://models/prod",
        "MODELPORT_STORAGE_OPTIONS": '{"endpoint_url": "http://127.0.0.1:5555"}',
        "MODELPORT_CACHE_DIR": "/var/cache/mp",
    })
    assert s.home == Path("/srv/mp")
    assert s.registry_url == "postgresql://mp@db/registry"
    assert s.artifacts == "s3://models/prod"
    assert s.storage_options == {"endpoint_url": "http://127.0.0.1:5555"}
    assert s.cache_dir == Path("/var/cache/mp")


def test_overrides_win_and_derived_paths_follow_home() -> None:
    s = Settings.from_env({"MODELPORT_HOME": "/a", "MODELPORT_ARTIFACTS": "/art"}, home="/b",
                          storage_options={"anon": True})
    assert s.registry_url == "sqlite:////b/registry.db"
    assert s.artifacts == "/art"
    assert s.storage_options == {"anon": True}


@pytest.mark.parametrize("value", ["{not json", "[1, 2]"])
def test_bad_storage_options_are_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="MODELPORT_STORAGE_OPTIONS"):
        Settings.from_env({"MODELPORT_STORAGE_OPTIONS": value})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.from_env({}, registry="x")


def test_settings_are_frozen() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings.from_env({}).home = Path("/x")  # type: ignore[misc]
