"""Routing: given an endpoint's spec and state and a request's key, decide which variant
answers and which variants shadow it. Pure — no I/O, no model calls; randomness is injected.

>>> from modelport.rollout.spec import EndpointSpec, EndpointState
>>> spec = EndpointSpec.from_dict({"name": "fraud", "policy": "bluegreen",
...     "variants": {"blue": "fraud:1", "green": "fraud:2"}, "primary": "blue"})
>>> decide(spec, EndpointState(active="green"), key="user-1").variant
'green'
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass

from modelport.rollout.assignment import bucket, pick
from modelport.rollout.bandit import ArmStats, choose
from modelport.rollout.spec import EndpointSpec, EndpointState

_CANARY_SALT = ":canary"


@dataclass(frozen=True, slots=True)
class Decision:
    """The variant that answers (``variant`` → model reference ``ref``), the variants that get
    a copy of the request (``shadows``), and why (``reason``: the policy's rule that applied)."""

    endpoint: str
    variant: str
    ref: str
    shadows: tuple[str, ...] = ()
    reason: str = ""


def decide(spec: EndpointSpec, state: EndpointState, key: str | bytes | None = None, *,
           rng: random.Random | None = None,
           arms: Mapping[str, ArmStats] | None = None) -> Decision:
    """The decision for one request (or one row, or one message).

    ``key`` makes ``canary`` and ``split`` sticky (the same key, the same variant, in every
    process); without one the share is drawn from ``rng``. ``arms`` are a bandit's statistics.
    """
    variant, reason = _answering(spec, state, key, rng, arms)
    return Decision(spec.name, variant, spec.variants[variant], spec.shadows, reason)


@functools.lru_cache(maxsize=512)
def _share_reason(side: str, weight: float) -> str:
    """``canary share 5%`` (made once per share: the canary asks for it on every request)."""
    return f"{side} share {weight:g}%"


def _answering(spec: EndpointSpec, state: EndpointState, key: str | bytes | None,
               rng: random.Random | None, arms: Mapping[str, ArmStats] | None
               ) -> tuple[str, str]:
    policy = spec.policy
    if policy == "bluegreen":
        return (state.active or spec.stable), "active colour"
    if policy == "canary":
        assert spec.candidate is not None
        if state.status == "rolled_back":
            return spec.stable, "rolled back"
        if state.status == "promoted":
            # the stable alias now names the candidate's version; a fixed stable ref does not
            stable_ref = spec.variants[spec.stable]
            return (spec.stable if "@" in stable_ref else spec.candidate), "promoted"
        point = _point(key, spec.salt + _CANARY_SALT, rng)
        if point * 100.0 < state.weight:
            return spec.candidate, _share_reason("canary", state.weight)
        return spec.stable, _share_reason("stable", 100 - state.weight)
    if policy == "split":
        weights = [(v, spec.weights.get(v, 0.0)) for v in spec.answering()]
        return pick(weights, _point(key, spec.salt, rng)), "split"
    if policy == "bandit":
        names = spec.answering()
        stats = [(arms or {}).get(n) or ArmStats(n) for n in names]
        if state.paused:
            best = max(stats, key=lambda a: a.mean) if any(a.pulls for a in stats) else stats[0]
            return best.name, "bandit paused: best arm"
        b = spec.bandit
        return choose(b.algorithm, stats, rng or random.Random(), floor=b.floor,
                      epsilon=b.epsilon), f"bandit {b.algorithm}"
    return spec.stable, policy


def _point(key: str | bytes | None, salt: str, rng: random.Random | None) -> float:
    if key is not None and key != b"" and key != "":
        return bucket(key, salt)
    return (rng or random).random()


def shares(spec: EndpointSpec, state: EndpointState) -> dict[str, float]:
    """The traffic share (percent) each answering variant is meant to get now."""
    names = spec.answering()
    out = dict.fromkeys(names, 0.0)
    if spec.policy == "split":
        out.update({v: spec.weights.get(v, 0.0) for v in names})
    elif spec.policy == "canary":
        decision = _answering(spec, state, None, random.Random(0), None)[0]
        if state.status == "running":
            assert spec.candidate is not None
            out[spec.candidate] = state.weight
            out[spec.stable] = 100.0 - state.weight
        else:
            out[decision] = 100.0
    elif spec.policy == "bandit":
        return {}
    else:
        out[_answering(spec, state, None, random.Random(0), None)[0]] = 100.0
    return out


__all__ = ["Decision", "decide", "shares"]
