"""``EndpointRouter``: the effectful side of routing, shared by the server, stream workers and
batch jobs. It keeps the registry's endpoints in memory (re-read when the registry's state
counter moves), loads every variant's model before a policy that needs it goes live, asks the
pure policies for decisions, counts each variant's traffic and flushes the counts to the
registry database, runs shadows off the request path, and runs due canary checks.

``tick()`` does the periodic work (a few cheap queries); callers run it every
``poll_interval`` seconds on a thread of their own — the server on its event loop's executor.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ModelportError
from modelport.rollout.bandit import ArmStats
from modelport.rollout.canary import due
from modelport.rollout.policy import Decision, decide
from modelport.rollout.spec import DEFAULT_KEY, Endpoint
from modelport.rollout.telemetry import ShadowStats, VariantStats

if TYPE_CHECKING:
    from modelport.core.batch import Batch, Result
    from modelport.core.runner import Runner
    from modelport.core.service import InferenceService
    from modelport.rollout.store import EndpointStore

log = logging.getLogger("modelport.rollout")
Quality = Callable[[Endpoint, float, float], float | None]


class Routed:
    """A decision with the runner that answers it."""

    __slots__ = ("decision", "endpoint", "runner", "variant")

    def __init__(self, decision: Decision, runner: Runner) -> None:
        self.decision = decision
        self.runner = runner
        self.endpoint = decision.endpoint
        self.variant = decision.variant

    @property
    def version(self) -> int | None:
        return self.runner.version


class _Shadow:
    """One shadow variant's worker thread and bounded queue: a full queue drops (counted)."""

    def __init__(self, router: EndpointRouter, ref: str, capacity: int) -> None:
        self.router = router
        self.ref = ref
        self.queue: queue.Queue[Any] = queue.Queue(capacity)
        self.thread = threading.Thread(target=self._run, name=f"shadow-{ref}", daemon=True)
        self.thread.start()

    def offer(self, item: Any) -> bool:
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            return False

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if callable(item[2]):  # (endpoint, variant, fn): a stream batch for the log only
                try:
                    item[2](self.router.service.runner(self.ref))
                except Exception as exc:
                    log.debug("shadow %s of %s failed: %s", item[1], item[0], exc)
                    self.router._shadow_done(item[0], item[1], None, None, 0.0)
                continue
            endpoint, variant, batch, primary = item
            start = time.perf_counter()
            try:
                runner = self.router.service.runner(self.ref)
                result = runner.predict(batch, source="shadow", endpoint=endpoint,
                                        variant=variant)
            except Exception as exc:
                log.debug("shadow %s of %s failed: %s", variant, endpoint, exc)
                self.router._shadow_done(endpoint, variant, None, None, 0.0)
                continue
            self.router._shadow_done(endpoint, variant, primary, result,
                                     (time.perf_counter() - start) * 1000.0)


