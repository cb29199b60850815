"""Runner: synchronous predictions, micro-batching, isolation of bad requests, events."""

from __future__ import annotations

import asyncio

import pytest

from modelport.core.batch import Result
from modelport.core.events import EventBus, PredictionEvent
from modelport.core.runner import Runner, RunnerOptions
from modelport.errors import OverloadedError, PredictionError
from modelport.testing import ErrorOnNegativePredictor, SumPredictor, fixture_model, rows


def test_sync_predict_calls_the_model_once_and_emits_an_event() -> None:
    predictor = SumPredictor()
    bus = EventBus()
    seen: list[PredictionEvent] = []
    bus.subscribe(seen.append)
    runner = Runner(fixture_model(predictor), events=bus)
    result = runner.predict(rows((1, 2), (3, 4)), source="batch", request_id="r1")
    assert result.labels is not None and result.labels.tolist() == [3.0, 7.0]
    assert bus.flush()
    assert [(e.model, e.version, e.n_rows, e.source, e.request_id) for e in seen] == [
        ("sum", 1, 2, "batch", "r1")]
    assert seen[0].latency_ms >= 0
    bus.close()


def test_concurrent_requests_are_coalesced_and_each_gets_its_own_rows() -> None:
    predictor = SumPredictor(delay=0.02)
    runner = Runner(fixture_model(predictor), RunnerOptions(max_batch_rows=64))

    async def main() -> list[Result]:
        return await asyncio.gather(*[runner.submit(rows((i, i))) for i in range(40)])

    results = asyncio.run(main())
    assert [r.labels.tolist() for r in results] == [[2.0 * i] for i in range(40)]  # type: ignore[union-attr]
    assert sum(predictor.call_sizes) == 40
    assert len(predictor.call_sizes) < 40  # fewer model calls than requests
    runner.close()


def test_batches_never_exceed_max_rows() -> None:
    predictor = SumPredictor(delay=0.01)
    runner = Runner(fixture_model(predictor), RunnerOptions(max_batch_rows=8))

    async def main() -> None:
        await asyncio.gather(*[runner.submit(rows((1, 1), (2, 2))) for _ in range(20)])

    asyncio.run(main())
    assert max(predictor.call_sizes) <= 8
    assert sum(predictor.call_sizes) == 40
    runner.close()


def test_a_bad_request_fails_alone() -> None:
    predictor = ErrorOnNegativePredictor(delay=0.01)
    runner = Runner(fixture_model(predictor))

    async def main() -> list[Result | BaseException]:
        jobs = [runner.submit(rows((-1.0, 0.0) if i == 5 else (i, 1))) for i in range(12)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[5], PredictionError)
    assert "negative a" in str(results[5])
    for i, res in enumerate(results):
        if i != 5:
            assert isinstance(res, Result) and res.labels is not None
            assert res.labels.tolist() == [i + 1.0]
    assert max(predictor.call_sizes) > 1  # the poisoned request really was grouped with others
    runner.close()


def test_queue_is_bounded() -> None:
    predictor = SumPredictor(delay=0.05)
    runner = Runner(fixture_model(predictor), RunnerOptions(max_queue_rows=4))

    async def main() -> list[Result | BaseException]:
        return await asyncio.gather(*[runner.submit(rows((1, 1), (1, 1))) for _ in range(5)],
                                    return_exceptions=True)

    results = asyncio.run(main())
    shed = [r for r in results if isinstance(r, OverloadedError)]
    assert shed and len(shed) < 5
    assert all(isinstance(r, Result) for r in results if not isinstance(r, OverloadedError))
    runner.close()


def test_slow_observer_never_blocks_predictions_and_drops_are_counted() -> None:
    import threading

    gate = threading.Event()
    bus = EventBus(max_pending=2)
    bus.subscribe(lambda event: gate.wait(5))
    runner = Runner(fixture_model(SumPredictor()), events=bus)
    for _ in range(10):
        runner.predict(rows((1, 1)))
    assert bus.published == 10
    assert bus.dropped >= 7
    gate.set()
    assert bus.flush()
    bus.close()


def test_failing_observer_is_counted_and_others_still_run() -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: PredictionEvent) -> None:
        raise RuntimeError("observer bug")

    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(e.id))
    Runner(fixture_model(SumPredictor()), events=bus).predict(rows((1, 1)))
    assert bus.flush()
    assert bus.failed == 1 and len(seen) == 1
    bus.close()


@pytest.mark.parametrize("accelerate", ["off"])
def test_runner_without_acceleration_uses_the_native_predictor(accelerate: str) -> None:
    predictor = SumPredictor()
    runner = Runner(fixture_model(predictor), RunnerOptions(accelerate=accelerate)).load()  # type: ignore[arg-type]
    assert runner.predictor is predictor and not runner.accelerated
