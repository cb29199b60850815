"""Bandit simulation on a Bernoulli environment: the regret a policy accumulates.

Used by the tests and ``benchmarks/bandits.py`` to compare the routers with each other and with
an established implementation on the same environment and seeds.

>>> regret("thompson", (0.1, 0.2, 0.3), horizon=200, seed=0) >= 0
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from modelport.rollout.bandit import ArmStats, choose
from modelport.rollout.spec import BanditAlgorithm


def rewards_table(probabilities: Sequence[float], horizon: int, seed: int) -> list[list[int]]:
    """The reward each arm would pay at each step: the same table for every policy (common
    random numbers, so regret differences come from the policies, not the draws)."""
    rng = random.Random(seed)
    return [[int(rng.random() < p) for p in probabilities] for _ in range(horizon)]


def regret(algorithm: BanditAlgorithm, probabilities: Sequence[float], *, horizon: int,
           seed: int, floor: float = 0.0, epsilon: float = 0.1) -> float:
    """Cumulative expected regret of ``algorithm`` over ``horizon`` pulls."""
    table = rewards_table(probabilities, horizon, seed)
    names = [f"arm{i}" for i in range(len(probabilities))]
    arms = [ArmStats(n) for n in names]
    rng = random.Random(seed + 1)
    best = max(probabilities)
    total = 0.0
    for step in range(horizon):
        name = choose(algorithm, arms, rng, floor=floor, epsilon=epsilon)
        i = names.index(name)
        arms[i] = arms[i].update(float(table[step][i]))
        total += best - probabilities[i]
    return total


__all__ = ["regret", "rewards_table"]
