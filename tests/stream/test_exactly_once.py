"""``--exactly-once``: outputs and offsets in one Kafka transaction survive SIGKILLs without
duplicates, as a ``read_committed`` consumer sees them."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.stream.conftest import (  # type: ignore[import-not-found]
    Broker,
    broker_args,
    read_topic,
    unique,
)
from tests.stream.test_delivery import _Feeder, _messages, _wait_for  # type: ignore[import-not-found]


@pytest.mark.parametrize("broker", ["noida"], indirect=True)
def test_exactly_once_survives_kills_without_duplicates(
    broker: Broker, classifier_bundle: Path, workers: Any
) -> None:
    src = broker.create_topic(unique("in"), partitions=2)
    dst = broker.create_topic(unique("out"), partitions=2)
    n = 20_000
    group = unique("g")
    args = [str(classifier_bundle), "--source", broker.uri(src), "--sink", broker.uri(dst),
            "--group", group, "--passthrough", "id", "--exactly-once", "--max-batch", "200",
            "--instance-id", f"{group}-a", *broker_args(broker)]
    feeder = _Feeder(broker, src, _messages(n, seed=9), chunks=20, pause=0.5)
    rng = random.Random(3)
    worker = workers(args)
    feeder.start()
    for _ in range(3):
        _wait_for(lambda: "assigned" in worker.output(), 90, "the worker to join")  # noqa: B023
        time.sleep(rng.uniform(0.2, 1.5))
        worker.kill()
        worker = workers(args)
    feeder.join(120)
    assert feeder.error is None
    got = read_topic(broker, dst, expect=n, timeout=120, settle=4, committed_only=True)
    assert worker.terminate() == 0, worker.output()
    ids = Counter(json.loads(m.value())["id"] for m in got)
    assert set(ids) == set(range(n))
    assert max(ids.values()) == 1, [i for i, c in ids.items() if c > 1][:5]
    # uncommitted attempts of killed transactions exist, but readers never see them
    everything = read_topic(broker, dst, expect=n, timeout=30, settle=2)
    assert len(everything) >= n
