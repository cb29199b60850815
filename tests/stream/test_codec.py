"""The message codec: the batch encoder writes exactly what the one-record encoder writes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from modelport.core.batch import Result
from modelport.stream import Message, MessageCodec, fastcodec
from modelport.stream import codec as codec_module
from modelport.stream.codec import json_column
from modelport.stream.message import Messages, Outputs, column

STAMP = "2026-12-04T17:03:11.123456Z"


def _messages(n: int, *, keys: list[bytes | None] | None = None,
              headers: list[Any] | None = None, topic: str = "events",
              offsets: list[int | str] | None = None) -> list[Message]:
    return [Message(topic, i % 3, offsets[i] if offsets else 1000 + i,
                    keys[i] if keys else f"k{i}".encode(), b"{}",
                    headers[i] if headers else ()) for i in range(n)]


@pytest.fixture(autouse=True, params=["compiled", "python"])
def fill_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the compiled template fill and with its Python equivalent."""
    if request.param == "python":
        monkeypatch.setattr(codec_module, "fill", fastcodec.fill_python)
    elif not fastcodec.COMPILED:
        pytest.skip("the compiled codec was not built (no C compiler)")
    return str(request.param)


def _assert_same(codec: MessageCodec, messages: list[Message], records: list[dict[str, Any]],
                 result: Result) -> None:
    batch = codec.encode_batch(messages, records, result, predicted_at=STAMP)
    # the passthrough fields given as JSON texts (as the row reader gives them) instead
    picks = [[orjson.dumps(r.get(name)) for r in records] for name in codec.passthrough]
    from_picks = codec.encode_batch(messages, None, result, predicted_at=STAMP, picks=picks)
    assert [o.value for o in from_picks] == [o.value for o in batch]
    one = [codec.encode(m, 0, r, p, predicted_at=STAMP)
           for m, r, p in zip(messages, records, codec.predictions(result), strict=True)]
    assert [o.value for o in batch] == [o.value for o in one]
    assert [o.headers for o in batch] == [o.headers for o in one]
    assert [o.key for o in batch] == [o.key for o in one]
    assert [o.source for o in batch] == messages
    # the record a SQL sink stores, parsed from the bytes, equals the one built as a dict
    # (orjson writes NaN as null, so compare what both serialize to)
    assert [orjson.dumps(o.record) for o in batch] == [orjson.dumps(o.record) for o in one]


def test_binary_classifier_outputs_with_passthrough() -> None:
    n = 50
    rng = np.random.default_rng(0)
    p = rng.random(n)
    result = Result(n, labels=(p > 0.5).astype(np.int64),
                    probabilities=np.column_stack([1 - p, p]), classes=[0, 1])
    records = [{"id": i, "x": float(i), "tag": f"t{i}"} for i in range(n)]
    _assert_same(MessageCodec(model="churn", version=3, passthrough=("id", "tag", "absent")),
                 _messages(n), records, result)


@pytest.mark.parametrize("labels", [
    np.array([-0.0, 1e16, 1e-7, 1e-5, np.nan, np.inf, -np.inf, 5e-324, 0.1, 2.5]),  # regression
    np.full(10, 7, dtype=np.int64),  # one class for all: written once
    np.arange(10, dtype=np.uint64) * 2**60,
    np.array([True, False] * 5),
    np.array([3], dtype=np.int64),  # a batch of one
], ids=["float64", "equal-ints", "uint64", "bool", "one-row"])
def test_label_arrays_are_written_as_their_values_would_be(labels: np.ndarray) -> None:
    n = len(labels)
    _assert_same(MessageCodec(model="m", version=None, passthrough=("id",)), _messages(n),
                 [{"id": i} for i in range(n)], Result(n, labels=labels))


