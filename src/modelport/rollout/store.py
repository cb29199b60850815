"""``EndpointStore``: endpoints, their traffic statistics and bandit rewards in the registry
database, so every server worker, replica, stream worker and batch job sees one policy.

Every change is one transaction that checks the endpoint's ``revision`` (optimistic
concurrency: of two concurrent edits one wins, the other gets ``ConflictError``), appends an
audit row naming who made it and bumps the registry's state counter, which the servers poll.

>>> import tempfile
>>> from modelport.registry import Registry
>>> store = EndpointStore(Registry(f"sqlite:///{tempfile.mkdtemp()}/r.db", tempfile.mkdtemp()))
>>> store.list()
[]
"""

from __future__ import annotations

import builtins
import getpass
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import Connection

from modelport.errors import ConflictError, NotFoundError, StorageError
from modelport.registry import schema as t
from modelport.registry.metadata import safe_url
from modelport.rollout.bandit import ArmStats, scale_reward
from modelport.rollout.canary import Observation, Transition, analyse, due
from modelport.rollout.spec import (
    Endpoint,
    EndpointSpec,
    EndpointState,
    check_endpoint_name,
    initial_state,
)
from modelport.rollout.stats import Moments
from modelport.rollout.telemetry import ShadowStats, VariantStats

if TYPE_CHECKING:
    from modelport.registry import Registry

Clock = Callable[[], float]


def actor_name(actor: str | None = None) -> str:
    """``user@host`` for the audit log."""
    if not actor:
        try:
            actor = getpass.getuser()
        except (OSError, KeyError):
            actor = "unknown"
    return actor


