"""Reference parsing and name / alias / tag validation (pure functions, no store)."""

from __future__ import annotations

import pytest

from modelport.errors import InvalidReferenceError
from modelport.registry import Ref, parse_ref
from modelport.registry.artifacts import check_relpath
from modelport.registry.refs import check_alias, check_name, check_tag


@pytest.mark.parametrize(("text", "expected"), [
    ("churn", Ref("churn", alias="latest")),
    ("churn:3", Ref("churn", version=3)),
    ("churn:12", Ref("churn", version=12)),
    ("churn@production", Ref("churn", alias="production")),
    ("team.churn-v2_b@canary-1", Ref("team.churn-v2_b", alias="canary-1")),
])
def test_parse_ref(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected
    assert parse_ref(expected) is expected


def test_ref_round_trips_through_str() -> None:
    for text in ("churn:3", "churn@production"):
        assert str(parse_ref(text)) == text
    assert str(parse_ref("churn")) == "churn@latest"


@pytest.mark.parametrize("text", [
    "", ":3", "@prod", "churn:", "churn:0", "churn:-2", "churn:3.0", "churn:٣", "churn@",
    "churn@3", "churn@pro duction", "churn:3@prod", "a/b:3", "../x", "/abs", "a\x00b", "x" * 129,
    "a..b", "churn\n", "churn@prod\n", "-churn", "church!",
])
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_ref(text)


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidReferenceError, match="must be a string"):
        parse_ref(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a", "A1", "x" * 128, "my.model_v2-b"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


def test_name_error_says_what_is_allowed() -> None:
    with pytest.raises(InvalidReferenceError, match="letters, digits"):
        check_name("a/b")


def test_aliases() -> None:
    assert check_alias("production") == "production"
    assert check_alias("latest") == "latest"
    with pytest.raises(InvalidReferenceError, match="reserved"):
        check_alias("latest", settable=True)
    for bad in ("", "1st", "a" * 65, "a.b", "a/b"):
        with pytest.raises(InvalidReferenceError):
            check_alias(bad)


def test_tags() -> None:
    assert check_tag("team/owner", "ana") == "team/owner"
    for key in ("", "a b", "-x", "k" * 129):
        with pytest.raises(InvalidReferenceError):
            check_tag(key, "v")
    with pytest.raises(InvalidReferenceError, match="at most"):
        check_tag("k", "v" * 5000)


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "a\\b", "", "a//b",
                                 "./a", "a\x00", "c:/x"])
def test_unsafe_bundle_paths_are_refused(rel: str) -> None:
    with pytest.raises(InvalidReferenceError):
        check_relpath(rel)


def test_safe_bundle_paths() -> None:
    assert check_relpath("model.skops") == "model.skops"
    assert check_relpath("weights/part-0.bin") == "weights/part-0.bin"
