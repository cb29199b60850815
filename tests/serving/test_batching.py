"""The adaptive micro-batcher in ``Runner.submit``: coalescing, isolation, shedding, draining."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from modelport.bundle.manifest import Manifest
from modelport.bundle.model import Model
from modelport.bundle.signature import Signature
from modelport.core.batch import Batch, Result
from modelport.core.events import EventBus, PredictionEvent
from modelport.core.runner import Runner, RunnerOptions
from modelport.errors import OverloadedError, PredictionError, RequestTimeoutError
from modelport.flavors.base import Predictor

SIGNATURE = Signature.from_dict({"inputs": [{"name": "a", "dtype": "float64"},
                                            {"name": "b", "dtype": "float64"}]})


class SlowSumPredictor(Predictor):
    """a + b per row after ``delay`` seconds per call; a negative ``a`` poisons the call."""

    def __init__(self, delay: float) -> None:
        self.native = None
        self.delay = delay
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def predict(self, batch: Batch) -> Result:
        self.gate.wait(10)
        time.sleep(self.delay)
        self.calls.append(batch.n_rows)
        m = batch.to_matrix()
        if (m[:, 0] < 0).any():
            raise ValueError("poison row")
        return Result(batch.n_rows, labels=m.sum(axis=1))


def runner(delay: float = 0.01, events: EventBus | None = None, **options: float) -> Runner:
    model = Model(Manifest(name="sum", flavor="pyfunc", signature=SIGNATURE),
                  SlowSumPredictor(delay), version=1)
    opts = RunnerOptions(**options)  # type: ignore[arg-type]
    return Runner(model, opts, events=events).load()


def rows(*pairs: tuple[float, float]) -> Batch:
    return SIGNATURE.coerce([{"a": a, "b": b} for a, b in pairs])


def predictor(r: Runner) -> SlowSumPredictor:
    assert isinstance(r.predictor, SlowSumPredictor)
    return r.predictor


def test_concurrent_requests_are_coalesced_into_fewer_calls() -> None:
    r = runner(delay=0.02)

    async def main() -> list[Result]:
        return await asyncio.gather(*(r.submit(rows((i, 1.0))) for i in range(20)))

    results = asyncio.run(main())
    assert [float(res.labels[0]) for res in results] == [i + 1.0 for i in range(20)]
    calls = predictor(r).calls
    assert sum(calls) == 20 and len(calls) < 20 and max(calls) > 1
    r.close()


def test_max_batch_rows_caps_each_call() -> None:
    r = runner(delay=0.01, max_batch_rows=4)

    async def main() -> None:
        await asyncio.gather(*(r.submit(rows((1, 1))) for _ in range(12)))

    asyncio.run(main())
    assert max(predictor(r).calls) <= 4
    r.close()


def test_a_bad_request_fails_alone_in_its_group() -> None:
    r = runner(delay=0.01, max_wait_ms=20)

    async def main() -> list[Result | BaseException]:
        batches = [rows((1, 1)), rows((2, 2)), rows((-1, 0)), rows((3, 3))]
        return await asyncio.gather(*(r.submit(b) for b in batches), return_exceptions=True)

    out = asyncio.run(main())
    assert isinstance(out[2], PredictionError) and "poison" in str(out[2])
    assert [float(o.labels[0]) for o in (out[0], out[1], out[3])] == [2.0, 4.0, 6.0]  # type: ignore[union-attr]
    assert 4 in predictor(r).calls  # they were grouped, then retried one by one
    r.close()


def test_fast_models_run_inline_without_a_thread_hop() -> None:
    r = runner(delay=0.0, inline_below_ms=50)

    async def main() -> None:
        await r.submit(rows((1, 1)))  # first call measures the model
        assert r.runs_inline
        await asyncio.gather(*(r.submit(rows((1, 1))) for _ in range(5)))

    asyncio.run(main())
    assert predictor(r).calls == [1] * 6
    r.close()


def test_timeout_fails_the_request_not_the_model() -> None:
    r = runner(delay=0.3)

    async def main() -> None:
        with pytest.raises(RequestTimeoutError, match="did not answer"):
            await r.submit(rows((1, 1)), timeout=0.05)
        result = await r.submit(rows((2, 2)), timeout=10)
        assert float(result.labels[0]) == 4.0  # type: ignore[index]

    asyncio.run(main())
    r.close()


def test_overload_is_shed_by_queue_wait() -> None:
    r = runner(delay=0.05, max_queue_wait_ms=10)
    predictor(r).gate.clear()  # the model is stuck: the queue only grows

    async def main() -> None:
        first = asyncio.ensure_future(r.submit(rows((1, 1))))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(r.submit(rows((2, 2))))
        await asyncio.sleep(0.05)  # the queued request has now waited 50 ms > 10 ms
        with pytest.raises(OverloadedError) as info:
            await r.submit(rows((3, 3)))
        assert info.value.retry_after >= 1
        predictor(r).gate.set()
        assert float((await first).labels[0]) == 2.0  # type: ignore[index]
        assert float((await second).labels[0]) == 4.0  # type: ignore[index]

    asyncio.run(main())
    r.close()


def test_queue_rows_bound() -> None:
    r = runner(delay=0.05, max_queue_rows=3)
    predictor(r).gate.clear()

    async def main() -> None:
        first = asyncio.ensure_future(r.submit(rows((1, 1), (1, 1))))
        await asyncio.sleep(0.02)
        queued = asyncio.ensure_future(r.submit(rows((1, 1), (1, 1))))
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError, match="rows queued"):
            await r.submit(rows((1, 1), (1, 1)))
        predictor(r).gate.set()
        await first
        await queued

    asyncio.run(main())
    r.close()


def test_close_from_another_thread_drains_queued_requests() -> None:
    r = runner(delay=0.02)
    predictor(r).gate.clear()

    async def main() -> list[Result]:
        pending = [asyncio.ensure_future(r.submit(rows((i, 0)))) for i in range(5)]
        await asyncio.sleep(0.02)
        closer = threading.Thread(target=r.close, kwargs={"timeout": 5})
        closer.start()  # hot reload closes the old runner from its polling thread
        await asyncio.sleep(0.02)
        predictor(r).gate.set()
        out = await asyncio.gather(*pending)
        late = await r.submit(rows((9, 0)))  # taken just before the switch: still answered
        closer.join(5)
        return [*out, late]

    out = asyncio.run(main())
    assert [float(o.labels[0]) for o in out] == [0, 1, 2, 3, 4, 9]  # type: ignore[index]
    assert r.closed


def test_every_prediction_emits_an_event() -> None:
    bus = EventBus()
    seen: list[PredictionEvent] = []
    bus.subscribe(seen.append)
    r = runner(delay=0.01, events=bus)

    async def main() -> None:
        await asyncio.gather(*(r.submit(rows((1, 1)), request_id=f"r{i}") for i in range(4)))

    asyncio.run(main())
    assert bus.flush()
    assert sorted(e.request_id or "" for e in seen) == ["r0", "r1", "r2", "r3"]
    assert all(e.model == "sum" and e.version == 1 and e.n_rows == 1 for e in seen)
    assert np.all([e.outputs.labels[0] == 2.0 for e in seen])  # type: ignore[index]
    r.close()
    bus.close()


def test_large_requests_to_a_fast_model_leave_the_event_loop() -> None:
    r = runner(delay=0.0, inline_below_ms=5)

    async def main() -> None:
        await r.submit(rows((1, 1)))
        assert r.runs_inline
        assert not r._inline(10_000_000)  # expected rows x per-row cost is over the threshold

    asyncio.run(main())
    r.close()


def test_inline_observers_see_each_event_before_submit_returns() -> None:
    bus = EventBus()
    seen: list[str | None] = []
    bus.subscribe(lambda e: seen.append(e.request_id), inline=True)
    r = runner(delay=0.0, events=bus, inline_below_ms=50)

    async def main() -> None:
        for i in range(3):
            await r.submit(rows((1, 1)), request_id=f"r{i}")
            assert seen[-1] == f"r{i}"  # no background thread involved

    asyncio.run(main())
    assert bus.has_observers and bus.published == 0  # nothing queued for a thread
    r.close()
    bus.close()