class EndpointRouter:
    """Routes requests of every endpoint in the registry. Build one per process.

    ``protected`` names references the process serves for itself (never unloaded here);
    ``quality`` gives a canary's online quality metric from feedback, when there is any.
    """

    def __init__(self, store: EndpointStore, service: InferenceService, *,
                 source: str = "rest", rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time, shadow_capacity: int = 256,
                 flush_interval: float = 0.5, run_controller: bool = True,
                 protected: Callable[[], set[str]] | None = None,
                 quality: Quality | None = None) -> None:
        self.store = store
        self.service = service
        self.source = source
        self.rng = rng or random.Random()
        self.clock = clock
        self.shadow_capacity = shadow_capacity
        self.flush_interval = flush_interval
        self.run_controller = run_controller
        self.protected = protected or set
        self.quality = quality
        self.endpoints: dict[str, Endpoint] = {}
        self.arms: dict[str, dict[str, ArmStats]] = {}
        self.errors: dict[str, str] = {}
        self._token: str | None = None
        self._loaded: set[str] = set()
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], VariantStats] = {}
        self._shadow_stats: dict[tuple[str, str], ShadowStats] = {}
        self._shadows: dict[str, _Shadow] = {}
        self._flushed = clock()
        self.dropped = 0
        #: seconds between flushes when no canary is running, and between compactions
        self.idle_flush_interval = 5.0
        self.compact_interval = 600.0
        self._compacted = clock()
        #: seconds between reads of bandit rewards from the prediction log's feedback
        self.feedback_interval = 5.0
        self._feedback_read = 0.0
        self._logged: dict[str, dict[str, ArmStats]] = {}
        #: seconds between looks at a canary waiting for its first candidate request
        self.await_interval = 1.0
        self._awaited: dict[str, float] = {}

    # ------------------------------------------------------------------ refresh
    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the endpoints if the registry changed; returns whether anything changed.

        Every variant's model is loaded before the new table replaces the old one, so a switch
        never sends a request to a model that is still loading. An endpoint whose variant
        fails to load keeps its previous policy (and the failure is in ``errors``).
        """
        token = self.store.registry.state_token()
        if not force and token == self._token:
            return False
        endpoints = {e.name: e for e in self.store.list()}
        table: dict[str, Endpoint] = {}
        for name, endpoint in endpoints.items():
            try:
                for ref in endpoint.spec.variants.values():
                    self.service.runner(ref)
                    self._loaded.add(ref)
            except ModelportError as exc:
                self.errors[name] = str(exc)
                log.error("endpoint %s: a variant failed to load; its previous policy stays: %s",
                          name, exc)
                if name in self.endpoints:
                    table[name] = self.endpoints[name]
                continue
            self.errors.pop(name, None)
            table[name] = endpoint
        self.endpoints = table
        self._token = token
        self._release_unused()
        return True

    def _release_unused(self) -> None:
        used = {ref for e in self.endpoints.values() for ref in e.spec.variants.values()}
        keep = used | self.protected()
        for ref in list(self._loaded - keep):
            self._loaded.discard(ref)
            self.service.unload(ref)
        for ref in list(self._shadows):
            if ref not in used:
                self._shadows.pop(ref).stop()

    def refresh_arms(self) -> None:
        """Bandit statistics: rewards recorded in the registry, plus (every
        ``feedback_interval`` seconds) rewards logged as feedback in the prediction log."""
        now = self.clock()
        read_log = now - self._feedback_read >= self.feedback_interval
        for name, endpoint in self.endpoints.items():
            if endpoint.spec.policy != "bandit":
                continue
            arms = dict(self.store.arms(name))
            if read_log:
                self._logged[name] = logged_rewards(endpoint)
            for variant, extra in self._logged.get(name, {}).items():
                old = arms.get(variant, ArmStats(variant))
                arms[variant] = ArmStats(variant, old.pulls + extra.pulls,
                                         old.reward_sum + extra.reward_sum)
            self.arms[name] = arms
        if read_log:
            self._feedback_read = now

    # ------------------------------------------------------------------ routing
    def key_name(self, name: str) -> str:
        endpoint = self.endpoints.get(name)
        return (endpoint.spec.key if endpoint is not None and endpoint.spec.key
                else DEFAULT_KEY)

    def decide(self, name: str, key: str | bytes | None) -> Decision | None:
        """The decision for endpoint ``name``, or ``None`` when no endpoint has that name."""
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return None
        return decide(endpoint.spec, endpoint.state, key, rng=self.rng,
                      arms=self.arms.get(name))

    def route(self, name: str, key: str | bytes | None) -> Routed | None:
        decision = self.decide(name, key)
        if decision is None:
            return None
        return Routed(decision, self.service.runner(decision.ref))

    # ------------------------------------------------------------------ accounting
    def observe(self, endpoint: str, variant: str, latency_ms: float, *, ok: bool,
                rows: int = 1) -> None:
        """Count ``rows`` answered by ``variant`` (requests over the network, rows in batch)."""
        with self._lock:
            stats = self._stats.get((endpoint, variant))
            if stats is None:
                stats = self._stats[(endpoint, variant)] = VariantStats()
            stats.observe(latency_ms, ok=ok, count=rows)

    def observe_many(self, endpoint: str, counts: Mapping[str, int], latency_ms: float, *,
                     ok: bool = True) -> None:
        for variant, n in counts.items():
            if n:
                self.observe(endpoint, variant, latency_ms, ok=ok, rows=n)

    def shadow(self, decision: Decision, batch: Batch, result: Result) -> None:
        """Queue copies of the request for the decision's shadows; never blocks."""
        endpoint = self.endpoints.get(decision.endpoint)
        if endpoint is None:
            return
        for variant in decision.shadows:
            ref = endpoint.spec.variants[variant]
            worker = self._shadows.get(ref)
            if worker is None:
                worker = self._shadows[ref] = _Shadow(self, ref, self.shadow_capacity)
            if not worker.offer((decision.endpoint, variant, batch, result)):
                self.dropped += 1
                with self._lock:
                    self._shadow_entry(decision.endpoint, variant).dropped += 1

    def shadow_call(self, endpoint: str, variant: str, ref: str,
                    fn: Callable[[Runner], None]) -> None:
        """Run ``fn(runner of ref)`` on the shadow's thread; dropped (counted) when it is busy."""
        worker = self._shadows.get(ref)
        if worker is None:
            worker = self._shadows[ref] = _Shadow(self, ref, self.shadow_capacity)
        if not worker.offer((endpoint, variant, fn)):
            self.dropped += 1
            with self._lock:
                self._shadow_entry(endpoint, variant).dropped += 1

    def _shadow_entry(self, endpoint: str, variant: str) -> ShadowStats:
        stats = self._shadow_stats.get((endpoint, variant))
        if stats is None:
            stats = self._shadow_stats[(endpoint, variant)] = ShadowStats()
        return stats

    def _shadow_done(self, endpoint: str, variant: str, primary: Result | None,
                     result: Result | None, latency_ms: float) -> None:
        with self._lock:
            stats = self._shadow_entry(endpoint, variant)
            if primary is None or result is None:
                stats.errors += 1
                return
            compare_into(stats, primary, result)
            stats.latency.observe(latency_ms, count=1)

    def flush(self) -> None:
        """Write the counts gathered since the last flush to the registry database."""
        with self._lock:
            stats, self._stats = self._stats, {}
            shadow, self._shadow_stats = self._shadow_stats, {}
        rows = [(e, v, "serve", self.source, s.to_dict()) for (e, v), s in stats.items()]
        rows += [(e, v, "shadow", self.source, s.to_dict()) for (e, v), s in shadow.items()]
        if rows:
            try:
                self.store.record_stats(rows, at=self.clock())
            except ModelportError as exc:  # keep them for the next flush
                log.warning("writing endpoint statistics failed (kept for later): %s", exc)
                with self._lock:
                    for (e, v), s in stats.items():
                        self._stats.setdefault((e, v), VariantStats()).merge(s)
                    for (e, v), sh in shadow.items():
                        self._shadow_entry(e, v).merge(sh)
        self._flushed = self.clock()

    # ------------------------------------------------------------------ periodic work
    def tick(self) -> None:
        """Refresh the policies, flush statistics when due, run due canary checks."""
        self.refresh()
        self.refresh_arms()
        now = self.clock()
        # fresh counts matter while a canary is being checked; otherwise every few seconds
        canary = any(e.spec.policy == "canary" and e.state.status == "running"
                     for e in self.endpoints.values())
        if now - self._flushed >= (self.flush_interval if canary else self.idle_flush_interval):
            self.flush()
        if now - self._compacted >= self.compact_interval:
            self._compacted = now
            merged = self.store.compact()
            if merged:
                log.info("merged %d endpoint statistics rows", merged)
        if self.run_controller:
            candidates = [e for e in self.endpoints.values()
                          if due(e.spec, e.state, now) and self._may_check(e, now)]
            if candidates:
                self.flush()
                made = self.store.run_checks(now, endpoints=candidates, quality=self.quality)
                for name, transition in made:
                    log.warning("endpoint %s: canary %s (weight %g%%)%s", name,
                                transition.action, transition.state.weight,
                                f": {transition.state.reason}" if transition.state.reason
                                else "")
                if made:
                    self.refresh(force=True)

    def _may_check(self, endpoint: Endpoint, now: float) -> bool:
        """A canary still waiting for its candidate's first request is looked at once every
        ``await_interval`` seconds (not every tick): its check is due, but finds nothing."""
        if not endpoint.state.awaiting_traffic:
            return True
        if now - self._awaited.get(endpoint.name, float("-inf")) < self.await_interval:
            return False
        self._awaited[endpoint.name] = now
        return True

    def close(self) -> None:
        for worker in self._shadows.values():
            worker.stop()
        self._shadows.clear()
        try:
            self.flush()
        except Exception as exc:  # shutting down: say so, do not raise
            log.warning("final flush of endpoint statistics failed: %s", exc)


