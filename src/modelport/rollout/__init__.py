"""Endpoints and traffic policies: single, blue/green, canary (analysis checks, automatic
rollback, promotion), shadow, A/B split with sticky keys, and multi-armed bandits.

Decisions are pure (``decide(spec, state, key)``); the ``EndpointStore`` keeps endpoints in the
registry database, so every server worker, stream worker and batch job routes alike.

>>> from modelport.rollout import EndpointSpec, decide, initial_state
>>> spec = EndpointSpec.from_dict({"name": "fraud", "policy": "split",
...     "variants": {"a": "fraud:1", "b": "fraud:2"}, "weights": {"a": 50, "b": 50}})
>>> decide(spec, initial_state(spec, 0.0), "user-1").variant in ("a", "b")
True
"""

from __future__ import annotations

from modelport.rollout.bandit import ArmStats, choose
from modelport.rollout.canary import Observation, Transition, analyse
from modelport.rollout.policy import Decision, decide, shares
from modelport.rollout.spec import (
    BanditConfig,
    CanaryConfig,
    Endpoint,
    EndpointSpec,
    EndpointState,
    initial_state,
)
from modelport.rollout.stats import Comparison, Moments, compare, sample_ratio_mismatch
from modelport.rollout.store import EndpointStore

__all__ = [
    "ArmStats",
    "BanditConfig",
    "CanaryConfig",
    "Comparison",
    "Decision",
    "Endpoint",
    "EndpointSpec",
    "EndpointState",
    "EndpointStore",
    "Moments",
    "Observation",
    "Transition",
    "analyse",
    "choose",
    "compare",
    "decide",
    "initial_state",
    "sample_ratio_mismatch",
    "shares",
]
