"""``InferenceService``: references in, runners out — every deployment form's entry to the core.

The service resolves ``name``, ``name:3`` or ``name@alias`` through the registry, loads each model
version once and shares its ``Runner`` between every reference that points at it. ``refresh()``
re-resolves aliases: a moved alias gets its new version loaded (and accelerated) first and switched
to only once ready; a failed load leaves the old version serving and is reported.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelport.core.batch import Result
from modelport.core.events import EventBus
from modelport.core.runner import BatchObserver, Runner, RunnerOptions
from modelport.errors import ModelLoadError, ModelportError, PredictionError, RequestTimeoutError

if TYPE_CHECKING:
    from modelport.registry import Registry

log = logging.getLogger("modelport.service")


@dataclass(frozen=True)
class Reload:
    """What ``refresh()`` did for one reference."""

    ref: str
    old_version: int | None
    new_version: int | None
    error: str | None = None
    #: the error carries the model's or its framework's own words (not for remote callers)
    private: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class InferenceService:
    def __init__(
        self,
        registry: Registry,
        *,
        options: RunnerOptions | None = None,
        events: EventBus | None = None,
        trusted: bool = False,
        on_batch: BatchObserver | None = None,
        load_timeout: float | None = None,
    ) -> None:
        self.registry = registry
        self.options = options or RunnerOptions()
        self.events = events or EventBus()
        self.trusted = trusted
        self.on_batch = on_batch
        #: seconds a hot reload may spend loading a new version before it is given up
        self.load_timeout = load_timeout
        #: checks each version's signature before it loads (``serve --verify-key``), or None
        self.verifier: Any = None
        self._runners: dict[tuple[str, int], Runner] = {}
        self._refs: dict[str, tuple[str, int]] = {}
        self._lock = threading.RLock()
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}
        self._state: object = None
        self.failures: list[Reload] = []

    # ------------------------------------------------------------------ lookup
    def runner(self, ref: str) -> Runner:
        """The runner for ``ref``, loading its model version on first use."""
        key = self._refs.get(ref)
        if key is not None:
            runner = self._runners.get(key)
            if runner is not None:
                return runner
        version = self.registry.resolve(ref)
        key = (version.name, version.version)
        runner = self._load(key)
        with self._lock:
            self._refs[ref] = key
        return runner

    def _load(self, key: tuple[str, int]) -> Runner:
        with self._lock:
            runner = self._runners.get(key)
            if runner is not None:
                return runner
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:  # one load per version, even when many threads ask at once
            runner = self._runners.get(key)
            if runner is not None:
                return runner
            start = time.perf_counter()
            # the native model is deserialized only if the runner needs it (no usable ONNX form)
            model = self.registry.load(f"{key[0]}:{key[1]}", trusted=self.trusted,
                                       lazy=self.options.accelerate != "off",
                                       verifier=self.verifier)
            runner = Runner(model, self.options, events=self.events,
                            on_batch=self.on_batch).load()
            log.info("loaded %s:%s in %.0f ms (%s)", key[0], key[1],
                     (time.perf_counter() - start) * 1000, runner.accelerate_reason)
            with self._lock:
                self._runners[key] = runner
            return runner

    def loaded(self) -> list[Runner]:
        with self._lock:
            return list(self._runners.values())

    def references(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return dict(self._refs)

    # ------------------------------------------------------------------ prediction
    def predict(self, ref: str, data: Any, *, source: str = "python",
                request_id: str | None = None) -> Result:
        runner = self.runner(ref)
        batch = runner.model.coerce(data)
        return runner.predict(batch, source=source, request_id=request_id)

    # ------------------------------------------------------------------ hot reload
    def refresh(self, *, force: bool = False) -> list[Reload]:
        """Re-resolve every reference; switch each to its new version once that is loaded."""
        token = self.registry.state_token()
        if not force and token == self._state:
            return []
        self._state = token
        changes: list[Reload] = []
        for ref, old in self.references().items():
            try:
                version = self.registry.resolve(ref)
            except ModelportError as exc:
                changes.append(Reload(ref, old[1], None, str(exc)))
                continue
            new = (version.name, version.version)
            if new == old:
                continue
            try:
                self._load_within(new)
            except Exception as exc:  # the old version keeps serving
                message = str(exc) if isinstance(exc, ModelportError) else repr(exc)
                log.error("reload of %s to version %s failed: %s", ref, new[1], message)
                changes.append(Reload(ref, old[1], new[1], message, private=not isinstance(
                    exc, ModelportError) or isinstance(exc, ModelLoadError | PredictionError)))
                continue
            with self._lock:
                self._refs[ref] = new
            changes.append(Reload(ref, old[1], new[1]))
            log.info("%s now serves version %s (was %s)", ref, new[1], old[1])
        self.failures.extend(c for c in changes if not c.ok)
        self._unload_unreferenced()
        return changes

    def _load_within(self, key: tuple[str, int]) -> Runner:
        if self.load_timeout is None:
            return self._load(key)
        box: list[Runner | BaseException] = []

        def load() -> None:
            try:
                box.append(self._load(key))
            except BaseException as exc:
                box.append(exc)

        thread = threading.Thread(target=load, name=f"load-{key[0]}-{key[1]}", daemon=True)
        thread.start()
        thread.join(self.load_timeout)
        if not box:
            raise RequestTimeoutError(
                f"loading {key[0]}:{key[1]} took longer than {self.load_timeout:g} s; "
                "the previous version keeps serving"
            )
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def unload(self, ref: str) -> None:
        with self._lock:
            self._refs.pop(ref, None)
        self._unload_unreferenced()

    def _unload_unreferenced(self) -> None:
        with self._lock:
            used = set(self._refs.values())
            stale = [k for k in self._runners if k not in used]
            for key in stale:
                self._runners.pop(key).close()

    def close(self) -> None:
        with self._lock:
            for runner in self._runners.values():
                runner.close()
            self._runners.clear()
            self._refs.clear()
        self.events.close()
