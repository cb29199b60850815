"""Bandit routers against MABWiser on the same simulated environment and seeds.

A 3-arm Bernoulli environment (default success rates 0.1, 0.2, 0.3); every policy sees the same
reward table per seed (common random numbers). Prints the mean cumulative regret of
modelport's Thompson sampling, UCB1 and epsilon-greedy and of MABWiser's, and the time each
takes per pull.

    .venv/bin/python benchmarks/bandits.py [--horizon 5000] [--seeds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from modelport.rollout.simulate import regret, rewards_table


def mabwiser_regret(policy: Any, arms: tuple[float, ...], horizon: int, seed: int) -> float:
    from mabwiser.mab import MAB

    table = rewards_table(arms, horizon, seed)
    k = len(arms)
    mab = MAB(list(range(k)), policy, seed=seed + 1)
    mab.fit(list(range(k)), [table[i][i] for i in range(k)])  # one pull per arm to start
    total = sum(max(arms) - arms[i] for i in range(k))
    for step in range(k, horizon):
        arm = int(mab.predict())
        mab.partial_fit([arm], [table[step][arm]])
        total += max(arms) - arms[arm]
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--arms", default="0.1,0.2,0.3")
    parser.add_argument("--epsilon", type=float, default=0.1)
    args = parser.parse_args()
    arms = tuple(float(a) for a in args.arms.split(","))
    seeds = range(args.seeds)
    rows = []
    for algorithm in ("thompson", "ucb1", "epsilon_greedy"):
        start = time.perf_counter()
        values = [regret(algorithm, arms, horizon=args.horizon, seed=s,  # type: ignore[arg-type]
                         epsilon=args.epsilon) for s in seeds]
        per_pull = (time.perf_counter() - start) / (args.horizon * len(seeds)) * 1e6
        rows.append((f"modelport {algorithm}", values, per_pull))
    try:
        from mabwiser.mab import LearningPolicy
    except ImportError:
        print("mabwiser is not installed (pip install mabwiser): only modelport's figures")
    else:
        for name, policy in (("thompson", LearningPolicy.ThompsonSampling()),
                             ("ucb1", LearningPolicy.UCB1(alpha=1.0)),
                             ("epsilon_greedy", LearningPolicy.EpsilonGreedy(args.epsilon))):
            start = time.perf_counter()
            values = [mabwiser_regret(policy, arms, args.horizon, s) for s in seeds]
            per_pull = (time.perf_counter() - start) / (args.horizon * len(seeds)) * 1e6
            rows.append((f"mabwiser {name}", values, per_pull))
    print(f"{len(arms)}-arm Bernoulli {arms}, {args.horizon} pulls, {args.seeds} seeds")
    print(f"{'policy':<28}{'mean regret':>12}{'sd':>8}{'us/pull':>10}")
    for name, values, per_pull in rows:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<28}{statistics.mean(values):>12.1f}{sd:>8.1f}{per_pull:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
