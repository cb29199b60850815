"""Every policy's decision, state by state."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelport.errors import ConfigurationError
from modelport.rollout.bandit import ArmStats
from modelport.rollout.policy import decide, shares
from modelport.rollout.spec import EndpointSpec, EndpointState, initial_state

VARIANTS = {"blue": "fraud@production", "green": "fraud:7"}


def spec(**fields: object) -> EndpointSpec:
    return EndpointSpec.from_dict({"name": "fraud", "variants": VARIANTS, **fields})


def test_single_answers_from_its_one_variant() -> None:
    s = EndpointSpec.from_dict({"name": "fraud", "variants": {"main": "fraud@production"}})
    d = decide(s, EndpointState(), "k")
    assert (d.variant, d.ref, d.shadows) == ("main", "fraud@production", ())


def test_bluegreen_follows_the_active_colour() -> None:
    s = spec(policy="bluegreen", primary="blue")
    state = initial_state(s, 0)
    assert {decide(s, state, f"k{i}").variant for i in range(100)} == {"blue"}
    state = state.with_(active="green", previous="blue")
    assert {decide(s, state, f"k{i}").variant for i in range(100)} == {"green"}
    assert shares(s, state) == {"blue": 0.0, "green": 100.0}


def test_canary_after_rollback_and_promotion() -> None:
    s = spec(policy="canary", candidate="green", canary={"steps": [50, 100]})
    state = initial_state(s, 0)
    assert state.weight == 50
    assert {decide(s, state.with_(status="rolled_back", weight=0), f"k{i}").variant
            for i in range(200)} == {"blue"}
    # the alias moved on promotion, so the stable variant serves the candidate's version
    assert {decide(s, state.with_(status="promoted"), f"k{i}").variant
            for i in range(200)} == {"blue"}
    fixed = EndpointSpec.from_dict({**s.to_dict(), "variants": {"blue": "fraud:6",
                                                                 "green": "fraud:7"}})
    assert decide(fixed, state.with_(status="promoted"), "k").variant == "green"


def test_keyless_requests_are_drawn_from_the_injected_rng() -> None:
    s = spec(policy="canary", candidate="green", canary={"steps": [30, 100]})
    state = initial_state(s, 0)
    rng = random.Random(7)
    counts = Counter(decide(s, state, None, rng=rng).variant for _ in range(20_000))
    assert abs(counts["green"] / 20_000 - 0.30) < 0.015
    rng = random.Random(7)
    again = Counter(decide(s, state, None, rng=rng).variant for _ in range(20_000))
    assert again == counts


def test_shadow_policy_answers_from_the_primary_and_copies_to_shadows() -> None:
    s = spec(policy="shadow", primary="blue", shadows=["green"])
    d = decide(s, EndpointState(), "k")
    assert (d.variant, d.shadows) == ("blue", ("green",))


def test_bandit_keeps_the_floor_share_for_a_losing_arm() -> None:
    s = spec(policy="bandit", bandit={"algorithm": "thompson", "floor": 0.1})
    arms = {"blue": ArmStats("blue", 10_000, 9_000.0), "green": ArmStats("green", 10_000, 10.0)}
    rng = random.Random(1)
    counts = Counter(decide(s, EndpointState(), None, rng=rng, arms=arms).variant
                     for _ in range(20_000))
    assert 0.09 <= counts["green"] / 20_000 <= 0.11  # the floor, nothing more
    paused = decide(s, EndpointState(paused=True), None, rng=rng, arms=arms)
    assert paused.variant == "blue"


@pytest.mark.parametrize("fields, message", [
    ({"policy": "split", "weights": {"blue": 60, "green": 30}}, "sum to 90"),
    ({"policy": "split", "weights": {"blue": 60, "purple": 40}}, "not a variant"),
    ({"policy": "canary"}, "--candidate"),
    ({"policy": "canary", "candidate": "green", "canary": {"steps": [50, 10]}}, "rise"),
    ({"policy": "shadow", "primary": "blue"}, "--shadow"),
    ({"policy": "bandit", "bandit": {"floor": 0.6}}, "floor"),
    ({"policy": "bandit", "bandit": {"algorithm": "magic"}}, "algorithm"),
    ({"policy": "nope"}, "unknown policy"),
    ({"policy": "split", "weights": {"blue": 100}, "colour": "x"}, "unknown endpoint field"),
])
def test_bad_specs_are_refused_with_what_to_fix(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        spec(**fields)


def test_variant_refs_and_names_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="variant 'blue'"):
        EndpointSpec.from_dict({"name": "e", "variants": {"blue": "bad ref!"}})
    with pytest.raises(ConfigurationError, match="invalid endpoint name"):
        EndpointSpec.from_dict({"name": "1bad", "variants": {"blue": "m:1"}})