@pytest.mark.parametrize("case", ["awkward-strings", "multiclass-strings", "nan-and-none"])
def test_values_that_defeat_the_bulk_split_are_still_written_exactly(case: str) -> None:
    n = 6
    keys: list[bytes | None] = [b"a,b", b'q"uote', "ünï,cødé".encode(), b"\xff\xfe bad utf-8",
                                None, b"100%"]
    records: list[dict[str, Any]] = [
        {"nested": {"a": [1, 2]}, "s": "x,y"}, {"nested": None, "s": '","'},
        {"nested": [], "s": "%s %b %%"}, {"nested": {"k": "v,w"}, "s": ""},
        {"nested": 1.5, "s": "\\"}, {"s": "\n"},
    ]
    if case == "awkward-strings":
        result = Result(n, labels=np.array(["yes,really", "no", 'a"b', "%d", "", "ok"],
                                           dtype=object))
    elif case == "multiclass-strings":
        probs = np.random.default_rng(1).dirichlet([1, 1, 1], size=n)
        result = Result(n, labels=np.array(["a,1", "b%", "c"] * 2, dtype=object),
                        probabilities=probs, classes=["a,1", "b%", "c"])
    else:
        probs = np.array([[math.nan, 1.0], [0.5, 0.5], [math.inf, 0.0]] * 2)
        result = Result(n, labels=None, probabilities=probs, classes=[False, True])
    codec = MessageCodec(model='m%"odel', version=None, passthrough=("nested", "s"))
    _assert_same(codec, _messages(n, keys=keys), records, result)


def test_request_ids_from_headers_and_string_offsets() -> None:
    n = 4
    headers = [(("request-id", b"given-1"),), (("other", b"x"),), (),
               (("request-id", b'with "quotes", commas'),)]
    messages = _messages(n, headers=headers, topic="orders stream/1",
                         offsets=["1700000000000-0", "1700000000000-1", 7, "8-0"])
    result = Result(n, labels=np.arange(n, dtype=np.float32) / 3)
    _assert_same(MessageCodec(model="reg", version=1), messages, [{}] * n, result)
    encoded = MessageCodec(model="reg", version=1).encode_batch(messages, [{}] * n, result,
                                                                predicted_at=STAMP)
    assert [o.headers[0][1] for o in encoded] == [
        b"given-1", b"orders stream/1/1/1700000000000-1", b"orders stream/1/2/7",
        b'with "quotes", commas']


def test_extra_model_outputs_are_fields_of_their_own() -> None:
    n = 5
    result = Result(n, labels=np.arange(n), outputs={
        "score": np.linspace(0, 1, n), "embedding": np.arange(n * 3).reshape(n, 3)})
    _assert_same(MessageCodec(model="t", version=2), _messages(n), [{}] * n, result)
    record = orjson.loads(MessageCodec(model="t", version=2).encode_batch(
        _messages(n), [{}] * n, result, predicted_at=STAMP)[1].value)
    assert record == {"prediction_id": "events-1-1001", "prediction": 1, "score": 0.25,
                      "embedding": [3, 4, 5], "model": "t", "version": 2, "predicted_at": STAMP}


def test_the_record_form_of_the_prediction_schema() -> None:
    from modelport.bundle.signature import Signature

    sig = Signature.from_dict({"inputs": [{"name": "x", "dtype": "float64"}],
                               "task": "classification", "classes": ["no", "yes"],
                               "outputs": [{"name": "label", "dtype": "string"},
                                           {"name": "probabilities", "dtype": "float64",
                                            "shape": [2]}]})
    codec = MessageCodec(model="churn", version=3, passthrough=("customer",), signature=sig)
    result = Result(2, labels=np.array(["yes", "no"], dtype=object),
                    probabilities=np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
                    classes=["no", "yes"])
    out = codec.encode_batch(_messages(2), [{"customer": "c1"}, {"customer": "c2"}], result,
                             predicted_at=STAMP)
    assert orjson.loads(out[0].value) == {
        "customer": "c1", "prediction_id": "events-0-1000", "prediction": "yes",
        "probabilities": {"no": 0.25, "yes": 0.75}, "model": "churn", "version": 3,
        "predicted_at": STAMP}
    assert list(orjson.loads(out[0].value)) == ["customer", "prediction_id", "prediction",
                                                "probabilities", "model", "version",
                                                "predicted_at"]
    # record 1 of a message holding a list of 2 records
    listed = codec.encode(_messages(1)[0], 1, {"customer": "c"}, codec.predictions(result)[1],
                          predicted_at=STAMP, of=2)
    assert orjson.loads(listed.value)["prediction_id"] == "events-0-1000-1"


