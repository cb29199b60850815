"""Stream workers through an endpoint: each message is routed by its key with the endpoint's
policy (the same sticky hash as REST requests with that key), each variant predicts its share
of the batch with the worker's own decode / encode path, and shadows get the same messages on
their own threads; their outputs go to the prediction log only, never to the output topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelport.rollout.router import EndpointRouter

if TYPE_CHECKING:
    from modelport.core.batch import Batch, Result
    from modelport.core.runner import Runner
    from modelport.stream.loop import StreamLoop
    from modelport.stream.message import Message

log = logging.getLogger("modelport.rollout")


class LabelledRunner:
    """A runner whose predictions carry an endpoint and variant (for events and the log)."""

    def __init__(self, runner: Runner, endpoint: str, variant: str) -> None:
        self._runner = runner
        self.endpoint = endpoint
        self.variant = variant

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)

    def predict(self, batch: Batch, **kwargs: Any) -> Result:
        kwargs.setdefault("endpoint", self.endpoint)
        kwargs.setdefault("variant", self.variant)
        return self._runner.predict(batch, **kwargs)


class StreamRouting:
    """Plugs an endpoint into a ``StreamLoop`` (its ``routing``)."""

    def __init__(self, router: EndpointRouter, endpoint: str) -> None:
        self.router = router
        self.endpoint = endpoint
        self._views: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        #: the loop this routing serves (set on its first batch)
        self.loop: StreamLoop | None = None

    def primary(self) -> Runner:
        decision = self.router.decide(self.endpoint, None)
        assert decision is not None
        return self.router.service.runner(
            self.router.endpoints[self.endpoint].spec.variants[
                self.router.endpoints[self.endpoint].spec.stable])

    def predict(self, loop: StreamLoop, messages: Sequence[Message], start: float
                ) -> tuple[list[Any], list[Any]]:
        self.loop = loop
        groups: dict[str, list[Message]] = {}
        shadows: tuple[str, ...] = ()
        for msg in messages:
            decision = self.router.decide(self.endpoint, msg.key or None)
            if decision is None:
                from modelport.errors import NotFoundError

                raise NotFoundError(f"endpoint {self.endpoint!r} no longer exists; the worker "
                                    "stops (recreate it or run the worker on a model)")
            groups.setdefault(decision.variant, []).append(msg)
            shadows = decision.shadows
        outputs: list[Any] = []
        dead: list[Any] = []
        saved = (loop.runner, loop.codec, loop._rows)
        try:
            for variant, group in groups.items():
                began = time.perf_counter()
                self._switch(loop, variant)
                out, bad = loop._predict(group, start)
                outputs.extend(out)
                dead.extend(bad)
                ms = (time.perf_counter() - began) * 1000.0 / max(len(group), 1)
                ok_rows = len(group) - len({id(d.source) for d in bad if d.source is not None})
                self.router.observe(self.endpoint, variant, ms, ok=True, rows=max(ok_rows, 0))
                if len(group) > ok_rows:
                    self.router.observe(self.endpoint, variant, ms, ok=False,
                                        rows=len(group) - ok_rows)
        finally:
            loop.runner, loop.codec, loop._rows = saved
        for variant in shadows:
            self._shadow(variant, messages)
        return outputs, dead

    def _switch(self, loop: StreamLoop, variant: str) -> None:
        ref = self.router.endpoints[self.endpoint].spec.variants[variant]
        runner = self.router.service.runner(ref)
        key = (variant, id(runner))
        view = self._views.get(key)
        if view is None:
            loop._use(LabelledRunner(runner, self.endpoint, variant),  # type: ignore[arg-type]
                      loop.codec.dead_letter_topic)
            view = self._views[key] = (loop.runner, loop.codec, loop._rows)
        loop.runner, loop.codec, loop._rows = view

    def _shadow(self, variant: str, messages: Sequence[Message]) -> None:
        ref = self.router.endpoints[self.endpoint].spec.variants[variant]
        values = [m.value for m in messages]
        endpoint = self.endpoint

        def run(runner: Runner) -> None:
            records = []
            for value in values:
                try:
                    data = orjson.loads(value) if value else None
                except orjson.JSONDecodeError:
                    continue
                if isinstance(data, dict):
                    records.append(data)
            if records:
                batch = runner.model.coerce(records)
                runner.predict(batch, source="stream", endpoint=endpoint, variant=variant)

        self.router.shadow_call(endpoint, variant, ref, run)


__all__ = ["LabelledRunner", "StreamRouting"]
