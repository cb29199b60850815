"""InferenceService over a real embedded registry: load once, hot reload, failed reloads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.core.events import PredictionEvent
from modelport.core.service import InferenceService
from modelport.errors import NotFoundError
from modelport.registry import Registry


@pytest.fixture
def registry(modelport_home: Path) -> Registry:
    return Registry()


def _register(registry: Registry, tmp: Path, model: Any, x: np.ndarray, tag: str) -> int:
    path = modelport.save(model, tmp / f"bundle-{tag}", name="iris", example=x[:5])
    return registry.register(path).version


@pytest.fixture
def two_versions(registry: Registry, tmp_path: Path,
                 iris_arrays: tuple[np.ndarray, np.ndarray]) -> tuple[Any, Any]:
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = iris_arrays
    v1 = LogisticRegression(max_iter=500).fit(x, y)
    v2 = DummyClassifier(strategy="constant", constant=2).fit(x, y)
    assert _register(registry, tmp_path, v1, x, "1") == 1
    assert _register(registry, tmp_path, v2, x, "2") == 2
    registry.set_alias("iris", "production", 1)
    return v1, v2


def test_each_version_is_loaded_once_even_under_concurrent_first_use(
    registry: Registry, two_versions: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    original = registry.load

    def counting_load(ref: Any, **kw: Any) -> Any:
        loads.append(str(ref))
        return original(ref, **kw)

    monkeypatch.setattr(registry, "load", counting_load)
    service = InferenceService(registry)
    runners: list[Any] = []
    threads = [threading.Thread(target=lambda: runners.append(service.runner("iris@production")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["iris:1"]
    assert len({id(r) for r in runners}) == 1
    assert service.runner("iris:1") is runners[0]  # same version, same runner
    service.close()


def test_predict_by_reference_and_events(registry: Registry, two_versions: tuple[Any, Any],
                                         iris_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    v1, _ = two_versions
    x, _ = iris_arrays
    service = InferenceService(registry)
    events: list[PredictionEvent] = []
    service.events.subscribe(events.append)
    result = service.predict("iris@production", x[:10], source="cli")
    assert result.labels is not None
    assert result.labels.tolist() == v1.predict(x[:10]).tolist()
    assert service.events.flush()
    assert [(e.model, e.version, e.n_rows, e.source) for e in events] == [("iris", 1, 10, "cli")]
    service.close()


def test_refresh_moves_an_alias_without_touching_pinned_references(
    registry: Registry, two_versions: tuple[Any, Any], iris_arrays: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = iris_arrays
    service = InferenceService(registry)
    service.runner("iris@production")
    service.runner("iris:1")
    assert service.refresh(force=True) == []
    registry.set_alias("iris", "production", 2)
    changes = service.refresh()
    assert [(c.ref, c.old_version, c.new_version, c.ok) for c in changes] == [
        ("iris@production", 1, 2, True)]
    assert service.runner("iris@production").version == 2
    assert service.predict("iris@production", x[:3]).labels.tolist() == [2, 2, 2]  # type: ignore[union-attr]
    assert service.runner("iris:1").version == 1
    assert service.refresh() == []  # nothing changed since: the state token is the same
    service.close()


def test_failed_reload_keeps_the_old_version_serving(
    registry: Registry, two_versions: tuple[Any, Any], iris_arrays: tuple[np.ndarray, np.ndarray]
) -> None:
    v1, _ = two_versions
    x, _ = iris_arrays
    service = InferenceService(registry)
    service.runner("iris@production")
    # corrupt version 2 where the registry keeps it, then move the alias to it
    artifact_dir = Path(registry.resolve("iris:2").artifact_uri.removeprefix("file://"))
    target = next(p for p in artifact_dir.rglob("model.skops"))
    target.write_bytes(target.read_bytes()[:-10])
    registry.set_alias("iris", "production", 2)
    changes = service.refresh()
    assert len(changes) == 1 and not changes[0].ok
    assert "SHA-256" in (changes[0].error or "") or "incomplete" in (changes[0].error or "")
    assert service.runner("iris@production").version == 1
    assert service.predict("iris@production", x[:5]).labels.tolist() == v1.predict(  # type: ignore[union-attr]
        x[:5]).tolist()
    assert service.failures == changes
    service.close()


def test_unknown_reference_is_not_found(registry: Registry) -> None:
    service = InferenceService(registry)
    with pytest.raises(NotFoundError):
        service.runner("ghost@production")
    service.close()
