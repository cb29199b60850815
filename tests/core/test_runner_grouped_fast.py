"""A fast model stays cheap under steady load: grouped calls run on the event loop.

Once requests queue (the first request of a fresh runner always goes to the worker, since its
speed is not known yet), later ones keep arriving while the queue is worked off. For a model
whose calls take microseconds each group is then called right on the loop, without a thread
hop, and the runner returns to answering one-row requests inline.
"""

from __future__ import annotations

import asyncio
import threading

from modelport.bundle.manifest import Manifest
from modelport.bundle.model import Model
from modelport.bundle.signature import Signature
from modelport.core.batch import Batch, Result
from modelport.core.runner import Runner, RunnerOptions
from modelport.flavors.base import Predictor

SIGNATURE = Signature.from_dict({"inputs": [{"name": "a", "dtype": "float64"},
                                            {"name": "b", "dtype": "float64"}]})


class ThreadRecorder(Predictor):
    """a + b per row; remembers which thread made each call and how many rows it had."""

    def __init__(self) -> None:
        self.native = None
        self.calls: list[tuple[str, int]] = []
        self.gate = threading.Event()  # holds the first call until the test opens it

    def predict(self, batch: Batch) -> Result:
        self.gate.wait(10)
        self.calls.append((threading.current_thread().name, batch.n_rows))
        m = batch.to_matrix()
        return Result(batch.n_rows, labels=m.sum(axis=1))


def test_grouped_calls_of_a_fast_model_run_on_the_loop() -> None:
    recorder = ThreadRecorder()
    model = Model(Manifest(name="sum", flavor="pyfunc", signature=SIGNATURE), recorder,
                  version=1)
    # the held first call takes ~50 ms (and so ~50 ms a row): a threshold well above what a
    # group of 19 rows is then expected to take makes this model "fast" here
    runner = Runner(model, RunnerOptions(inline_below_ms=5000.0)).load()
    loop_thread = threading.current_thread().name

    def one(i: int) -> Batch:
        return SIGNATURE.coerce([{"a": float(i), "b": 1.0}])

    async def scenario() -> list[float]:
        first = asyncio.ensure_future(runner.submit(one(0)))  # speed unknown: to the worker
        await asyncio.sleep(0.05)  # the worker thread is inside the (held) first call
        queued = [asyncio.ensure_future(runner.submit(one(i))) for i in range(1, 20)]
        await asyncio.sleep(0)
        recorder.gate.set()
        results = await asyncio.gather(first, *queued)
        later = await runner.submit(one(20))  # known fast and idle: inline
        return [float(r.labels[0]) for r in [*results, later]]  # type: ignore[index]

    assert asyncio.run(scenario()) == [i + 1.0 for i in range(21)]
    assert recorder.calls[0] == ("runner-sum_0", 1)  # the first call, on the worker thread
    # the 19 requests queued behind it: one grouped call, on the loop, no thread hop
    assert recorder.calls[1] == (loop_thread, 19)
    assert recorder.calls[2] == (loop_thread, 1)
    runner.close()
