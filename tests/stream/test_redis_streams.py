"""The same worker over Redis Streams consumer groups (the Redis server on this machine)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.stream.conftest import record, unique  # type: ignore[import-not-found]

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(REDIS)
    created: list[str] = []
    c.created = created  # type: ignore[attr-defined]
    yield c
    if created:
        c.delete(*created)
    c.close()


def _streams(client: redis.Redis, *names: str) -> list[str]:
    client.created.extend(names)  # type: ignore[attr-defined]
    return list(names)


def _fill(client: redis.Redis, stream: str, values: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for i, value in enumerate(values):
        pipe.xadd(stream, {"key": f"k{i}", "value": value, "h:request-id": f"r{i}"})
    pipe.execute()


def _wait_len(client: redis.Redis, stream: str, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while client.xlen(stream) < n:
        assert time.monotonic() < deadline, f"{stream}: {client.xlen(stream)} of {n} entries"
        time.sleep(0.2)


def _ids(client: redis.Redis, stream: str) -> Counter[int]:
    return Counter(json.loads(fields[b"value"])["id"] for _, fields in client.xrange(stream))


def test_redis_stream_in_redis_stream_out_with_dead_letters(
    client: redis.Redis, classifier_bundle: Path, workers: Any
) -> None:
    src = unique("in")
    src, dst, dlq = _streams(client, src, unique("out"), f"{src}.dlq")
    values = [json.dumps(record(i)).encode() for i in range(2000)]
    values[10] = b"nope"
    values[1500] = json.dumps({"id": 1500, "f0": 1.0}).encode()  # f1..f4 missing
    _fill(client, src, values)
    w = workers([str(classifier_bundle), "--source", f"{REDIS}/{src}",
                 "--sink", f"{REDIS}/{dst}", "--group", unique("g"), "--passthrough", "id"])
    _wait_len(client, dst, 1998)
    _wait_len(client, dlq, 2)
    assert w.terminate() == 0, w.output()
    assert set(_ids(client, dst)) == set(range(2000)) - {10, 1500}
    _, fields = client.xrange(dst, count=1)[0]
    out = json.loads(fields[b"value"])
    assert fields[b"key"] == b"k0" and fields[b"h:request-id"] == b"r0"
    first_id = client.xrange(src, count=1)[0][0].decode()
    assert out["prediction_id"] == f"{src}-0-{first_id}"
    assert list(out) == ["id", "prediction_id", "prediction", "probabilities", "model",
                         "version", "predicted_at"]
    errors = sorted(f[b"h:error"] for _, f in client.xrange(dlq))
    assert errors == [b"invalid-input", b"malformed"]


def test_entries_with_plain_fields_are_rows_and_their_dead_letters_keep_every_field(
    client: redis.Redis, classifier_bundle: Path, workers: Any
) -> None:
    src = unique("flat")
    src, dst, dlq = _streams(client, src, unique("out"), f"{src}.dlq")
    pipe = client.pipeline(transaction=False)
    for i in range(20):
        fields: dict[str, Any] = {"id": i, **{k: repr(v) for k, v in record(i).items()
                                               if k != "id"}}
        if i == 7:
            fields["f1"] = "abc"  # not a number: a dead letter with all its fields
        pipe.xadd(src, fields)
    pipe.execute()
    w = workers([str(classifier_bundle), "--source", f"{REDIS}/{src}",
                 "--sink", f"{REDIS}/{dst}", "--group", unique("g"), "--keep", "id"])
    _wait_len(client, dst, 19)
    _wait_len(client, dlq, 1)
    assert w.terminate() == 0, w.output()
    assert set(_ids(client, dst)) == set(range(20)) - {7}
    (_, dead), = client.xrange(dlq)
    assert dead[b"f1"] == b"abc" and dead[b"id"] == b"7"
    assert dead[b"f0"] == repr(record(7)["f0"]).encode()
    assert dead[b"h:error"] == b"invalid-input" and b"f1" in dead[b"h:error-message"]


def test_a_crashed_consumer_is_resumed_by_itself_and_its_leftovers_claimed_by_others(
    client: redis.Redis, classifier_bundle: Path, workers: Any
) -> None:
    src, dst = _streams(client, unique("in"), unique("out"))
    n, batch = 3000, 100
    _fill(client, src, [json.dumps(record(i)).encode() for i in range(n)])
    group = unique("g")
    args = [str(classifier_bundle), "--source", f"{REDIS}/{src}", "--sink", f"{REDIS}/{dst}",
            "--group", group, "--passthrough", "id", "--max-batch", str(batch)]
    # "a" dies after its 2nd batch is written and before XACK: that batch stays pending on "a"
    crash = {"MODELPORT_STREAM_FAILPOINT": "written:2"}
    a = workers([*args, "--instance-id", "a"], env=crash)
    assert a.wait(90) == -9, a.output()
    pending = client.xpending(src, group)["pending"]
    assert pending == batch
    # "a" comes back under its own name and re-reads its pending batch first
    a = workers([*args, "--instance-id", "a"], env={"MODELPORT_STREAM_FAILPOINT": "written:3"})
    assert a.wait(90) == -9, a.output()
    # "a" is gone for good; "b" claims what "a" left pending and finishes the stream
    b = workers([*args, "--instance-id", "b", "--claim-idle-ms", "500"])
    _wait_len(client, dst, n)
    time.sleep(1)
    assert b.terminate() == 0, b.output()
    ids = _ids(client, dst)
    assert set(ids) == set(range(n))
    assert sum(ids.values()) - n <= 2 * batch  # one batch per crash, at most
    assert client.xpending(src, group)["pending"] == 0