def logged_rewards(endpoint: Endpoint) -> dict[str, ArmStats]:
    """Rewards in the prediction log's feedback, scaled to [0, 1] by the endpoint's declared
    range. Feedback surfaces refuse rewards outside it (``rollout.rewards``); one that could not
    be tied to this endpoint when it arrived, and lies outside the range, is ignored here."""
    try:
        from modelport.rollout.feedback import moments
    except ImportError:
        return {}
    from modelport.rollout.rewards import in_range_sql

    b = endpoint.spec.bandit
    try:
        found = moments(endpoint, "reward",
                        condition=in_range_sql("reward", b.reward_min, b.reward_max))
    except (ModelportError, ImportError) as exc:
        log.debug("no logged rewards for %s: %s", endpoint.name, exc)
        return {}
    span = b.reward_max - b.reward_min
    out = {}
    for variant, m in found.items():
        out[variant] = ArmStats(variant, m.n, (m.total - m.n * b.reward_min) / span)
    return out


def compare_into(stats: ShadowStats, primary: Result, shadow: Result) -> None:
    """Add one shadowed batch's agreement to ``stats``."""
    n = min(primary.n_rows, shadow.n_rows)
    if n == 0:
        return
    stats.compared += n
    if primary.labels is not None and shadow.labels is not None:
        stats.label_agree += int(np.sum(np.asarray(primary.labels[:n]) ==
                                        np.asarray(shadow.labels[:n])))
    elif primary.outputs or shadow.outputs:
        a = _first(primary)
        b = _first(shadow)
        if a is not None and b is not None and a.shape == b.shape:
            stats.label_agree += int(np.sum(np.isclose(a[:n], b[:n]).reshape(n, -1).all(1)))
    pa, pb = primary.probabilities, shadow.probabilities
    if pa is not None and pb is not None and np.shape(pa) == np.shape(pb):
        delta = np.abs(np.asarray(pa[:n], dtype=float) - np.asarray(pb[:n], dtype=float))
        per_row = delta.reshape(n, -1).max(axis=1)
        stats.prob_delta_sum += float(per_row.sum())
        stats.prob_delta_max = max(stats.prob_delta_max, float(per_row.max()))


def _first(result: Result) -> Any:
    for value in result.outputs.values():
        return np.asarray(value)
    return None


__all__ = ["EndpointRouter", "Routed", "compare_into"]
