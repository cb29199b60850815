"""Sticky assignment: shares over many keys, and the same key on the same variant everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelport.rollout.assignment import bucket, pick
from modelport.rollout.policy import decide
from modelport.rollout.spec import EndpointSpec, EndpointState, initial_state

KEYS = [f"user-{i}" for i in range(20_000)]


def canary(weight: float) -> tuple[EndpointSpec, EndpointState]:
    spec = EndpointSpec.from_dict({
        "name": "fraud", "policy": "canary", "candidate": "green",
        "variants": {"blue": "fraud@production", "green": "fraud:7"},
        "canary": {"steps": [weight, 100]}})
    return spec, initial_state(spec, 0.0)


def split(weights: dict[str, float], experiment: str | None = None) -> EndpointSpec:
    return EndpointSpec.from_dict({
        "name": "fraud", "policy": "split", "experiment": experiment,
        "variants": {v: f"fraud:{i + 1}" for i, v in enumerate(weights)}, "weights": weights})


def test_a_ten_percent_canary_gets_ten_percent_of_20000_keys() -> None:
    spec, state = canary(10)
    share = sum(decide(spec, state, k).variant == "green" for k in KEYS) / len(KEYS)
    assert 0.09 <= share <= 0.11


@pytest.mark.parametrize("weights", [{"a": 50, "b": 50}, {"a": 70, "b": 20, "c": 10},
                                     {"a": 1, "b": 99}])
def test_split_shares_follow_the_weights(weights: dict[str, float]) -> None:
    spec = split(weights)
    counts = dict.fromkeys(weights, 0)
    for key in KEYS:
        counts[decide(spec, EndpointState(), key).variant] += 1
    for variant, weight in weights.items():
        assert abs(counts[variant] / len(KEYS) - weight / 100) <= 0.01


def test_widening_a_canary_keeps_its_users_on_the_candidate() -> None:
    small, small_state = canary(5)
    wide, wide_state = canary(25)
    early = {k for k in KEYS if decide(small, small_state, k).variant == "green"}
    later = {k for k in KEYS if decide(wide, wide_state, k).variant == "green"}
    assert early and early <= later


def test_experiments_hash_independently() -> None:
    first, second = split({"a": 50, "b": 50}, "exp-1"), split({"a": 50, "b": 50}, "exp-2")
    same = sum(decide(first, EndpointState(), k).variant == decide(second, EndpointState(),
               k).variant for k in KEYS) / len(KEYS)
    assert 0.47 <= same <= 0.53  # independent coins agree half the time


def test_the_same_key_gets_the_same_variant_in_other_processes() -> None:
    spec = split({"a": 34, "b": 33, "c": 33})
    here = [decide(spec, EndpointState(), k).variant for k in KEYS[:2000]]
    code = (
        "import sys, json\n"
        "from modelport.rollout.policy import decide\n"
        "from modelport.rollout.spec import EndpointSpec, EndpointState\n"
        "spec = EndpointSpec.from_dict(json.loads(sys.argv[1]))\n"
        "print(json.dumps([decide(spec, EndpointState(), f'user-{i}').variant "
        "for i in range(2000)]))\n")
    import json

    for seed in ("12345",):  # another hash seed than this process: hash() would differ
        out = subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_dict())],
                             capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin"})
        assert json.loads(out.stdout) == here


def test_bucket_is_uniform_and_keyed() -> None:
    points = [bucket(k, "x") for k in KEYS]
    assert all(0 <= p < 1 for p in points)
    assert abs(sum(points) / len(points) - 0.5) < 0.01
    assert bucket("k", "x") == bucket(b"k", "x") != bucket("k", "y")


def test_pick_skips_zero_weights() -> None:
    assert pick([("a", 0.0), ("b", 100.0)], 0.0) == "b"
    assert pick([("a", 50.0), ("b", 50.0), ("c", 0.0)], 0.999999) == "b"
    with pytest.raises(ValueError):
        pick([("a", 0.0)], 0.5)
