"""``MessageCodec``: JSON message bytes to input records, and predictions to output messages.

An input message holds one JSON object (one record) or a JSON list of objects. Each record gets
one output: the message key, the prediction (``label``, ``probabilities``), the model's name and
version, where the input came from (topic, partition, offset, index in the message), the
processing latency and the request id, plus the fields named in ``passthrough`` copied from the
input. The same flat record is what a SQL sink stores as a row.

>>> codec = MessageCodec(model="churn", version=3, passthrough=("customer",))
>>> msg = Message("events", 0, 41, b"c-7", b'{"customer": 7, "x": 1.5}')
>>> codec.decode(msg)
[{'customer': 7, 'x': 1.5}]
>>> out = codec.encode(msg, 0, {"customer": 7, "x": 1.5}, {"label": 1}, latency_ms=2.0)
>>> out.record["label"], out.record["input_offset"], out.record["customer"], out.key
(1, 41, 7, b'c-7')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from modelport.core.batch import Result
from modelport.errors import ConfigurationError
from modelport.stream.message import REQUEST_ID_HEADER, Message, Output

#: fields every output record has; passthrough fields may not reuse these names
RESERVED_FIELDS = (
    "key", "label", "probabilities", "outputs", "model", "model_version", "input_topic",
    "input_partition", "input_offset", "input_index", "latency_ms", "request_id",
)

#: why a message became a dead letter (the ``error`` header)
MALFORMED = "malformed"
INVALID_INPUT = "invalid-input"
PREDICTION_FAILED = "prediction-failed"
SINK_REFUSED = "sink-refused"


class MalformedMessageError(ValueError):
    """The message is not a JSON object or a non-empty list of JSON objects."""


class MessageCodec:
    def __init__(
        self,
        *,
        model: str,
        version: int | None,
        passthrough: Sequence[str] = (),
        dead_letter_topic: str | None = None,
    ) -> None:
        clash = [f for f in passthrough if f in RESERVED_FIELDS]
        if clash:
            raise ConfigurationError(
                f"passthrough field {clash[0]!r} collides with an output field; output records "
                f"already carry {', '.join(RESERVED_FIELDS)}"
            )
        self.model = model
        self.version = version
        self.passthrough = tuple(passthrough)
        self.dead_letter_topic = dead_letter_topic

    def decode(self, message: Message) -> list[dict[str, Any]]:
        """The records in ``message``; raises :class:`MalformedMessageError` if there are none."""
        if not message.value:
            raise MalformedMessageError("empty message; send a JSON object or a list of them")
        try:
            data = orjson.loads(message.value)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessageError(f"not valid JSON: {exc}") from None
        if isinstance(data, dict):
            return [data]
        if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
            return data
        raise MalformedMessageError(
            f"expected a JSON object or a non-empty list of objects, got {type(data).__name__}"
        )

    def encode(
        self,
        message: Message,
        index: int,
        record: Mapping[str, Any],
        prediction: Mapping[str, Any],
        *,
        latency_ms: float,
    ) -> Output:
        key = message.key
        request_id = message.request_id
        if index:
            request_id = f"{request_id}#{index}"
        out: dict[str, Any] = {
            "key": key.decode("utf-8", "replace") if key is not None else None,
            "label": prediction.get("label"),
            "probabilities": prediction.get("probabilities"),
            "model": self.model,
            "model_version": self.version,
            "input_topic": message.topic,
            "input_partition": message.partition,
            "input_offset": message.offset,
            "input_index": index,
            "latency_ms": round(latency_ms, 3),
            "request_id": request_id,
        }
        if len(prediction) > ("label" in prediction) + ("probabilities" in prediction):
            out["outputs"] = {k: v for k, v in prediction.items()
                              if k not in ("label", "probabilities")}
        for name in self.passthrough:
            out[name] = record.get(name)
        return Output(message, orjson.dumps(out), key,
                      [(REQUEST_ID_HEADER, request_id.encode())], out, None, index)

    def encode_batch(
        self,
        messages: Sequence[Message],
        records: Sequence[Mapping[str, Any]],
        result: Result,
        *,
        latency_ms: float,
    ) -> list[Output]:
        """``encode`` for messages of one record each, with ``result`` row ``i`` for message ``i``.

        The same outputs as ``encode(messages[i], 0, records[i], row i of result)``, built column
        by column: no per-row prediction dicts and no per-message method calls.
        """
        if "label" in result.outputs or "probabilities" in result.outputs:  # they override
            return [self.encode(m, 0, r, p, latency_ms=latency_ms) for m, r, p in zip(
                messages, records, result.to_records(), strict=True)]
        n = len(messages)
        labels: list[Any] = result.labels.tolist() if result.labels is not None else [None] * n
        probabilities: list[Any]
        if result.probabilities is not None and result.classes is not None:
            names = [str(c) for c in result.classes]
            rows = result.probabilities.tolist()
            if len(names) == 2:  # binary classifiers: a dict display beats dict(zip())
                first, second = names
                probabilities = [{first: a, second: b} for a, b in rows]
            else:
                probabilities = [dict(zip(names, row, strict=True)) for row in rows]
        else:
            probabilities = [None] * n
        columns = [(k, v.tolist()) for k, v in result.outputs.items()]
        extra: list[Any] = ([{k: col[i] for k, col in columns} for i in range(n)]
                            if columns else [None] * n)
        model, version, latency = self.model, self.version, round(latency_ms, 3)
        passthrough, dumps, header = self.passthrough, orjson.dumps, REQUEST_ID_HEADER
        outputs: list[Output] = []
        append = outputs.append
        for message, record, label, probs, more in zip(
                messages, records, labels, probabilities, extra, strict=True):
            key = message.key
            request_id = (message.request_id if message.headers else
                          f"{message.topic}/{message.partition}/{message.offset}")
            out: dict[str, Any] = {
                "key": key.decode("utf-8", "replace") if key is not None else None,
                "label": label,
                "probabilities": probs,
                "model": model,
                "model_version": version,
                "input_topic": message.topic,
                "input_partition": message.partition,
                "input_offset": message.offset,
                "input_index": 0,
                "latency_ms": latency,
                "request_id": request_id,
            }
            if more is not None:
                out["outputs"] = more
            for name in passthrough:
                out[name] = record.get(name)
            append(Output(message, dumps(out), key, [(header, request_id.encode())], out,
                          None, 0))
        return outputs

    def dead_letter(self, message: Message, error: str, detail: str) -> Output:
        """The original message, unchanged, with headers saying what failed and where it was."""
        headers = [
            ("error", error.encode()),
            ("error-message", detail.encode("utf-8", "replace")[:1000]),
            ("source-topic", message.topic.encode()),
            ("source-partition", str(message.partition).encode()),
            ("source-offset", str(message.offset).encode()),
            (REQUEST_ID_HEADER, message.request_id.encode()),
        ]
        headers += [(k, v) for k, v in message.headers
                    if k not in {h for h, _ in headers}]
        return Output(
            source=message,
            value=message.value or b"",
            key=message.key,
            headers=headers,
            topic=self.dead_letter_topic,
            dead_letter=True,
        )
