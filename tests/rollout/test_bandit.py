"""Bandits on a simulated 3-arm Bernoulli environment, against each other and MABWiser."""

from __future__ import annotations

import random

import pytest

from modelport.errors import InvalidInputError
from modelport.rollout.bandit import ArmStats, choose, scale_reward
from modelport.rollout.simulate import regret, rewards_table

ARMS = (0.1, 0.2, 0.3)
HORIZON = 1000
SEEDS = range(6)


def mean_regret(algorithm: str) -> float:
    return sum(regret(algorithm, ARMS, horizon=HORIZON, seed=s) for s in SEEDS) / len(SEEDS)  # type: ignore[arg-type]


def mabwiser_regret(policy: object, seed: int) -> float:
    """MABWiser's online loop on the same reward table (one pull per arm to start, as it
    needs a fit before predicting)."""
    from mabwiser.mab import MAB

    table = rewards_table(ARMS, HORIZON, seed)
    mab = MAB([0, 1, 2], policy, seed=seed + 1)
    mab.fit([0, 1, 2], [table[0][0], table[1][1], table[2][2]])
    total = sum(max(ARMS) - ARMS[a] for a in (0, 1, 2))
    for step in range(3, HORIZON):
        arm = int(mab.predict())
        mab.partial_fit([arm], [table[step][arm]])
        total += max(ARMS) - ARMS[arm]
    return total


def test_thompson_regrets_less_than_epsilon_greedy() -> None:
    thompson, greedy = mean_regret("thompson"), mean_regret("epsilon_greedy")
    assert thompson < greedy
    # and it learns: far below uniform random play (0.1 per pull on this environment)
    assert thompson < 0.1 * HORIZON / 2


def test_thompson_is_as_good_as_mabwiser_on_the_same_environment() -> None:
    pytest.importorskip("mabwiser")
    from mabwiser.mab import LearningPolicy

    seeds = SEEDS[:4]
    ours = sum(regret("thompson", ARMS, horizon=HORIZON, seed=s) for s in seeds) / len(seeds)
    theirs = sum(mabwiser_regret(LearningPolicy.ThompsonSampling(), s)
                 for s in seeds) / len(seeds)
    print(f"\nregret over {HORIZON} pulls, {len(seeds)} seeds: modelport thompson {ours:.1f}, "
          f"mabwiser thompson {theirs:.1f}")
    assert ours < 1.5 * theirs + 5


def test_ucb1_tries_every_arm_then_exploits() -> None:
    arms = [ArmStats("a"), ArmStats("b")]
    assert choose("ucb1", arms, random.Random(0), floor=0) == "a"
    arms = [ArmStats("a", 1000, 100.0), ArmStats("b", 1000, 900.0)]
    assert choose("ucb1", arms, random.Random(0), floor=0) == "b"


def test_epsilon_greedy_explores_at_epsilon() -> None:
    arms = [ArmStats("a", 100, 10.0), ArmStats("b", 100, 90.0)]
    rng = random.Random(3)
    picks = [choose("epsilon_greedy", arms, rng, floor=0, epsilon=0.2) for _ in range(10_000)]
    assert abs(picks.count("a") / 10_000 - 0.1) < 0.015  # half of the exploration


def test_rewards_outside_the_declared_range_are_refused() -> None:
    assert scale_reward(5.0, 0.0, 10.0) == 0.5
    for bad in (-0.1, 10.5, float("nan")):
        with pytest.raises(InvalidInputError, match="outside the endpoint's declared range"):
            scale_reward(bad, 0.0, 10.0)
