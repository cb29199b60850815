"""Kubernetes name rules (pure functions) and their docstring examples."""

from __future__ import annotations

import doctest

import pytest

from modelport.errors import InvalidReferenceError
from modelport.export import names


def test_docstring_examples_run() -> None:
    result = doctest.testmod(names, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("name", "rfc", "rule"), [
    ("churn", 1035, ""),
    ("churn-v2", 1035, ""),
    ("", 1035, "cannot be empty"),
    ("a" * 64, 1035, "at most 63 characters"),
    ("Churn", 1035, "found 'C'"),
    ("churn_v2", 1035, "found '_'"),
    ("churn.v2", 1035, "found '.'"),
    ("2churn", 1035, "must start with a lowercase letter"),
    ("2churn", 1123, ""),
    ("-churn", 1123, "must start with a letter or digit"),
    ("churn-", 1035, "must end with a letter or digit"),
    ("chürn", 1035, "found 'ü'"),
])
def test_label_rules(name: str, rfc: int, rule: str) -> None:
    broken = names.label_rule_broken(name, rfc=rfc)
    assert (rule in broken) if rule else broken == ""


@pytest.mark.parametrize("text", ["Churn_Model.v2", "9lives", "__x__", "a" * 80, "ÄÖÜ"])
def test_suggestions_are_valid_names(text: str) -> None:
    assert names.label_rule_broken(names.suggest(text)) == ""


def test_check_names_the_flag_and_a_fix() -> None:
    with pytest.raises(InvalidReferenceError, match="--target kserve --name churn-v2"):
        names.check_label_name("Churn_v2", "--name", target="kserve")
