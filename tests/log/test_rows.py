"""Events → predictions table (modelport.log.rows): every row keeps its own event's fields when
events of different sizes are joined, sliced and built as columns."""

from __future__ import annotations

import numpy as np
import pytest

import modelport.log.rows as rows
from modelport.core.batch import Batch, Result
from modelport.core.events import PredictionEvent
from modelport.log.config import ModelLogPolicy


def _event(i: int, n_rows: int, **kw: object) -> PredictionEvent:
    matrix = np.arange(n_rows * 2, dtype=np.float64).reshape(n_rows, 2) + 100 * i
    labels = np.full(n_rows, i % 2, np.int64)
    proba = np.column_stack([np.full(n_rows, 0.25), np.full(n_rows, 0.75)])
    return PredictionEvent(
        model="churn", version=2, inputs=Batch.from_matrix(["a", "b"], matrix),
        outputs=Result(n_rows, labels=labels, probabilities=proba, classes=[0, 1]),
        latency_ms=float(i), source=f"s{i % 3}", request_id=f"r{i}é" if i % 4 else None,
        id=f"{i:032x}", timestamp=1_800_000_000.0 + 50_000 * i, **kw)  # type: ignore[arg-type]


def _expected(events: list[PredictionEvent]) -> list[tuple[object, ...]]:
    out = []
    for e in events:
        for j, pid in enumerate(rows.row_ids(e)):
            out.append((pid, e.source, e.request_id, e.latency_ms,
                        float(e.inputs.to_matrix()[j, 1]), int(e.timestamp * 1_000_000)))
    return out


def _got(table: object) -> list[tuple[object, ...]]:
    data = table.to_pylist()  # type: ignore[attr-defined]
    return [(r["prediction_id"], r["source"], r["request_id"], r["latency_ms"], r["inputs"]["b"],
             int(r["predicted_at"].timestamp() * 1_000_000)) for r in data]


@pytest.mark.parametrize("chunk", [3, 16_384])
def test_rows_keep_their_own_event_fields_across_sizes_and_slices(
        monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(rows, "_CHUNK_ROWS", chunk)
    sizes = [1, 0, 3, 1, 2, 0, 1, 5, 1]  # with empty events: 14 rows of 9 events
    events = [_event(i, n, row_ids=[f"t-0-{10 * i + j}" for j in range(n)] if i == 7 else None)
              for i, n in enumerate(sizes)]
    (group,) = rows.group_events(events)
    table = rows.to_table(group, ModelLogPolicy())
    assert _got(table) == _expected(events)
    assert table.column("prediction_id").to_pylist()[:4] == [
        f"{0:032x}", f"{2:032x}-0", f"{2:032x}-1", f"{2:032x}-2"]
    dates = table.column("date").to_pylist()  # the partition: each row's own UTC day
    assert dates == [r.strftime("%Y-%m-%d") for r in table.column("predicted_at").to_pylist()]
    assert len(set(dates)) == 5


def test_an_empty_event_does_not_shift_the_next_events_rows() -> None:
    # 0 + 2 rows: as many rows as events, which once passed for "one row per event"
    events = [_event(0, 0), _event(1, 2)]
    table = rows.to_table(rows.group_events(events)[0], ModelLogPolicy())
    assert _got(table) == _expected(events)
    assert table.column("source").to_pylist() == ["s1", "s1"]


def test_one_row_events_the_servers_case() -> None:
    events = [_event(i, 1) for i in range(200)]
    table = rows.to_table(events, ModelLogPolicy(entity_key="a", hash=("a",)), salt="x")
    assert _got(table) == _expected(events)
    assert table.column("model").to_pylist() == ["churn"] * 200
    assert table.column("version").to_pylist() == [2] * 200
    assert table.column("entity_key").to_pylist()[1] == "100.0"
    assert table.column("prediction").to_pylist()[:3] == [0, 1, 0]
    assert table.column("probability_1").to_pylist()[0] == 0.75
