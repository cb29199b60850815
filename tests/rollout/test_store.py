"""Endpoints in the registry database (SQLite and PostgreSQL): validation against the registry,
optimistic concurrency, audit, the canary controller across 'workers', bandit rewards."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from modelport.errors import ConflictError, InvalidInputError, NotFoundError
from modelport.registry import Registry
from modelport.registry import schema as t
from modelport.rollout.spec import EndpointSpec
from modelport.rollout.store import EndpointStore
from modelport.rollout.telemetry import VariantStats


def bluegreen(name: str = "fraud") -> EndpointSpec:
    return EndpointSpec.from_dict({"name": name, "policy": "bluegreen", "primary": "blue",
                                   "variants": {"blue": "iris@production", "green": "iris:2"}})


def test_create_list_show_delete(registry: Registry) -> None:
    store = EndpointStore(registry)
    created = store.create(bluegreen())
    assert created.revision == 1 and created.state.active == "blue"
    assert [e.name for e in store.list()] == ["fraud"]
    assert store.get("fraud").spec == bluegreen()
    with pytest.raises(ConflictError, match="exists"):
        store.create(bluegreen())
    store.delete("fraud")
    with pytest.raises(NotFoundError, match="modelport endpoint create fraud"):
        store.get("fraud")


def test_variants_must_exist_and_not_be_archived(local_registry: Registry) -> None:
    store = EndpointStore(local_registry)
    spec = bluegreen()
    with pytest.raises(NotFoundError, match="variant 'green'"):
        store.create(EndpointSpec.from_dict({**spec.to_dict(), "variants": {
            "blue": "iris@production", "green": "iris:9"}}))
    local_registry.archive("iris:3")
    with pytest.raises(ConflictError, match="archived version iris:3"):
        store.create(EndpointSpec.from_dict({**spec.to_dict(), "variants": {
            "blue": "iris@production", "green": "iris:3"}}))
    assert store.list() == []


def test_switch_and_rollback_are_audited_with_who(local_registry: Registry) -> None:
    store = EndpointStore(local_registry, actor="alice")
    store.create(bluegreen())
    assert store.switch("fraud", "green").state.active == "green"
    assert store.rollback("fraud", actor="bob").state.active == "blue"
    history = store.history("fraud")
    assert [(h["action"], h["actor"]) for h in history] == [
        ("endpoint.rollback", "bob"), ("endpoint.switch", "alice"), ("endpoint.create", "alice")]
    with pytest.raises(NotFoundError, match="no variant 'purple'"):
        store.switch("fraud", "purple")
    assert store.get("fraud").revision == 3  # the refused switch changed nothing


def test_bad_changes_leave_the_running_policy_untouched(local_registry: Registry) -> None:
    store = EndpointStore(local_registry)
    store.create(EndpointSpec.from_dict({
        "name": "ab", "policy": "split", "weights": {"a": 50, "b": 50},
        "variants": {"a": "iris:1", "b": "iris:2"}}))
    before = store.get("ab")
    from modelport.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="sum to 110"):
        store.set("ab", {"weights": {"a": 60, "b": 50}})
    with pytest.raises(ConflictError, match="archived"):
        local_registry.archive("iris:3")
        store.set("ab", {"variants": {"a": "iris:1", "b": "iris:3"}})
    assert store.get("ab") == before
    dry = store.set("ab", {"weights": {"a": 90, "b": 10}}, dry_run=True)
    assert dry.spec.weights == {"a": 90, "b": 10} and store.get("ab") == before


def test_concurrent_edits_one_wins_the_other_conflicts(registry: Registry) -> None:
    store = EndpointStore(registry)
    store.create(EndpointSpec.from_dict({
        "name": "ab", "policy": "split", "weights": {"a": 50, "b": 50},
        "variants": {"a": "iris:1", "b": "iris:2"}}))
    seen = store.get("ab").revision
    store.set("ab", {"weights": {"a": 60, "b": 40}}, expected_revision=seen)
    with pytest.raises(ConflictError, match="changed by someone else since revision 1"):
        store.set("ab", {"weights": {"a": 70, "b": 30}}, expected_revision=seen)
    assert store.get("ab").spec.weights == {"a": 60, "b": 40}

    # many writers at once, each reading then writing: every attempt either wins or conflicts,
    # and the revision counts exactly the winners
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def writer(i: int) -> None:
        own = EndpointStore(registry)
        for j in range(5):
            barrier.wait()
            try:
                own.set("ab", {"weights": {"a": 10 + i + j, "b": 90 - i - j}})
                outcomes.append("won")
            except ConflictError:
                outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(outcomes) == 20 and outcomes.count("won") >= 5
    assert store.get("ab").revision == 2 + outcomes.count("won")


def test_the_canary_controller_steps_promotes_and_moves_the_alias(registry: Registry) -> None:
    clock = [1000.0]
    store = EndpointStore(registry, clock=lambda: clock[0])
    store.create(EndpointSpec.from_dict({
        "name": "fraud", "policy": "canary", "candidate": "green",
        "variants": {"blue": "iris@production", "green": "iris:2"},
        "canary": {"steps": [10, 100], "interval_s": 60, "min_requests": 10}}))
    workers = [EndpointStore(registry, clock=lambda: clock[0]) for _ in range(3)]

    def traffic(at: float, errors: int) -> None:
        stats = VariantStats()
        for i in range(40):
            stats.observe(5.0, ok=i >= errors)
        store.record_stats([("fraud", "green", "serve", "rest", stats.to_dict())], at=at)

    traffic(1001.0, 0)  # traffic from the start: the first window is a whole one
    clock[0] = 1061.0
    made = [w.run_checks() for w in workers]
    assert sum(len(m) for m in made) == 1  # one worker made the step, the others skipped it
    assert store.get("fraud").state.weight == 100
    traffic(1090.0, 0)
    clock[0] = 1122.0
    assert [tr.action for _, tr in store.run_checks()] == ["promote"]
    assert registry.resolve("iris@production").version == 2
    actions = [h["action"] for h in store.history("fraud")]
    assert actions[:2] == ["endpoint.canary.promote", "endpoint.canary.advance"]


def test_a_failing_candidate_is_rolled_back(local_registry: Registry) -> None:
    clock = [0.0]
    store = EndpointStore(local_registry, clock=lambda: clock[0])
    store.create(EndpointSpec.from_dict({
        "name": "fraud", "policy": "canary", "candidate": "green",
        "variants": {"blue": "iris@production", "green": "iris:2"},
        "canary": {"steps": [10, 100], "interval_s": 10, "min_requests": 10,
                   "max_failed_checks": 1}}))
    stats = VariantStats()
    for i in range(40):
        stats.observe(5.0, ok=i % 2 == 0)
    store.record_stats([("fraud", "green", "serve", "rest", stats.to_dict())], at=0.0)
    clock[0] = 10.0
    [(_, transition)] = store.run_checks()
    assert transition.action == "rollback" and "error rate 50.00%" in transition.state.reason
    assert local_registry.resolve("iris@production").version == 1


def test_a_canary_created_long_before_traffic_starts_its_window_with_the_traffic(
        local_registry: Registry) -> None:
    clock = [0.0]
    store = EndpointStore(local_registry, clock=lambda: clock[0])
    store.create(EndpointSpec.from_dict({
        "name": "fraud", "policy": "canary", "candidate": "green",
        "variants": {"blue": "iris@production", "green": "iris:2"},
        "canary": {"steps": [10, 100], "interval_s": 60, "min_requests": 10,
                   "max_failed_checks": 1}}))
    clock[0] = 3600.0
    assert store.run_checks() == []  # an hour without traffic: no check, no rollback
    assert store.get("fraud").state.status == "running"
    stats = VariantStats()
    for _ in range(3):
        stats.observe(5.0, ok=True)
    store.record_stats([("fraud", "green", "serve", "rest", stats.to_dict())], at=3650.0)
    assert store.first_traffic("fraud", "green") == 3650.0
    clock[0] = 3651.0
    [(_, started)] = store.run_checks()
    assert started.action == "start" and store.get("fraud").state.checked_at == 3650.0
    for _ in range(20):
        stats.observe(5.0, ok=True)
    store.record_stats([("fraud", "green", "serve", "rest", stats.to_dict())], at=3700.0)
    clock[0] = 3710.0
    [(_, advanced)] = store.run_checks()
    assert advanced.action == "advance" and advanced.state.weight == 100


def test_bandit_rewards_are_shared_and_checked(registry: Registry) -> None:
    store = EndpointStore(registry)
    store.create(EndpointSpec.from_dict({
        "name": "bandit", "policy": "bandit", "variants": {"a": "iris:1", "b": "iris:2"},
        "bandit": {"algorithm": "thompson", "reward_min": 0, "reward_max": 10}}))
    assert store.add_rewards("bandit", [("a", 10.0), ("a", 0.0), ("b", 5.0)]) == 3
    assert store.add_rewards("bandit", [("b", 5.0)]) == 1
    arms = store.arms("bandit")
    assert (arms["a"].pulls, arms["a"].reward_sum) == (2, 1.0)
    assert (arms["b"].pulls, arms["b"].reward_sum) == (2, 1.0)
    with pytest.raises(InvalidInputError, match="outside the endpoint's declared range"):
        store.add_rewards("bandit", [("a", 1.0), ("b", 11.0)])
    assert store.arms("bandit")["a"].pulls == 2  # all or nothing


def test_apply_creates_replaces_and_leaves_equal_ones(local_registry: Registry) -> None:
    store = EndpointStore(local_registry)
    specs = [bluegreen("one"), bluegreen("two")]
    assert store.apply(specs) == [("one", "created"), ("two", "created")]
    changed = EndpointSpec.from_dict({**specs[1].to_dict(), "primary": "green"})
    assert store.apply([specs[0], changed]) == [("one", "unchanged"), ("two", "replaced")]
    assert store.get("two").state.active == "green"


def test_a_version_1_database_gets_the_endpoint_tables(tmp_path: object) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/old.db")
    with engine.begin() as conn:
        t.schema_versions.create(conn)
        for table in (t.models, t.versions, t.aliases, t.audit, t.state):
            table.create(conn)
        conn.execute(sa.insert(t.state).values(id=1, instance="x", counter=0))
        conn.execute(sa.insert(t.schema_versions).values(
            version=1, description="baseline", applied_at=sa.func.current_timestamp()))
    assert t.upgrade(engine) == 1
    tables = set(sa.inspect(engine).get_table_names())
    assert {"modelport_endpoints", "modelport_endpoint_stats",
            "modelport_endpoint_arms"} <= tables
    engine.dispose()


def test_old_statistics_rows_are_merged_without_changing_totals(registry: Registry) -> None:
    store = EndpointStore(registry)
    store.create(bluegreen())
    for i in range(10):
        stats = VariantStats()
        stats.observe(float(i + 1), ok=i != 3)
        store.record_stats([("fraud", "blue", "serve", "rest", stats.to_dict())],
                           at=7200.0 + i)
    store.record_stats([("fraud", "blue", "serve", "rest", VariantStats().to_dict())],
                       at=20_000.0)
    before = store.traffic("fraud")["blue"]
    assert store.compact(now=20_000.0) == 9
    assert store.compact(now=20_000.0) == 0
    after = store.traffic("fraud")["blue"]
    assert (after.requests, after.errors, after.hist) == (before.requests, before.errors,
                                                          before.hist) == (10, 1, before.hist)
