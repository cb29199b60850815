"""The registry contract, run over every store: sqlite/postgresql metadata x local/S3 artifacts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.bundle.hashing import MANIFEST_NAME
from modelport.errors import (
    ConflictError,
    IntegrityError,
    InvalidReferenceError,
    NotFoundError,
)
from modelport.flavors.sklearn import SklearnFlavor
from modelport.registry import ModelVersion

from .conftest import Store


@pytest.fixture
def flavor_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every directory the sklearn flavor is asked to deserialize, in order."""
    calls: list[Path] = []
    original = SklearnFlavor.load

    def spy(self: SklearnFlavor, directory: Path, *args: Any, **kwargs: Any) -> Any:
        calls.append(directory)
        return original(self, directory, *args, **kwargs)

    monkeypatch.setattr(SklearnFlavor, "load", spy)
    return calls


def test_register_numbers_versions_from_one(store: Store, iris_bundle: Path) -> None:
    reg = store.registry()
    versions = [reg.register(iris_bundle).version for _ in range(3)]
    assert versions == [1, 2, 3]
    assert [mv.ref for mv in reg.list_versions("iris")] == ["iris:1", "iris:2", "iris:3"]
    assert reg.resolve("iris").version == 3
    assert reg.resolve("iris:2").version == 2
    info = reg.get_model("iris")
    assert (info.latest_version, info.version_count) == (3, 3)
    assert [m.name for m in reg.list_models()] == ["iris"]


def test_register_under_another_name_renames_the_manifest(store: Store, iris_bundle: Path,
                                                          iris_rows: Any) -> None:
    reg = store.registry()
    mv = reg.register(iris_bundle, "churn", tags={"team": "growth"})
    assert mv.ref == "churn:1" and mv.manifest["name"] == "churn"
    assert mv.tags == {"team": "growth"}
    model = reg.load("churn:1")
    assert model.name == "churn" and model.version == 1
    assert model.predict(iris_rows).shape == (5,)


def test_versions_are_immutable(store: Store, iris_bundle: Path) -> None:
    reg = store.registry()
    first = reg.register(iris_bundle)
    reg.register(iris_bundle)
    again = reg.resolve("iris:1")
    assert (again.artifact_uri, again.files, again.manifest) == (
        first.artifact_uri, first.files, first.manifest)
    assert reg.resolve("iris:2").artifact_uri != first.artifact_uri
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.version = 5  # type: ignore[misc]
    assert set(first.files) == {"model.skops", "example.parquet", "accelerated.onnx",
                                "accelerated-check.npz", MANIFEST_NAME}


def test_register_at_an_explicit_version(store: Store, iris_bundle: Path) -> None:
    """A bundle can keep the number it has elsewhere; a number already taken is refused, and
    the refused upload is removed."""
    reg = store.registry()
    mv = reg.register(iris_bundle, version=5)
    assert mv.ref == "iris:5" and reg.load("iris:5").version == 5
    assert reg.resolve("iris").version == 5
    with pytest.raises(ConflictError, match=r"already has version 5.*immutable.*next number \(6\)"):
        reg.register(iris_bundle, version=5)
    assert reg.resolve("iris:5").artifact_uri == mv.artifact_uri  # untouched
    assert len(store.prefixes("iris")) == 1  # the refused registration left no upload
    assert reg.register(iris_bundle).version == 6  # numbering continues above the highest
    assert reg.register(iris_bundle, version=2).version == 2  # a free number below is fine
    assert reg.register(iris_bundle).version == 7
    assert [v.version for v in reg.list_versions("iris")] == [2, 5, 6, 7]
    assert [e.version for e in reg.audit("iris") if e.action == "register"] == [7, 2, 6, 5]
    for bad in (0, -1, 2**31, True):
        with pytest.raises(InvalidReferenceError, match="positive integer"):
            reg.register(iris_bundle, version=bad)
    assert len(reg.list_versions("iris")) == 4


def test_aliases_set_move_delete(store: Store, iris_bundle: Path) -> None:
    reg = store.registry()
    for _ in range(3):
        reg.register(iris_bundle)
    assert reg.set_alias("iris", "production", 1).version == 1
    reg.set_alias("iris", "staging", 3)
    assert reg.resolve("iris@production").version == 1
    assert reg.resolve("iris:1").aliases == ("production",)
    reg.set_alias("iris", "production", "staging")  # promote: move to what staging points at
    assert reg.aliases("iris") == {"production": 3, "staging": 3}
    assert reg.resolve("iris@production").aliases == ("production", "staging")
    reg.delete_alias("iris", "staging")
    assert reg.aliases("iris") == {"production": 3}
    with pytest.raises(NotFoundError, match="no alias 'staging'"):
        reg.resolve("iris@staging")
    with pytest.raises(NotFoundError):
        reg.delete_alias("iris", "staging")
    with pytest.raises(NotFoundError, match="no version 9"):
        reg.set_alias("iris", "production", 9)
    with pytest.raises(InvalidReferenceError, match="reserved"):
        reg.set_alias("iris", "latest", 1)
    with pytest.raises(InvalidReferenceError):
        reg.set_alias("iris", "3", 1)
    assert reg.resolve("iris@latest").version == 3