class EndpointStore:
    """Endpoints of one registry. The constructor only stores; the database opens on first use.

    ``clock`` (seconds since the epoch) is injected so canary schedules can be tested.
    """

    def __init__(self, registry: Registry, *, actor: str | None = None,
                 clock: Clock | None = None) -> None:
        self.registry = registry
        self._actor = actor
        self._clock = clock or time.time

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        engine = self.registry.engine()
        with _translated(self.registry.url), engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self, *, bump: bool = True) -> Iterator[Connection]:
        engine = self.registry.engine()
        with _translated(self.registry.url), engine.connect() as conn:
            conn.execution_options(modelport_write=True)
            with conn.begin():
                yield conn
                if bump:  # servers poll this counter to notice policy changes
                    conn.execute(sa.update(t.state).where(t.state.c.id == 1)
                                 .values(counter=t.state.c.counter + 1))

    def _audit(self, conn: Connection, action: str, name: str, details: dict[str, Any],
               actor: str | None) -> None:
        conn.execute(sa.insert(t.audit).values(
            at=datetime.now(UTC), actor=actor_name(actor or self._actor),
            host=socket.gethostname(), action=f"endpoint.{action}", name=name, version=None,
            details=details))

    # ------------------------------------------------------------------ reads
    def get(self, name: str) -> Endpoint:
        with self._reading() as conn:
            row = conn.execute(sa.select(t.endpoints).where(
                t.endpoints.c.name == check_endpoint_name(name))).first()
        if row is None:
            raise NotFoundError(
                f"no endpoint named {name!r}; create it with 'modelport endpoint create {name} "
                "--variant NAME=MODEL_REF' (see 'modelport endpoint list')")
        return _endpoint(row)

    def list(self) -> builtins.list[Endpoint]:
        with self._reading() as conn:
            rows = conn.execute(sa.select(t.endpoints).order_by(t.endpoints.c.name)).all()
        return [_endpoint(r) for r in rows]

    def exists(self, name: str) -> bool:
        with self._reading() as conn:
            return conn.execute(sa.select(t.endpoints.c.name).where(
                t.endpoints.c.name == name)).first() is not None

    def history(self, name: str, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """The endpoint's audit entries, newest first."""
        return [{"at": e.at.isoformat(), "actor": e.actor, "host": e.host, "action": e.action,
                 "details": e.details}
                for e in self.registry.audit(limit=1000)
                if e.name == name and e.action.startswith("endpoint.")][:limit]

    # ------------------------------------------------------------------ validation
    def check_variants(self, spec: EndpointSpec) -> None:
        """Every variant must name an existing model version that is not archived."""
        for variant, ref in spec.variants.items():
            try:
                version = self.registry.resolve(ref)
            except (NotFoundError, ConflictError) as exc:
                raise type(exc)(f"variant {variant!r} of endpoint {spec.name!r}: {exc}") from None
            if version.archived:
                raise ConflictError(
                    f"variant {variant!r} of endpoint {spec.name!r} names archived version "
                    f"{version.ref}; pick an active version or run 'modelport models "
                    f"unarchive {version.ref}'")

    # ------------------------------------------------------------------ changes
    def create(self, spec: EndpointSpec, *, replace_existing: bool = False,
               actor: str | None = None, dry_run: bool = False) -> Endpoint:
        """Store a new endpoint (or, with ``replace_existing``, replace one's spec and state)."""
        spec.check()
        self.check_variants(spec)
        now = self._clock()
        endpoint = Endpoint(spec, initial_state(spec, now), 1, now, actor_name(actor))
        if dry_run:
            return endpoint
        stamp = datetime.now(UTC)
        with self._writing() as conn:
            row = conn.execute(sa.select(t.endpoints).where(t.endpoints.c.name == spec.name)
                               .with_for_update()).first()
            if row is not None and not replace_existing:
                raise ConflictError(
                    f"endpoint {spec.name!r} exists; change it with 'modelport endpoint set "
                    f"{spec.name} ...' or delete it first")
            if row is None:
                conn.execute(sa.insert(t.endpoints).values(
                    name=spec.name, spec=spec.to_dict(), state=endpoint.state.to_dict(),
                    revision=1, created_at=stamp, updated_at=stamp,
                    updated_by=endpoint.updated_by))
            else:
                endpoint = replace(endpoint, revision=int(row.revision) + 1)
                conn.execute(sa.update(t.endpoints).where(t.endpoints.c.name == spec.name)
                             .values(spec=spec.to_dict(), state=endpoint.state.to_dict(),
                                     revision=endpoint.revision, updated_at=stamp,
                                     updated_by=endpoint.updated_by))
            self._audit(conn, "create" if row is None else "replace", spec.name,
                        {"spec": spec.to_dict()}, actor)
        return endpoint

    def update(self, name: str,
               change: Callable[[Endpoint], tuple[EndpointSpec, EndpointState]], *,
               action: str, details: Mapping[str, Any] | None = None,
               expected_revision: int | None = None, actor: str | None = None,
               dry_run: bool = False) -> Endpoint:
        """Apply ``change`` to the endpoint as read now, if nobody changed it in between.

        ``expected_revision`` pins the revision the caller saw (``modelport endpoint show``);
        any other revision in the database at write time raises ``ConflictError``.
        """
        current = self.get(name)
        if expected_revision is not None and current.revision != expected_revision:
            raise _conflict(name, expected_revision, current.revision)
        spec, state = change(current)
        spec.check()
        if spec.variants != current.spec.variants:
            self.check_variants(spec)
        result = Endpoint(spec, state, current.revision + 1, self._clock(), actor_name(actor))
        if dry_run:
            return result
        with self._writing() as conn:
            updated = conn.execute(
                sa.update(t.endpoints)
                .where(t.endpoints.c.name == name, t.endpoints.c.revision == current.revision)
                .values(spec=spec.to_dict(), state=state.to_dict(), revision=result.revision,
                        updated_at=datetime.now(UTC), updated_by=result.updated_by))
            if updated.rowcount != 1:
                raise _conflict(name, current.revision, None)
            self._audit(conn, action, name,
                        {"revision": result.revision, **dict(details or {})}, actor)
        return result

    def delete(self, name: str, *, actor: str | None = None,
               expected_revision: int | None = None) -> None:
        current = self.get(name)
        if expected_revision is not None and current.revision != expected_revision:
            raise _conflict(name, expected_revision, current.revision)
        with self._writing() as conn:
            gone = conn.execute(sa.delete(t.endpoints).where(
                t.endpoints.c.name == name, t.endpoints.c.revision == current.revision))
            if gone.rowcount != 1:
                raise _conflict(name, current.revision, None)
            conn.execute(sa.delete(t.endpoint_arms).where(t.endpoint_arms.c.endpoint == name))
            self._audit(conn, "delete", name, {"spec": current.spec.to_dict()}, actor)

    # ------------------------------------------------------------------ operations
    def set(self, name: str, changes: Mapping[str, Any], *, expected_revision: int | None = None,
            actor: str | None = None, dry_run: bool = False) -> Endpoint:
        """Change spec fields (``{"weights": {...}}``, ``{"canary": {"steps": [...]}}``, ...).

        Nested ``canary`` / ``bandit`` mappings are merged field by field. A changed policy or
        candidate restarts the rollout state; anything else keeps it.
        """

        def change(e: Endpoint) -> tuple[EndpointSpec, EndpointState]:
            data = e.spec.to_dict()
            for key, value in changes.items():
                if key in ("canary", "bandit") and isinstance(value, Mapping):
                    data[key] = {**data.get(key, {}), **value}
                elif value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
            spec = EndpointSpec.from_dict(data)
            restart = (spec.policy != e.spec.policy or spec.candidate != e.spec.candidate
                       or spec.primary != e.spec.primary)
            if restart:
                return spec, initial_state(spec, self._clock())
            state = e.state
            if spec.policy == "canary" and state.status == "running":
                step = min(state.step, len(spec.canary.steps) - 1)  # new steps: same position
                state = state.with_(step=step, weight=spec.canary.steps[step])
            return spec, state

        return self.update(name, change, action="set", details={"changes": dict(changes)},
                           expected_revision=expected_revision, actor=actor, dry_run=dry_run)

    def switch(self, name: str, variant: str, **kwargs: Any) -> Endpoint:
        """Blue/green: all traffic to ``variant``; the previous colour is kept for rollback."""

        def change(e: Endpoint) -> tuple[EndpointSpec, EndpointState]:
            if e.spec.policy != "bluegreen":
                raise ConflictError(
                    f"endpoint {name!r} is a {e.spec.policy} endpoint; switch works on bluegreen "
                    f"ones (change its policy with 'modelport endpoint set {name} --policy ...')")
            if variant not in e.spec.answering():
                raise NotFoundError(f"endpoint {name!r} has no variant {variant!r} (variants: "
                                    f"{', '.join(e.spec.answering())})")
            active = e.state.active or e.spec.stable
            return e.spec, e.state.with_(active=variant, previous=active)

        return self.update(name, change, action="switch", details={"to": variant}, **kwargs)

    def rollback(self, name: str, **kwargs: Any) -> Endpoint:
        """Blue/green: back to the previous colour. Canary: all traffic back to the primary."""

        def change(e: Endpoint) -> tuple[EndpointSpec, EndpointState]:
            if e.spec.policy == "bluegreen":
                back = e.state.previous or e.spec.stable
                return e.spec, e.state.with_(active=back, previous=e.state.active)
            if e.spec.policy == "canary":
                return e.spec, e.state.with_(status="rolled_back", weight=0.0,
                                             reason="rolled back by hand")
            raise ConflictError(
                f"endpoint {name!r} is a {e.spec.policy} endpoint: there is nothing to roll back "
                f"(change its weights with 'modelport endpoint set {name} ...')")

        return self.update(name, change, action="rollback", **kwargs)

    def promote(self, name: str, variant: str | None = None, **kwargs: Any) -> Endpoint:
        """Finish the rollout: the primary variant's alias moves to ``variant``'s version
        (default: the canary candidate, or the active blue/green colour)."""
        endpoint = self.get(name)
        spec = endpoint.spec
        target = variant or spec.candidate or endpoint.state.active or spec.stable
        if target not in spec.variants:
            raise NotFoundError(f"endpoint {name!r} has no variant {target!r}")

        def change(e: Endpoint) -> tuple[EndpointSpec, EndpointState]:
            return e.spec, e.state.with_(status="promoted", weight=100.0,
                                         reason=f"promoted {target}")

        result = self.update(name, change, action="promote", details={"variant": target},
                             **kwargs)
        if not kwargs.get("dry_run"):
            self.move_alias(spec, target, actor=kwargs.get("actor"))
        return result

    def pause(self, name: str, paused: bool = True, **kwargs: Any) -> Endpoint:
        """Stop (or resume) automatic changes: canary steps and bandit learning."""
        return self.update(name, lambda e: (e.spec, e.state.with_(paused=paused)),
                           action="pause" if paused else "resume", **kwargs)

    def apply(self, specs: Iterable[EndpointSpec], *, actor: str | None = None,
              dry_run: bool = False) -> builtins.list[tuple[str, str]]:
        """GitOps: create missing endpoints, replace changed ones, leave equal ones alone.

        Every spec is validated before anything is written. Returns ``(name, what)`` pairs.
        """
        specs = list(specs)
        for spec in specs:
            spec.check()
            self.check_variants(spec)
        existing = {e.name: e for e in self.list()}
        out: builtins.list[tuple[str, str]] = []
        for spec in specs:
            old = existing.get(spec.name)
            if old is not None and old.spec.to_dict() == spec.to_dict():
                out.append((spec.name, "unchanged"))
                continue
            out.append((spec.name, "created" if old is None else "replaced"))
            if not dry_run:
                self.create(spec, replace_existing=old is not None, actor=actor)
        return out

    # ------------------------------------------------------------------ statistics
    def record_stats(self, rows: Iterable[tuple[str, str, str, str, dict[str, Any]]],
                     at: float | None = None) -> int:
        """Append ``(endpoint, variant, kind, source, stats)`` rows (kind: ``serve``/``shadow``)."""
        values = [{"endpoint": e, "variant": v, "kind": k, "source": s,
                   "at": self._clock() if at is None else at, "stats": d}
                  for e, v, k, s, d in rows]
        if not values:
            return 0
        with self._writing(bump=False) as conn:
            conn.execute(sa.insert(t.endpoint_stats), values)
        return len(values)

    def compact(self, *, older_than: float = 3600.0, bucket_s: float = 3600.0,
                now: float | None = None) -> int:
        """Merge statistics rows older than ``older_than`` seconds into one row per endpoint,
        variant, kind, source and ``bucket_s`` window; returns how many rows went away.

        Workers flush a row every half second or so while they serve; this keeps the table
        (and reports over long experiments) small. Safe to run from many workers at once: a
        merge whose rows another worker already merged is rolled back.
        """
        cutoff = (self._clock() if now is None else now) - older_than
        s = t.endpoint_stats
        with self._reading() as conn:
            rows = conn.execute(sa.select(s).where(s.c.at < cutoff)).all()
        groups: dict[tuple[str, str, str, str, float], builtins.list[Any]] = {}
        for row in rows:
            start = row.at - row.at % bucket_s
            groups.setdefault((row.endpoint, row.variant, row.kind, row.source, start),
                              []).append(row)
        removed = 0
        for (endpoint, variant, kind, source, _start), members in groups.items():
            if len(members) < 2:
                continue
            merged: VariantStats | ShadowStats
            if kind == "shadow":
                merged = ShadowStats()
                for m in members:
                    merged.merge(ShadowStats.from_dict(dict(m.stats)))
            else:
                merged = VariantStats()
                for m in members:
                    merged.merge(VariantStats.from_dict(dict(m.stats)))
            ids = [m.id for m in members]
            try:
                with self._writing(bump=False) as conn:
                    gone = conn.execute(sa.delete(s).where(s.c.id.in_(ids)))
                    if gone.rowcount != len(ids):
                        raise ConflictError("merged by another worker meanwhile")
                    conn.execute(sa.insert(s).values(
                        endpoint=endpoint, variant=variant, kind=kind, source=source,
                        at=max(m.at for m in members), stats=merged.to_dict()))
            except ConflictError:
                continue
            removed += len(ids) - 1
        return removed

    def traffic(self, name: str, *, since: float = 0.0, until: float | None = None,
                kind: str = "serve") -> dict[str, VariantStats]:
        """Each variant's requests in ``[since, until)``, summed over every worker."""
        out: dict[str, VariantStats] = {}
        for variant, data in self._stats_rows(name, since, until, kind):
            out.setdefault(variant, VariantStats()).merge(VariantStats.from_dict(data))
        return out

    def shadow_traffic(self, name: str, *, since: float = 0.0,
                       until: float | None = None) -> dict[str, ShadowStats]:
        out: dict[str, ShadowStats] = {}
        for variant, data in self._stats_rows(name, since, until, "shadow"):
            out.setdefault(variant, ShadowStats()).merge(ShadowStats.from_dict(data))
        return out

    def _stats_rows(self, name: str, since: float, until: float | None,
                    kind: str) -> builtins.list[tuple[str, dict[str, Any]]]:
        s = t.endpoint_stats
        query = sa.select(s.c.variant, s.c.stats).where(
            s.c.endpoint == name, s.c.kind == kind, s.c.at >= since)
        if until is not None:
            query = query.where(s.c.at < until)
        with self._reading() as conn:
            return [(r.variant, dict(r.stats)) for r in conn.execute(query)]

    # ------------------------------------------------------------------ bandit arms
    def arms(self, name: str) -> dict[str, ArmStats]:
        a = t.endpoint_arms
        with self._reading() as conn:
            rows = conn.execute(sa.select(a).where(a.c.endpoint == name)).all()
        return {r.variant: ArmStats(r.variant, int(r.pulls), float(r.reward_sum)) for r in rows}

    def reward_moments(self, name: str) -> dict[str, Moments]:
        a = t.endpoint_arms
        with self._reading() as conn:
            rows = conn.execute(sa.select(a).where(a.c.endpoint == name)).all()
        return {r.variant: Moments(int(r.pulls), float(r.reward_sum), float(r.reward_sq))
                for r in rows}

    def add_rewards(self, name: str, rewards: Iterable[tuple[str, float]]) -> int:
        """Record ``(variant, reward)`` pairs for a bandit endpoint; returns how many.

        Rewards are checked against the endpoint's declared range first (all or nothing) and
        added with atomic increments, so every replica can report at once.
        """
        endpoint = self.get(name)
        spec = endpoint.spec
        per_arm: dict[str, list[float]] = {}
        for variant, value in rewards:
            if variant not in spec.variants:
                raise NotFoundError(
                    f"endpoint {name!r} has no variant {variant!r} (variants: "
                    f"{', '.join(spec.variants)})")
            per_arm.setdefault(variant, []).append(
                scale_reward(value, spec.bandit.reward_min, spec.bandit.reward_max))
        a = t.endpoint_arms
        stamp = datetime.now(UTC)
        with self._writing(bump=False) as conn:
            for variant, values in per_arm.items():
                total, sq = sum(values), sum(v * v for v in values)
                changed = conn.execute(sa.update(a).where(
                    a.c.endpoint == name, a.c.variant == variant).values(
                    pulls=a.c.pulls + len(values), reward_sum=a.c.reward_sum + total,
                    reward_sq=a.c.reward_sq + sq, updated_at=stamp))
                if changed.rowcount == 0:
                    try:
                        with conn.begin_nested():
                            conn.execute(sa.insert(a).values(
                                endpoint=name, variant=variant, pulls=len(values),
                                reward_sum=total, reward_sq=sq, updated_at=stamp))
                    except sa_exc.IntegrityError:  # another replica inserted it first
                        conn.execute(sa.update(a).where(
                            a.c.endpoint == name, a.c.variant == variant).values(
                            pulls=a.c.pulls + len(values), reward_sum=a.c.reward_sum + total,
                            reward_sq=a.c.reward_sq + sq, updated_at=stamp))
        return sum(len(v) for v in per_arm.values())

    # ------------------------------------------------------------------ canary controller
    def observe(self, endpoint: Endpoint, now: float,
                quality: Callable[[Endpoint, float, float], float | None] | None = None
                ) -> Observation:
        """The canary candidate's traffic since its last check."""
        assert endpoint.spec.candidate is not None
        since = endpoint.state.checked_at
        stats = self.traffic(endpoint.name, since=since, until=now).get(
            endpoint.spec.candidate, VariantStats())
        q = quality(endpoint, since, now) if quality is not None else None
        first = None
        if endpoint.state.awaiting_traffic and stats.requests:
            first = self.first_traffic(endpoint.name, endpoint.spec.candidate, since=since)
        return Observation(stats.requests, stats.errors, stats.p99_ms, q, first_at=first)

    def first_traffic(self, name: str, variant: str, *, since: float = 0.0) -> float | None:
        """When the first statistics of ``variant``'s traffic since ``since`` were recorded."""
        s = t.endpoint_stats
        query = sa.select(sa.func.min(s.c.at)).where(
            s.c.endpoint == name, s.c.variant == variant, s.c.kind == "serve", s.c.at >= since)
        with self._reading() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else float(found)

    def run_checks(self, now: float | None = None, *,
                   endpoints: Iterable[Endpoint] | None = None,
                   quality: Callable[[Endpoint, float, float], float | None] | None = None
                   ) -> builtins.list[tuple[str, Transition]]:
        """Run every due canary check once; returns the transitions this caller made.

        Safe to call from every worker: a transition is written only if the endpoint's revision
        is still the one read, so exactly one worker makes each step (the others skip it).
        """
        now = self._clock() if now is None else now
        made: builtins.list[tuple[str, Transition]] = []
        for endpoint in (self.list() if endpoints is None else endpoints):
            if not due(endpoint.spec, endpoint.state, now):
                continue
            transition = analyse(endpoint.spec, endpoint.state,
                                 self.observe(endpoint, now, quality), now)
            if transition is None:
                continue
            try:
                self._transition(endpoint, transition)
            except ConflictError:
                continue  # another worker made this step
            made.append((endpoint.name, transition))
        return made

    def _transition(self, endpoint: Endpoint, transition: Transition) -> None:
        spec = endpoint.spec
        details = {"action": transition.action, "weight": transition.state.weight,
                   "failed_checks": transition.state.failed_checks,
                   "failures": list(transition.check.failures)}
        self.update(endpoint.name, lambda e: (e.spec, transition.state),
                    action=f"canary.{transition.action}", details=details,
                    expected_revision=endpoint.revision, actor="canary-controller")
        if transition.action == "promote" and spec.canary.promote:
            self.move_alias(spec, spec.candidate or spec.stable, actor="canary-controller")

    def move_alias(self, spec: EndpointSpec, variant: str, *, actor: str | None = None) -> None:
        """Point the primary variant's alias at ``variant``'s version (promotion)."""
        from modelport.registry.refs import parse_ref

        primary = parse_ref(spec.variants[spec.stable])
        if primary.alias is None or primary.alias == "latest":
            return
        target = self.registry.resolve(spec.variants[variant])
        if target.name != primary.name:
            raise ConflictError(
                f"cannot promote: {spec.variants[variant]} is a version of {target.name!r}, "
                f"but the primary alias belongs to {primary.name!r}")
        self.registry.set_alias(primary.name, primary.alias, target.version,
                                actor=actor or self._actor)


def _endpoint(row: sa.Row[Any]) -> Endpoint:
    spec = EndpointSpec.from_dict(dict(row.spec))
    updated = row.updated_at
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return Endpoint(spec, EndpointState.from_dict(dict(row.state)), int(row.revision),
                    updated.timestamp(), str(row.updated_by))


def _conflict(name: str, expected: int, found: int | None) -> ConflictError:
    now = f" (now revision {found})" if found is not None else ""
    return ConflictError(
        f"endpoint {name!r} was changed by someone else since revision {expected}{now}; "
        f"look at it again with 'modelport endpoint show {name}' and retry")


@contextmanager
def _translated(url: str) -> Iterator[None]:
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        raise StorageError(f"the registry database at {safe_url(url)} failed: {first}") from None


__all__ = ["EndpointStore", "actor_name"]
