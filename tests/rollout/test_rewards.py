"""Rewards checked against the declared range of the bandit endpoint they reward (pure part:
the ranges and the prediction-id lookup are given)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from modelport.errors import InvalidInputError
from modelport.log.feedback_items import FeedbackItem
from modelport.rollout.rewards import bandit_ranges, check_rewards, item_field, out_of_range
from modelport.rollout.spec import Endpoint, EndpointSpec, EndpointState

RANGES = {"offers": (0.0, 5.0), "ads": (-1.0, 1.0)}


class Lookup:
    """Which endpoint answered each prediction; records the ids it was asked about."""

    def __init__(self, answered: Mapping[str, str]) -> None:
        self.answered = answered
        self.asked: list[list[str]] = []

    def __call__(self, ids: Sequence[str]) -> Mapping[str, str]:
        self.asked.append(list(ids))
        return {i: self.answered[i] for i in ids if i in self.answered}


def test_rewards_inside_every_range_need_no_lookup() -> None:
    lookup = Lookup({"p1": "offers"})
    items = [FeedbackItem(prediction_id="p1", reward=0.5), FeedbackItem(prediction_id="p2",
                                                                        label="yes")]
    assert out_of_range(items, RANGES, lookup) == []
    assert lookup.asked == []


def test_out_of_range_rewards_are_named_with_their_endpoint_and_range() -> None:
    lookup = Lookup({"p1": "offers", "p2": "ads", "p3": "plain"})
    items = [FeedbackItem(prediction_id="p1", reward=3.0),   # ok for offers (not for ads)
             FeedbackItem(prediction_id="p2", reward=3.0),   # outside ads' [-1, 1]
             FeedbackItem(prediction_id="p3", reward=99.0),  # no bandit answered it
             FeedbackItem(prediction_id="p4", reward=7.0),   # not in the log (yet)
             FeedbackItem(prediction_id="x", reward=-2.0, model="offers")]  # names the endpoint
    bad = out_of_range(items, RANGES, lookup)
    assert [(i, field, name) for i, field, name, _ in bad] == [
        (1, "items[1].reward", "ads"), (4, "items[4].reward", "offers")]
    assert bad[0][3] == ("items[1].reward 3 (prediction p2) is outside the reward range "
                         "[-1, 1] of bandit endpoint 'ads'")
    assert lookup.asked == [["p1", "p2", "p3", "p4"]]  # one lookup for the whole request
    with pytest.raises(InvalidInputError) as info:
        check_rewards(items, RANGES, lookup, item_field(False), fix=", then retry")
    assert info.value.field == "items[1].reward"
    message = str(info.value)
    assert "items[4].reward -2 is outside the reward range [0, 5] of bandit endpoint " \
           "'offers'" in message
    assert "nothing was stored" in message and "modelport endpoint set ads --reward-range" \
        in message and message.endswith(", then retry")


def test_without_bandits_or_a_lookup_nothing_is_refused_by_prediction() -> None:
    items = [FeedbackItem(prediction_id="p1", reward=40.0)]
    assert out_of_range(items, {}, Lookup({"p1": "offers"})) == []
    assert out_of_range(items, RANGES, None) == []
    with pytest.raises(InvalidInputError) as info:
        check_rewards([FeedbackItem(prediction_id="p", reward=9.0, model="offers")], RANGES,
                      field_of=item_field(True))
    assert info.value.field == "reward"


def test_bandit_ranges_only_for_bandits() -> None:
    bandit = EndpointSpec.from_dict({"name": "offers", "policy": "bandit",
                                     "variants": {"a": "m:1", "b": "m:2"},
                                     "bandit": {"reward_min": -3, "reward_max": 2}})
    split = EndpointSpec.from_dict({"name": "ab", "policy": "split",
                                    "variants": {"a": "m:1", "b": "m:2"},
                                    "weights": {"a": 50, "b": 50}})
    assert bandit_ranges([Endpoint(bandit, EndpointState()), Endpoint(split, EndpointState())]) \
        == {"offers": (-3.0, 2.0)}