def test_references_work_everywhere(store: Store, iris_bundle: Path, iris_rows: Any) -> None:
    reg = store.registry()
    reg.register(iris_bundle)
    reg.register(iris_bundle)
    reg.set_alias("iris:1", "production")
    assert reg.load("iris@production").version == 1
    assert reg.load("iris:2").version == 2
    assert reg.load("iris").version == 2
    assert (reg.fetch("iris@production") / "model.skops").is_file()
    reg.set_tag("iris@production", "stage", "prod")
    assert reg.resolve("iris:1").tags == {"stage": "prod"}
    reg.archive("iris:2")
    assert reg.resolve("iris").version == 1
    np.testing.assert_array_equal(reg.load("iris:1").predict(iris_rows),
                                  reg.load("iris:2").predict(iris_rows))
    with pytest.raises(InvalidReferenceError, match="already names a version"):
        reg.archive("iris:2", version=1)
    for bad in ("iris:0", "iris:x", "iris@", "iris@1a", "../iris:1", "iris:-1"):
        with pytest.raises(InvalidReferenceError):
            reg.resolve(bad)
    with pytest.raises(NotFoundError, match="no model named 'other'"):
        reg.resolve("other@production")


def test_tags_on_versions_and_models(store: Store, iris_bundle: Path) -> None:
    reg = store.registry()
    reg.register(iris_bundle, tags={"owner": "ana"})
    reg.set_tag("iris", "reviewed", "yes", version=1)
    reg.set_tag("iris", "domain", "botany")
    assert reg.resolve("iris:1").tags == {"owner": "ana", "reviewed": "yes"}
    assert reg.get_model("iris").tags == {"domain": "botany"}
    reg.delete_tag("iris:1", "owner")
    reg.delete_tag("iris", "domain")
    assert reg.resolve("iris:1").tags == {"reviewed": "yes"}
    assert reg.get_model("iris").tags == {}
    with pytest.raises(NotFoundError, match="no tag 'owner'"):
        reg.delete_tag("iris:1", "owner")
    with pytest.raises(InvalidReferenceError):
        reg.set_tag("iris:1", "bad key", "x")


def test_archive_rules(store: Store, iris_bundle: Path) -> None:
    reg = store.registry()
    for _ in range(3):
        reg.register(iris_bundle)
    reg.set_alias("iris", "production", 3)
    with pytest.raises(ConflictError, match="production"):
        reg.archive("iris", version=3)
    reg.archive("iris", version=2)
    assert [mv.version for mv in reg.list_versions("iris")] == [1, 3]
    assert [mv.version for mv in reg.list_versions("iris", include_archived=True)] == [1, 2, 3]
    assert reg.resolve("iris:2").archived  # explicit versions still resolve
    with pytest.raises(ConflictError, match="archived"):
        reg.set_alias("iris", "staging", 2)
    reg.delete_alias("iris", "production")
    reg.archive("iris:3")
    assert reg.resolve("iris").version == 1  # latest skips archived versions
    reg.unarchive("iris", version=3)
    assert reg.resolve("iris").version == 3

    reg.set_alias("iris", "production", 3)
    reg.archive("iris")  # the whole model
    assert reg.list_models() == []
    assert [m.name for m in reg.list_models(include_archived=True)] == ["iris"]
    with pytest.raises(ConflictError, match="archived"):
        reg.resolve("iris@production")
    with pytest.raises(ConflictError, match="archived"):
        reg.resolve("iris")
    with pytest.raises(ConflictError, match="unarchive"):
        reg.register(iris_bundle)
    assert reg.resolve("iris:3").version == 3
    reg.unarchive("iris")
    assert reg.resolve("iris@production").version == 3
    assert reg.register(iris_bundle).version == 4


def test_audit_records_every_change(store: Store, iris_bundle: Path) -> None:
    import socket

    reg = store.registry(actor="ci-bot")
    reg.register(iris_bundle)
    reg.register(iris_bundle, actor="ana")
    reg.set_alias("iris", "production", 1)
    reg.set_alias("iris", "production", 2)
    reg.set_tag("iris:1", "k", "v")
    reg.delete_tag("iris:1", "k")
    reg.archive("iris:1")
    reg.unarchive("iris:1")
    reg.delete_alias("iris", "production")
    entries = reg.audit("iris")
    assert [(e.action, e.version) for e in reversed(entries)] == [
        ("register", 1), ("register", 2), ("set_alias", 1), ("set_alias", 2), ("set_tag", 1),
        ("delete_tag", 1), ("archive", 1), ("unarchive", 1), ("delete_alias", 2),
    ]
    assert entries[-2].actor == "ana" and entries[0].actor == "ci-bot"
    assert {e.host for e in entries} == {socket.gethostname()}
    assert entries[5].details == {"alias": "production", "previous": 1}
    assert all(e.at.tzinfo is not None for e in entries)
    assert len(reg.audit(limit=2)) == 2
    assert reg.audit("other") == []