def test_models_with_outputs_named_like_a_field_fall_back_to_the_record_encoder() -> None:
    n = 3
    result = Result(n, labels=np.arange(n), outputs={"version": np.array([7, 8, 9])})
    _assert_same(MessageCodec(model="t", version=2), _messages(n), [{}] * n, result)


def test_passthrough_fields_named_twice_are_written_once() -> None:
    codec = MessageCodec(model="t", version=1, passthrough=("id", "id"))
    out = codec.encode_batch(_messages(1), [{"id": 5}], Result(1, labels=np.array([1])),
                             predicted_at=STAMP)
    assert out[0].value.count(b'"id"') == 1


@pytest.mark.parametrize("values", [
    [1, 2.5, None, True, -3e300], ["a", "b,c", ""], [{"a": 1, "b": 2}, [1, 2]], ["x"], [],
])
def test_json_columns_match_one_dump_per_value(values: list[Any]) -> None:
    assert fastcodec.as_list(json_column(values)) == [orjson.dumps(v) for v in values]


def test_a_batch_of_outputs_reads_as_outputs_one_by_one() -> None:
    n = 4
    codec = MessageCodec(model="t", version=1, passthrough=("id",))
    messages = _messages(n)
    batch = codec.encode_batch(messages, [{"id": i} for i in range(n)],
                               Result(n, labels=np.arange(n)), predicted_at=STAMP)
    assert isinstance(batch, Outputs) and len(batch) == n
    listed = list(batch)
    assert [o.value for o in batch[1:3]] == [o.value for o in listed[1:3]]
    assert batch[2].value == listed[2].value and batch[2].source is messages[2]
    assert batch[-1].headers == [("request-id", b"events/0/1003")]
    assert batch[3].record is not None and batch[3].record["id"] == 3
    assert [o.index for o in batch] == [0] * n and not any(o.dead_letter for o in batch)


def test_a_polled_batch_kept_as_columns_reads_as_messages_and_encodes_the_same() -> None:
    n = 5
    plain = _messages(n, topic="orders")
    batch = Messages([m.topic for m in plain], [m.partition for m in plain],
                     [m.offset for m in plain], [m.key for m in plain],
                     [m.value for m in plain], [m.timestamp_ms for m in plain])
    assert len(batch) == n and batch[3] == plain[3] and batch[1:3] == plain[1:3]
    assert list(batch) == plain and batch[0].request_id == "orders/0/1000"
    assert column(batch, "offset") == column(plain, "offset") == [1000 + i for i in range(n)]
    result = Result(n, labels=np.arange(n), probabilities=np.full((n, 2), 0.5), classes=[0, 1])
    codec = MessageCodec(model="t", version=1, passthrough=("id",))
    records = [{"id": i} for i in range(n)]
    assert [o.value for o in codec.encode_batch(batch, records, result, predicted_at=STAMP)] == [
        o.value for o in codec.encode_batch(plain, records, result, predicted_at=STAMP)]


def test_keys_written_as_they_are_when_they_need_no_escaping() -> None:
    keys: list[bytes | None] = [b"100% [sure]", b"a,b/c ~!#", b"", b"{x}"]
    n = len(keys)
    result = Result(n, labels=np.arange(n))
    _assert_same(MessageCodec(model="t", version=1), _messages(n, keys=keys), [{}] * n, result)
