"""``stream run --key / --keep``: the names batch run and predict use, end to end (a Redis
stream into a SQL table), with one log format flag."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from tests.stream.conftest import record, unique  # type: ignore[import-not-found]

REDIS = "redis://127.0.0.1:6379/0"


def test_key_and_keep_upsert_one_row_per_key_with_the_kept_fields(
    tmp_path: Path, classifier_bundle: Path, workers: Any
) -> None:
    client = redis.Redis.from_url(REDIS)
    src = unique("in")
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(40):  # ids 0..29, then 0..9 again: the key keeps the latest
            rec = {**record(i % 30), "region": f"r{i}"}
            pipe.xadd(src, {"key": f"k{i}", "value": json.dumps(rec)})
        pipe.execute()
        db = tmp_path / "scores.db"
        w = workers([str(classifier_bundle), "--source", f"{REDIS}/{src}",
                     "--sink", f"sqlite:///{db}", "--table", "scores", "--group", unique("g"),
                     "--key", "id", "--keep", "region", "--log-format", "json"])
        engine = sa.create_engine(f"sqlite:///{db}")
        deadline = time.monotonic() + 90
        rows: list[Any] = []
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    rows = conn.execute(sa.text(
                        "SELECT id, region FROM scores ORDER BY id")).all()
            except sa.exc.OperationalError:  # not created yet
                rows = []
            if len(rows) == 30 and rows[0][1] == "r30":
                break
            time.sleep(0.3)
        engine.dispose()
        assert w.terminate() == 0, w.output()
        assert [r[0] for r in rows] == list(range(30))
        assert [r[1] for r in rows] == [f"r{30 + i}" for i in range(10)] + \
            [f"r{i}" for i in range(10, 30)]
        log = [json.loads(line) for line in w.output().splitlines() if line.startswith("{")]
        assert any(entry["message"] == "stream worker started" for entry in log)
        assert "deprecated" not in w.output()
    finally:
        client.delete(src, f"{src}.dlq")
        client.close()