def test_state_token_changes_with_every_change_only(store: Store, iris_bundle: Path) -> None:
    reg = store.registry()
    tokens = [reg.state_token()]
    reg.register(iris_bundle)
    tokens.append(reg.state_token())
    reg.resolve("iris")
    reg.list_models()
    assert reg.state_token() == tokens[-1]
    reg.set_alias("iris", "production", 1)
    tokens.append(reg.state_token())
    with pytest.raises(NotFoundError):
        reg.set_alias("iris", "production", 7)  # a refused change leaves the state alone
    assert reg.state_token() == tokens[-1]
    other = store.registry(cache="cache2")  # another client sees the same token
    assert other.state_token() == tokens[-1]
    assert len(set(tokens)) == 3


def test_flipped_byte_in_stored_artifact_is_refused_before_deserializing(
        store: Store, iris_bundle: Path, flavor_loads: list[Path]) -> None:
    reg = store.registry()
    good = reg.register(iris_bundle)
    bad = reg.register(iris_bundle)
    data = bytearray(store.read(bad, "model.skops"))
    data[len(data) // 2] ^= 0x01
    store.write(bad, "model.skops", bytes(data))

    reg.load(good.ref)  # control: the spy does see a real load
    assert len(flavor_loads) == 1
    with pytest.raises(IntegrityError, match="'model.skops' does not match"):
        reg.load(bad.ref)
    with pytest.raises(IntegrityError, match="model.skops"):
        reg.fetch(bad.ref)
    assert len(flavor_loads) == 1  # nothing of the tampered artifact was deserialized
    assert not list((store.tmp / "cache" / "iris").glob("2-*"))  # and nothing was cached


def test_missing_file_is_refused(store: Store, iris_bundle: Path,
                                 flavor_loads: list[Path]) -> None:
    reg = store.registry()
    mv = reg.register(iris_bundle)
    store.remove(mv, "example.parquet")
    with pytest.raises(IntegrityError, match="'example.parquet' is missing"):
        reg.load("iris:1")
    assert flavor_loads == []


def test_tampered_manifest_is_refused(store: Store, iris_bundle: Path,
                                      flavor_loads: list[Path]) -> None:
    """The database's hash list covers the manifest, so editing both together is caught."""
    reg = store.registry()
    mv = reg.register(iris_bundle)
    text = store.read(mv, MANIFEST_NAME).decode()
    store.write(mv, MANIFEST_NAME, text.replace("serialization: skops",
                                                "serialization: joblib").encode())
    with pytest.raises(IntegrityError, match=MANIFEST_NAME):
        reg.load("iris:1", trusted=True)
    assert flavor_loads == []


def test_damaged_cache_is_downloaded_again(store: Store, iris_bundle: Path) -> None:
    reg = store.registry()
    reg.register(iris_bundle)
    path = reg.fetch("iris:1")
    (path / "model.skops").write_bytes(b"not a model")
    assert reg.fetch("iris:1") == path
    assert (path / "model.skops").read_bytes() == store.read(reg.resolve("iris:1"), "model.skops")


def test_register_refuses_a_bundle_that_does_not_match_its_manifest(
        store: Store, iris_bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(iris_bundle, tmp_path / "copy"))
    (copy / "example.parquet").write_bytes(b"changed")
    reg = store.registry()
    with pytest.raises(IntegrityError, match="example.parquet"):
        reg.register(copy)
    assert reg.list_models() == []
    assert store.prefixes("iris") == []  # nothing uploaded either


@pytest.mark.parametrize("name", ["..", "a/b", "a\x00b", "/abs", "", "x" * 129, "a..b",
                                  "iris\n", "a b", ".hidden", "C:"])
def test_invalid_model_names_are_refused(store: Store, iris_bundle: Path, name: str) -> None:
    reg = store.registry()
    with pytest.raises(InvalidReferenceError):
        reg.register(iris_bundle, name)
    with pytest.raises(InvalidReferenceError):
        reg.resolve(name)
    assert reg.list_models() == []


def test_register_model_saves_and_registers(store: Store, iris_rows: Any) -> None:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, y)
    reg = store.registry()
    mv = reg.register_model(model, "tree", example=x[:5])
    assert isinstance(mv, ModelVersion) and mv.ref == "tree:1"
    np.testing.assert_array_equal(reg.load("tree").predict(iris_rows), model.predict(iris_rows))


def test_prune_uploads_removes_only_unreferenced_old_uploads(store: Store,
                                                             iris_bundle: Path) -> None:
    from datetime import timedelta

    from modelport.registry.artifacts import ArtifactStore

    reg = store.registry()
    kept = reg.register(iris_bundle)
    orphan = ArtifactStore(store.artifacts, storage_options=store.storage_options).upload(
        iris_bundle, {"model.skops": kept.files["model.skops"]}, "iris")
    assert len(store.prefixes("iris")) == 2
    assert reg.prune_uploads() == []  # too recent: might be a registration in flight
    assert reg.prune_uploads(older_than=timedelta(0)) == [orphan]
    assert store.prefixes("iris") == [kept.artifact_uri.rsplit("/", 1)[-1]]
    assert reg.load("iris:1").version == 1
    assert reg.audit(limit=1)[0].action == "prune_uploads"
