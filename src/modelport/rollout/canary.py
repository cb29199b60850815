"""Canary analysis: on a schedule, check the candidate's recent traffic and move the canary one
step up, hold it, promote it or roll it back. Pure — the caller gathers the ``Observation`` and
applies the resulting ``Transition`` (with an optimistic revision check, so when many workers
run the same controller exactly one transition wins).

A new canary waits for traffic: until its candidate has answered, no check runs (an endpoint
created long before clients call it must not fail, or roll back, for lack of data), and its
first window starts when the candidate's first request was recorded (``start``).

>>> from modelport.rollout.spec import EndpointSpec, initial_state
>>> spec = EndpointSpec.from_dict({"name": "f", "policy": "canary", "candidate": "green",
...     "variants": {"blue": "f@production", "green": "f:7"},
...     "canary": {"steps": [10, 100], "interval_s": 60, "min_requests": 5}})
>>> state = initial_state(spec, now=0.0)
>>> analyse(spec, state, Observation(requests=50, errors=0, p99_ms=3.0), now=30.0) is None
True
>>> analyse(spec, state, Observation(requests=50, errors=0, p99_ms=3.0), now=60.0).action
'advance'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelport.rollout.spec import EndpointSpec, EndpointState

Action = Literal["start", "advance", "promote", "hold", "rollback"]


@dataclass(frozen=True)
class Observation:
    """The candidate's traffic since the last check (summed over every worker)."""

    requests: int
    errors: int
    p99_ms: float | None
    quality: float | None = None
    #: when the first of these requests was recorded (``None``: no request, or not known)
    first_at: float | None = None


@dataclass(frozen=True)
class Check:
    """One analysis: ``failures`` lists what failed, in words; empty means it passed."""

    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class Transition:
    """What the controller decided: the new state, the action and the check behind it."""

    state: EndpointState
    action: Action
    check: Check


def due(spec: EndpointSpec, state: EndpointState, now: float) -> bool:
    """Whether a check is due: a running, unpaused canary whose interval has passed."""
    return (spec.policy == "canary" and state.status == "running" and not state.paused
            and now - state.checked_at >= spec.canary.interval_s)


def check(spec: EndpointSpec, obs: Observation) -> Check:
    """The analysis checks of ``spec.canary`` on ``obs``. Too little data fails the check."""
    c = spec.canary
    failures: list[str] = []
    if obs.requests < c.min_requests:
        failures.append(f"only {obs.requests} candidate requests (minimum {c.min_requests})")
    else:
        rate = obs.errors / obs.requests if obs.requests else 0.0
        if c.max_error_rate is not None and rate > c.max_error_rate:
            failures.append(f"error rate {rate:.2%} above {c.max_error_rate:.2%}")
        if c.max_p99_ms is not None:
            if obs.p99_ms is None:
                failures.append("no latency measured")
            elif obs.p99_ms > c.max_p99_ms:
                failures.append(f"p99 {obs.p99_ms:.1f} ms above {c.max_p99_ms:g} ms")
        if c.min_quality is not None:
            if obs.quality is None:
                failures.append(f"no feedback yet for {c.quality_metric}")
            elif obs.quality < c.min_quality:
                failures.append(f"{c.quality_metric} {obs.quality:.4g} below {c.min_quality:g}")
    return Check(tuple(failures))


def analyse(spec: EndpointSpec, state: EndpointState, obs: Observation,
            now: float) -> Transition | None:
    """The next transition, or ``None`` when no check is due."""
    if not due(spec, state, now):
        return None
    if state.awaiting_traffic:
        if obs.requests == 0:
            return None  # nothing served yet: no check, nothing to fail
        first = obs.first_at if obs.first_at is not None else state.checked_at
        if now - first < spec.canary.interval_s:  # the first window starts with the traffic
            return Transition(state.with_(awaiting_traffic=False, checked_at=first,
                                          reason="receiving traffic"), "start", Check(()))
        state = state.with_(awaiting_traffic=False)  # a whole window of traffic: check it
    result = check(spec, obs)
    steps = spec.canary.steps
    if result.passed:
        if state.step + 1 >= len(steps):
            return Transition(state.with_(status="promoted", weight=100.0, checked_at=now,
                                          reason="every check passed"), "promote", result)
        nxt = state.step + 1
        return Transition(state.with_(step=nxt, weight=steps[nxt], checked_at=now, reason=""),
                          "advance", result)
    failed = state.failed_checks + 1
    reason = "; ".join(result.failures)
    if failed >= spec.canary.max_failed_checks:
        return Transition(state.with_(status="rolled_back", weight=0.0, failed_checks=failed,
                                      checked_at=now, reason=reason), "rollback", result)
    return Transition(state.with_(failed_checks=failed, checked_at=now, reason=reason), "hold",
                      result)


__all__ = ["Action", "Check", "Observation", "Transition", "analyse", "check", "due"]
