"""``MessageCodec``: JSON message bytes to input records, and predictions to output messages.

An input message holds one JSON object (one record) or a JSON list of objects. Each record gets
one output message in the record form of :mod:`modelport.core.schema`: the fields named in
``passthrough`` copied from the input first, then ``prediction_id`` (``<topic>-<partition>-
<offset>``, with ``-<i>`` for record ``i`` of a list message: the same on every redelivery),
``prediction``, ``probabilities`` (classifiers), the model's further outputs, ``model``,
``version`` and ``predicted_at``. The output keeps the input's message key and carries the
request id in a header. The same record, flattened, is what a SQL sink stores as a row.

>>> codec = MessageCodec(model="churn", version=3, passthrough=("customer",))
>>> msg = Message("events", 0, 41, b"c-7", b'{"customer": 7, "x": 1.5}')
>>> codec.decode(msg)
[{'customer': 7, 'x': 1.5}]
>>> out = codec.encode(msg, 0, {"customer": 7, "x": 1.5}, {"prediction": 1},
...                    predicted_at="2026-12-04T17:03:11.123456Z")
>>> out.value
b'{"customer":7,"prediction_id":"events-0-41","prediction":1,"model":"churn","version":3,"predicted_at":"2026-12-04T17:03:11.123456Z"}'
>>> out.key
b'c-7'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelport.core.batch import Array, Result
from modelport.core.schema import PredictionSchema, timestamp_text
from modelport.errors import ConfigurationError
from modelport.stream.fastcodec import Column, fill
from modelport.stream.message import (
    REQUEST_ID_HEADER,
    Message,
    Output,
    Outputs,
    column,
    has_headers,
)

if TYPE_CHECKING:
    from modelport.bundle.signature import Signature

#: fields every output record has; passthrough fields may not reuse these names
RESERVED_FIELDS = ("prediction_id", "prediction", "probabilities", "model", "version",
                   "predicted_at")

#: why a message became a dead letter (the ``error`` header)
MALFORMED = "malformed"
INVALID_INPUT = "invalid-input"
PREDICTION_FAILED = "prediction-failed"
SINK_REFUSED = "sink-refused"


#: bytes that are their own JSON string content: printable ASCII but for ``"`` and ``\``
_PLAIN_TEXT = re.compile(rb"[ !#-\[\]-~]*")


class MalformedMessageError(ValueError):
    """The message is not a JSON object or a non-empty list of JSON objects."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MessageCodec:
    """Encodes one model's outputs; ``signature`` (the model's) names the primary output and
    the further outputs as :class:`~modelport.core.schema.PredictionSchema` does."""

    def __init__(
        self,
        *,
        model: str,
        version: int | None,
        passthrough: Sequence[str] = (),
        dead_letter_topic: str | None = None,
        signature: Signature | None = None,
        passthrough_extra: bool = False,
        now: Callable[[], datetime] = _utc_now,
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
        self.schema = PredictionSchema.of(signature) if signature is not None else None
        #: with ``passthrough_extra``, every input field the model does not take is copied too
        self.inputs = frozenset(signature.input_names) \
            if passthrough_extra and signature is not None else None
        self.now = now

    def stamp(self) -> str:
        """``predicted_at`` for outputs made now."""
        return timestamp_text(self.now())

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

    # ------------------------------------------------------------------ predictions
    def _primary(self, result: Result) -> Array | None:
        if self.schema is not None:
            return self.schema.primary_values(result)
        return result.labels

    def _extras(self, result: Result) -> list[tuple[str, Array]]:
        primary = self.schema.primary if self.schema is not None else None
        skip = {primary} if result.labels is None and primary is not None else set()
        return [(k, v) for k, v in result.outputs.items() if k not in skip]

    def predictions(self, result: Result) -> list[dict[str, Any]]:
        """Each row's ``prediction``, ``probabilities`` and further outputs, in that order."""
        n = result.n_rows
        primary = self._primary(result)
        rows: list[dict[str, Any]] = [
            {"prediction": v} for v in (primary.tolist() if primary is not None else [None] * n)]
        if result.probabilities is not None and result.classes is not None:
            names = [str(c) for c in result.classes]
            probs = np.asarray(result.probabilities, dtype=np.float64).tolist()
            for row, p in zip(rows, probs, strict=True):
                row["probabilities"] = dict(zip(names, p, strict=True))
        for name, values in self._extras(result):
            for row, value in zip(rows, values.tolist(), strict=True):
                row[name] = value
        return rows

    def encode(
        self,
        message: Message,
        index: int,
        record: Mapping[str, Any],
        prediction: Mapping[str, Any],
        *,
        predicted_at: str | None = None,
        of: int = 1,
    ) -> Output:
        """The output for record ``index`` of ``of`` in ``message`` (``prediction``: one row of
        :meth:`predictions`)."""
        key = message.key
        request_id = message.request_id
        if index:
            request_id = f"{request_id}#{index}"
        prediction_id = f"{message.topic}-{message.partition}-{message.offset}"
        if of > 1:
            prediction_id = f"{prediction_id}-{index}"
        out: dict[str, Any] = {name: record.get(name) for name in self.passthrough}
        if self.inputs is not None:
            out.update((k, v) for k, v in record.items()
                       if k not in self.inputs and k not in RESERVED_FIELDS)
        out["prediction_id"] = prediction_id
        out.update(prediction)
        out["model"] = self.model
        out["version"] = self.version
        out["predicted_at"] = predicted_at if predicted_at is not None else self.stamp()
        return Output(message, orjson.dumps(out), key,
                      [(REQUEST_ID_HEADER, request_id.encode())], out, None, index)

    def encode_batch(
        self,
        messages: Sequence[Message],
        records: Sequence[Mapping[str, Any]] | None,
        result: Result,
        *,
        predicted_at: str | None = None,
        picks: Sequence[Column] | None = None,
    ) -> Sequence[Output]:
        """``encode`` for messages of one record each, with ``result`` row ``i`` for message ``i``.

        The same outputs, byte for byte, as ``encode(messages[i], 0, records[i], row i of
        predictions(result))``, built column by column: each field's values are serialized in
        one call (:func:`json_column`) and written into one template per batch
        (:func:`~modelport.stream.fastcodec.fill`), so there is no per-row dict, no per-row
        ``orjson.dumps`` and no object per message (:class:`Outputs`). ``picks`` gives the
        passthrough fields' JSON texts instead of ``records``, one column per field, when the
        records were never parsed (:class:`~modelport.stream.fastcodec.RowReader`).
        """
        stamp = predicted_at if predicted_at is not None else self.stamp()
        names = [str(c) for c in result.classes] if result.classes is not None else []
        extras = self._extras(result)
        taken = {*self.passthrough, *RESERVED_FIELDS}
        if (self.inputs is not None  # the copied fields differ from record to record
                or len(set(names)) != len(names)  # dict() would merge equal names
                or any(name in taken for name, _ in extras)  # or overwrite a field
                or len({name for name, _ in extras}) != len(extras)):
            if records is None:
                records = list(map(orjson.loads, column(messages, "value")))
            return [self.encode(m, 0, r, p, predicted_at=stamp) for m, r, p in zip(
                messages, records, self.predictions(result), strict=True)]
        out = _Template()
        out.text("{")
        keys = column(messages, "key")
        separator = ""
        if picks is not None:
            for name, texts in zip(self.passthrough, picks, strict=True):
                out.text(f"{separator}{_json(name)}:")
                out.gap(texts)
                separator = ","
        else:
            assert records is not None
            for name in self.passthrough:
                out.field(separator, name, [r.get(name) for r in records])
                separator = ","
        topics, offsets = column(messages, "topic"), column(messages, "offset")
        partitions_json = json_column(column(messages, "partition"))
        offsets_json = json_column(offsets)
        ids = _positions(topics, partitions_json, offsets, offsets_json, b"-")
        if ids is not None:  # plain text: written between quotes as they are
            out.text(f'{separator}"prediction_id":"')
            out.gap(ids)
            out.text('"')
        else:
            out.field(separator, "prediction_id",
                      [f"{m.topic}-{m.partition}-{m.offset}" for m in messages])
        out.field(",", "prediction", self._primary(result))
        if result.probabilities is not None and result.classes is not None:
            probabilities = np.ascontiguousarray(result.probabilities.T, dtype=np.float64)
            out.object("probabilities", zip(names, probabilities, strict=True))
        for name, values in extras:
            out.field(",", name, values)
        out.text(f',"model":{_json(self.model)},"version":{_json(self.version)}')
        out.text(f',"predicted_at":{_json(stamp)}')
        out.text("}")
        request_ids = None if has_headers(messages) else _positions(
            topics, partitions_json, offsets, offsets_json, b"/")
        if request_ids is None:
            request_ids = [m.request_id.encode() for m in messages]
        return Outputs(messages, out.fill(), keys, request_ids)

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


def json_column(values: list[Any]) -> Column:
    """Each value as ``orjson.dumps(value)`` writes it, serialized in one call where possible.

    The list is dumped once, and its body (brackets off) is the column when it holds exactly
    ``len - 1`` commas, that is when no value holds a comma of its own (numbers, ``null``,
    booleans, most strings): then every comma is a separator, and :func:`fill` reads the texts
    between them without a bytes object each. Otherwise each value is dumped on its own.
    """
    if not values:
        return []
    body = orjson.dumps(values)[1:-1]
    if body.count(b",") == len(values) - 1:
        return body
    return list(map(orjson.dumps, values))


def _positions(topics: list[str], partitions_json: Column, offsets: list[int | str],
               offsets_json: Column, sep: bytes) -> list[bytes] | None:
    """``topic<sep>partition<sep>offset`` of each message as bytes that need no JSON escaping,
    made from the numbers' JSON; ``None`` if a topic or offset could need escaping (then the ids
    are escaped one by one)."""
    encoded = {t: t.encode() for t in set(topics)}
    if (not all(map(_PLAIN_TEXT.fullmatch, encoded.values()))
            or set(map(type, offsets)) != {int}):
        return None
    if len(encoded) == 1:
        return fill((encoded[topics[0]] + sep, sep, b""), [partitions_json, offsets_json])
    prefixes = [encoded[t] + sep for t in topics]
    return fill((b"", b"", sep, b""), [prefixes, partitions_json, offsets_json])


def _same(values: list[Any]) -> bool:
    """All of ``values`` are one string, integer, boolean or null (written once, in the template).

    Floats are not: ``0.0 == -0.0`` but their JSON differs; nor ``1`` and ``True`` (types differ).
    """
    first = values[0]
    kind = type(first)
    return (len(values) > 1 and kind in (str, int, bool, type(None))
            and values.count(first) == len(values) and set(map(type, values)) == {kind})


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class _Template:
    """An output message as literal JSON text with gaps, each gap filled from one column of
    JSON texts (one per message)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.columns: list[Column] = []
        self._text: list[str] = []

    def text(self, text: str) -> None:
        self._text.append(text)

    def gap(self, column: Column) -> None:
        self.pieces.append("".join(self._text).encode())
        self._text = []
        self.columns.append(column)

    def field(self, before: str, name: str, values: list[Any] | np.ndarray | None) -> None:
        """``before`` (a separator, or nothing for an object's first field), the name, and the
        values: ``null`` for none, written once when all the same, else a gap."""
        self.text(before + _json(name) + ":")
        if values is None:
            self.text("null")
            return
        # orjson writes 64-bit number arrays as it writes their lists, without a Python object
        # per value (not float32: it would write float32 values, the list float64)
        if (isinstance(values, np.ndarray) and values.ndim == 1
                and values.dtype.kind in "iuf" and values.dtype.itemsize == 8
                and (values.dtype.kind == "f" or values.min() != values.max())):
            self.gap(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1])
            return
        listed: list[Any] = values.tolist() if isinstance(values, np.ndarray) else values
        if _same(listed):  # (so are equal integers of an array)
            self.text(_json(listed[0]))
        else:
            self.gap(json_column(listed))

    def object(self, name: str, fields: Iterable[tuple[str, list[Any] | np.ndarray]]) -> None:
        """``,"name":{…}`` holding one :meth:`field` per item of ``fields``."""
        self.text("," + _json(name) + ":{")
        for j, (key, values) in enumerate(fields):
            self.field("," if j else "", key, values)
        self.text("}")

    def fill(self) -> list[bytes]:
        return fill((*self.pieces, "".join(self._text).encode()), self.columns)
