"""The canary controller, pure: steps, holds, rollback after failed checks, promotion."""

from __future__ import annotations

from modelport.rollout.canary import Observation, analyse, check
from modelport.rollout.spec import EndpointSpec, initial_state


def canary(**config: object) -> EndpointSpec:
    return EndpointSpec.from_dict({
        "name": "fraud", "policy": "canary", "candidate": "green",
        "variants": {"blue": "fraud@production", "green": "fraud:7"},
        "canary": {"steps": [10, 50, 100], "interval_s": 60, "max_error_rate": 0.01,
                   "max_p99_ms": 50, "min_requests": 20, "max_failed_checks": 2, **config}})


HEALTHY = Observation(requests=500, errors=1, p99_ms=20.0)


def test_a_healthy_canary_steps_up_then_promotes() -> None:
    spec = canary()
    state = initial_state(spec, 0.0)
    actions = []
    for t in (60.0, 120.0, 180.0):
        transition = analyse(spec, state, HEALTHY, t)
        assert transition is not None
        actions.append((transition.action, transition.state.weight))
        state = transition.state
    assert actions == [("advance", 50.0), ("advance", 100.0), ("promote", 100.0)]
    assert state.status == "promoted"
    assert analyse(spec, state, HEALTHY, 1000.0) is None  # finished


def test_nothing_happens_before_the_interval_or_while_paused() -> None:
    spec = canary()
    state = initial_state(spec, 0.0)
    assert analyse(spec, state, HEALTHY, 59.9) is None
    assert analyse(spec, state.with_(paused=True), HEALTHY, 600.0) is None


def test_failed_checks_hold_then_roll_back() -> None:
    spec = canary()
    state = initial_state(spec, 0.0)
    failing = Observation(requests=500, errors=50, p99_ms=20.0)
    first = analyse(spec, state, failing, 60.0)
    assert first is not None and first.action == "hold" and first.state.weight == 10
    assert "error rate 10.00% above 1.00%" in first.check.failures
    second = analyse(spec, first.state, failing, 120.0)
    assert second is not None and second.action == "rollback"
    assert (second.state.status, second.state.weight) == ("rolled_back", 0.0)


def test_too_little_data_fails_the_check() -> None:
    spec = canary(max_failed_checks=1)
    result = check(spec, Observation(requests=3, errors=0, p99_ms=1.0))
    assert not result.passed and "minimum 20" in result.failures[0]
    transition = analyse(spec, initial_state(spec, 0.0), Observation(3, 0, 1.0), 60.0)
    assert transition is not None and transition.action == "rollback"


def test_latency_and_quality_checks() -> None:
    spec = canary(min_quality=0.9, quality_metric="accuracy")
    slow = check(spec, Observation(requests=100, errors=0, p99_ms=80.0, quality=0.95))
    assert slow.failures == ("p99 80.0 ms above 50 ms",)
    worse = check(spec, Observation(requests=100, errors=0, p99_ms=10.0, quality=0.8))
    assert worse.failures == ("accuracy 0.8 below 0.9",)
    unknown = check(spec, Observation(requests=100, errors=0, p99_ms=10.0))
    assert unknown.failures == ("no feedback yet for accuracy",)
    assert check(spec, Observation(100, 0, 10.0, 0.95)).passed


def test_the_first_window_starts_when_the_candidate_gets_traffic() -> None:
    spec = canary(max_failed_checks=1)
    state = initial_state(spec, 0.0)  # created at t=0, long before any client calls it
    assert state.awaiting_traffic
    # days later, still no traffic: no check runs, so nothing fails or rolls back
    assert analyse(spec, state, Observation(0, 0, None), 86_400.0) is None
    # the candidate's first request was recorded at t=86_430: the first window starts there
    started = analyse(spec, state, Observation(3, 0, 1.0, first_at=86_430.0), 86_431.0)
    assert started is not None and started.action == "start" and started.check.passed
    assert (started.state.checked_at, started.state.weight) == (86_430.0, 10.0)
    assert not started.state.awaiting_traffic and started.state.failed_checks == 0
    assert analyse(spec, started.state, HEALTHY, 86_489.0) is None  # within the first window
    # from then on, checks as usual: a window's worth of traffic steps it up ...
    stepped = analyse(spec, started.state, HEALTHY, 86_490.0)
    assert stepped is not None and stepped.action == "advance"
    # ... and too little data counts as failed again (Flagger's rule), once traffic has begun
    thin = analyse(spec, started.state, Observation(3, 0, 1.0), 86_490.0)
    assert thin is not None and thin.action == "rollback"


def test_traffic_that_began_a_whole_window_ago_is_checked_at_once() -> None:
    spec = canary()
    state = initial_state(spec, 0.0)
    transition = analyse(spec, state, Observation(500, 1, 20.0, first_at=100.0), 200.0)
    assert transition is not None and transition.action == "advance"
    assert not transition.state.awaiting_traffic
