"""Multi-armed bandits: Thompson sampling, UCB1 and epsilon-greedy, with a floor share per arm.

Pure: ``choose(arms, rng)`` pulls an arm from the arms' statistics, ``ArmStats.update`` learns a
reward. Rewards are rescaled to ``[0, 1]`` by the declared range (rewards outside it are refused),
so Thompson sampling uses Beta posteriors with fractional successes.

>>> import random
>>> arms = [ArmStats("a", pulls=100, reward_sum=10.0), ArmStats("b", pulls=100, reward_sum=60.0)]
>>> choose("ucb1", arms, random.Random(0), floor=0.0)
'b'
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from modelport.errors import InvalidInputError
from modelport.rollout.spec import BanditAlgorithm


@dataclass(frozen=True)
class ArmStats:
    """What one arm has earned: ``pulls`` rewarded pulls and the sum of their scaled rewards."""

    name: str
    pulls: int = 0
    reward_sum: float = 0.0

    @property
    def mean(self) -> float:
        return self.reward_sum / self.pulls if self.pulls else 0.0

    def update(self, reward: float) -> ArmStats:
        """This arm after one more pull rewarded ``reward`` (already scaled to [0, 1])."""
        return replace(self, pulls=self.pulls + 1, reward_sum=self.reward_sum + reward)


def scale_reward(value: float, low: float, high: float) -> float:
    """``value`` in ``[low, high]`` mapped to ``[0, 1]``; outside the range is an error."""
    if not isinstance(value, int | float) or math.isnan(value) or not low <= value <= high:
        raise InvalidInputError(
            f"reward {value!r} is outside the endpoint's declared range [{low:g}, {high:g}]; "
            "send rewards in that range or change it with 'modelport endpoint set NAME "
            "--reward-range LOW,HIGH'", field="reward")
    return (float(value) - low) / (high - low)


def choose(algorithm: BanditAlgorithm, arms: Sequence[ArmStats], rng: random.Random, *,
           floor: float = 0.05, epsilon: float = 0.1) -> str:
    """The arm to pull next.

    With probability ``floor * len(arms)`` an arm is drawn uniformly, so every arm keeps at
    least ``floor`` of the traffic whatever it has earned; otherwise the algorithm decides.
    """
    if not arms:
        raise ValueError("a bandit needs arms")
    k = len(arms)
    if floor > 0 and rng.random() < floor * k:
        return arms[rng.randrange(k)].name
    if algorithm == "thompson":
        draws = [rng.betavariate(1.0 + a.reward_sum, 1.0 + max(a.pulls - a.reward_sum, 0.0))
                 for a in arms]
        return arms[_argmax(draws)].name
    if algorithm == "ucb1":
        for arm in arms:
            if arm.pulls == 0:
                return arm.name
        total = sum(a.pulls for a in arms)
        log_total = math.log(total)
        scores = [a.mean + math.sqrt(2.0 * log_total / a.pulls) for a in arms]
        return arms[_argmax(scores)].name
    if algorithm == "epsilon_greedy":
        if rng.random() < epsilon:
            return arms[rng.randrange(k)].name
        untried = [a for a in arms if a.pulls == 0]
        if untried:
            return untried[0].name
        return arms[_argmax([a.mean for a in arms])].name
    raise ValueError(f"unknown bandit algorithm {algorithm!r}")


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best = i
    return best


__all__ = ["ArmStats", "choose", "scale_reward"]
