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

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from modelport.core.batch import Result
from modelport.errors import ConfigurationError
from modelport.stream.message import (
    REQUEST_ID_HEADER,
    Message,
    Output,
    Outputs,
    column,
    has_headers,
)

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


#: bytes that are their own JSON string content: printable ASCII but for ``"`` and ``\``
_PLAIN_TEXT = re.compile(rb"[ !#-\[\]-~]*")


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
        self.passthrough = tuple(dict.fromkeys(passthrough))  # each field once, in order
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
    ) -> Sequence[Output]:
        """``encode`` for messages of one record each, with ``result`` row ``i`` for message ``i``.

        The same outputs, byte for byte, as ``encode(messages[i], 0, records[i], row i of
        result)``, built column by column: each field's values are serialized in one call
        (:func:`json_values`) and poured into one bytes template per batch, so there is no
        per-row dict, no per-row ``orjson.dumps`` and no object per message (:class:`Outputs`).
        """
        names = [str(c) for c in result.classes] if result.classes is not None else []
        if ("label" in result.outputs or "probabilities" in result.outputs  # they override
                or len(set(names)) != len(names)):  # dict() would merge equal names
            return [self.encode(m, 0, r, p, latency_ms=latency_ms) for m, r, p in zip(
                messages, records, result.to_records(), strict=True)]
        columns: list[list[bytes]] = []  # one per %b of the template, in order

        def field(name: str, values: list[Any] | None, *, first: bool = False) -> str:
            """The template text for one field; its values become the next column."""
            text = ("{" if first else ",") + _literal(name) + ":"
            if values is None:
                return text + "null"
            if _same(values):
                return text + _literal(values[0])
            columns.append(json_values(values))
            return text + "%b"

        keys = column(messages, "key")
        if None not in keys and _PLAIN_TEXT.fullmatch(b"".join(keys)):  # written as they are
            parts = ['{"key":"%b"']
            columns.append(keys)
        else:
            parts = [field("key", [k.decode("utf-8", "replace") if k is not None else None
                                   for k in keys], first=True)]
        parts.append(field("label", result.labels.tolist() if result.labels is not None
                           else None))
        if result.probabilities is not None and result.classes is not None:
            probabilities = result.probabilities
            inner = ",".join(_literal(name) + ":%b" for name in names)
            parts.append(',"probabilities":{' + inner + "}")
            columns.extend(json_values(probabilities[:, j].tolist()) for j in range(len(names)))
        else:
            parts.append(',"probabilities":null')
        topics, offsets = column(messages, "topic"), column(messages, "offset")
        partitions_json = json_values(column(messages, "partition"))
        offsets_json = json_values(offsets)
        parts += [
            ',"model":' + _literal(self.model),
            ',"model_version":' + _literal(self.version),
            field("input_topic", topics),
            ',"input_partition":%b,"input_offset":%b,"input_index":0',
            ',"latency_ms":' + _literal(round(latency_ms, 3)),
        ]
        columns += [partitions_json, offsets_json]
        request_ids = None if has_headers(messages) else _positions(
            topics, partitions_json, offsets, offsets_json)
        if request_ids is not None:  # plain text: written between quotes as they are
            parts.append(',"request_id":"%b"')
            columns.append(request_ids)
        else:
            given = [m.request_id for m in messages]
            parts.append(field("request_id", given))
            request_ids = [r.encode() for r in given]
        if result.outputs:
            inner = ",".join(_literal(name) + ":%b" for name in result.outputs)
            parts.append(',"outputs":{' + inner + "}")
            columns.extend(json_values(v.tolist()) for v in result.outputs.values())
        parts += [field(name, [r.get(name) for r in records]) for name in self.passthrough]
        template = ("".join(parts) + "}").encode()
        values = list(map(template.__mod__, zip(*columns, strict=True)))
        return Outputs(messages, values, keys, request_ids)

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


def json_values(values: list[Any]) -> list[bytes]:
    """Each value as ``orjson.dumps(value)`` writes it, serialized in one call where possible.

    The list is dumped once and split at its commas when it holds exactly ``len - 1`` of them,
    that is when no value holds a comma of its own (numbers, ``null``, booleans, most strings):
    then every comma is a separator. Otherwise each value is dumped on its own.
    """
    if not values:
        return []
    body = orjson.dumps(values)[1:-1]
    if body.count(b",") == len(values) - 1:
        return body.split(b",")
    return list(map(orjson.dumps, values))


def _positions(topics: list[str], partitions_json: list[bytes], offsets: list[int | str],
               offsets_json: list[bytes]) -> list[bytes] | None:
    """``topic/partition/offset`` of each message as bytes that need no JSON escaping, joined
    from the numbers' JSON; ``None`` if a topic or offset could need escaping (then the
    request ids are escaped one by one)."""
    encoded = {t: t.encode() for t in set(topics)}
    if (not all(map(_PLAIN_TEXT.fullmatch, encoded.values()))
            or set(map(type, offsets)) != {int}):
        return None
    prefixes = [encoded[topics[0]]] * len(topics) if len(encoded) == 1 else list(map(
        encoded.__getitem__, topics))
    return list(map(b"/".join, zip(prefixes, partitions_json, offsets_json, strict=True)))


def _same(values: list[Any]) -> bool:
    """All of ``values`` are one string, integer, boolean or null (written once, in the template).

    Floats are not: ``0.0 == -0.0`` but their JSON differs; nor ``1`` and ``True`` (types differ).
    """
    first = values[0]
    kind = type(first)
    return (len(values) > 1 and kind in (str, int, bool, type(None))
            and values.count(first) == len(values) and set(map(type, values)) == {kind})


def _literal(value: Any) -> str:
    """``value`` as JSON text fit for a %-template (a literal ``%`` doubled)."""
    return orjson.dumps(value).decode().replace("%", "%%")
