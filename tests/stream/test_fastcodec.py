"""The compiled codec takes a batch only when it reads it exactly as the Python path would.

The reference is ``orjson.loads`` then ``Signature.coerce`` (what the worker does without the
compiled codec): wherever the row reader gives a matrix, the reference gives the same bits and
the same passthrough texts; wherever the reference refuses a message, the reader returns
``None`` (so the worker's Python path dead-letters it and says why).
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import orjson
import pytest

from modelport.bundle.signature import ColumnSpec, Signature
from modelport.errors import ModelportError
from modelport.stream import fastcodec
from modelport.stream.fastcodec import RowReader

pytestmark = pytest.mark.skipif(not fastcodec.COMPILED,
                                reason="the compiled codec was not built (no C compiler)")

NAMES = ("a", "b", "c")
SIGNATURE = Signature(inputs=tuple(ColumnSpec(n, "float64") for n in NAMES))
PICKS = ("id", "tag", "b")


def _reference(values: list[Any], *, allow_extra: bool = True, signature: Signature = SIGNATURE,
               picks: tuple[str, ...] = PICKS) -> tuple[np.ndarray, list[list[bytes]]] | None:
    try:
        records = list(map(orjson.loads, values))
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not all(isinstance(r, dict) for r in records):
        return None
    try:
        batch = signature.coerce(records, allow_extra=allow_extra)
    except ModelportError:
        return None
    return batch.to_matrix(), [[orjson.dumps(r.get(n)) for r in records] for n in picks]


def _read(values: list[Any], *, allow_extra: bool = True, signature: Signature = SIGNATURE,
          picks: tuple[str, ...] = PICKS) -> tuple[np.ndarray, list[list[bytes]]] | None:
    read = RowReader(signature, picks, allow_extra=allow_extra).read(values)
    return None if read is None else (read[0].to_matrix(), list(map(fastcodec.as_list, read[1])))


def _assert_same(values: list[Any], **kwargs: Any) -> None:
    got, want = _read(values, **kwargs), _reference(values, **kwargs)
    assert got is not None and want is not None
    assert got[0].dtype == np.float64
    assert got[0].view(np.uint64).tolist() == want[0].view(np.uint64).tolist()  # same bits
    assert got[1] == want[1]


def _number_texts(rng: random.Random) -> list[str]:
    """Number texts of every form JSON allows, across the double's range."""
    out = []
    for _ in range(400):
        x = rng.uniform(-1, 1) * 10 ** rng.randint(-330, 308)
        out += [repr(x), orjson.dumps(x).decode(), f"{x:.17e}", f"{x:.3E}"]
        if abs(x) < 1e30:
            out.append(f"{x:.{rng.randint(1, 25)}f}")
        out.append(str(rng.randint(-10**18 + 1, 10**18 - 1)))
        out.append(f"{rng.randint(0, 999)}.{rng.randint(0, 10**9):09d}e{rng.randint(-30, 30)}")
    out += ["0", "-0", "0.0", "-0.0", "1e-400", "-1e-400", "4.9e-324", "2.2250738585072011e-308",
            "1.7976931348623157e308", "9007199254740993.0", "123456789012345678",
            "-123456789012345678", "0.1e1", "1E5", "1e+5", "1.5E-3", "100e-2",
            "1.00000000000000011102230246251565404236316680908203125",
            "0.000000000000000000000001", "1000000000000000000000.0", "1234567.0"]
    return [t for t in out if "inf" not in t and "nan" not in t]


def test_numbers_of_every_form_read_to_the_same_double() -> None:
    rng = random.Random(7)
    texts = _number_texts(rng)
    values = []
    for i in range(0, len(texts) - 2, 3):
        a, b, c = texts[i:i + 3]
        values.append(f'{{"a": {a}, "b":{b} ,"c":{c}, "id": {i}}}'.encode())
    _assert_same(values, picks=("id",))  # (a float passthrough is left to the Python path)


def test_passthrough_texts_and_extra_fields_of_every_kind() -> None:
    extras = ['"x"', '"ünï,cødé"', '"q\\"uote\\n\\u00e9\\ud83d\\ude00"', "[1, [2, {}], []]",
              '{"k": {"n": [true, false, null]}}', "-1.5e-7", "123456789012345678901234567890",
              "true", "null", '""', "[]", "{}"]
    tags = ['"t1"', '"plain text, with comma"', "7", "-42", "true", "false", "null",
            "123456789012345678"]
    values = []
    for i in range(48):
        fields = [f'"a": {i}.5', f'"b": {-i}', f'"c": {i * 1e-3!r}', f'"id": {i}',
                  f'"extra{i % 5}": {extras[i % len(extras)]}']
        if i % 4:
            fields.append(f'"tag": {tags[i % len(tags)]}')  # else: absent, written as null
        random.Random(i).shuffle(fields)
        space = [" ", "", "\n\t", "\r\n "][i % 4]
        values.append(("{" + space + ("," + space).join(fields) + space + "}").encode())
    _assert_same(values)
    read = RowReader(SIGNATURE, PICKS, allow_extra=True).read(values)
    assert read is not None
    ids, tags, b = read[1]  # joined with commas, but for the tags, one of which holds one
    assert isinstance(ids, bytes) and isinstance(tags, list) and isinstance(b, bytes)


def test_a_float32_signature_gets_the_float_matrix_it_casts() -> None:
    signature = Signature(inputs=tuple(ColumnSpec(n, "float32") for n in NAMES))
    values = [b'{"a": 0.1, "b": 1e30, "c": -3}', b'{"a": 1e-50, "b": 2, "c": 0.333}']
    read = RowReader(signature, (), allow_extra=True).read(values)
    assert read is not None
    reference = signature.coerce(list(map(orjson.loads, values)))
    assert read[0].to_matrix().dtype == np.float32
    assert read[0].to_matrix().tobytes() == reference.to_matrix().tobytes()


REFUSED = [
    (b"", "empty"),
    (b"not json", "malformed"),
    (b'{"a": 1, "b": 2, "c": 3', "truncated"),
    (b'{"a": 1, "b": 2, "c": 3}}', "trailing text"),
    (b'{"a": 1, "b": 2, "c": 3} {"a": 1, "b": 2, "c": 3}', "two objects"),
    (b'[{"a": 1, "b": 2, "c": 3}]', "a list of records (the general path splits it)"),
    (b'{"a": 1, "b": 2}', "an input missing"),
    (b'{"a": 1, "b": 2, "c": null}', "a null input"),
    (b'{"a": 1, "b": 2, "c": "3"}', "a string input"),
    (b'{"a": 1, "b": 2, "c": true}', "a boolean input"),
    (b'{"a": 1, "b": 2, "c": [3]}', "a list input"),
    (b'{"a": 1, "b": 2, "c": 3, "a": 4}', "a repeated input (the last would win)"),
    (b'{"a": 1, "b": 2, "c": 3, "id": 1, "id": 2}', "a repeated passthrough field"),
    (b'{"a": 1, "b": 2, "c": 1e400}', "a number beyond the double's range"),
    (b'{"a": 1, "b": 2, "c": 3, "x": -1e999}', "an extra number beyond the range"),
    (b'{"a": 1, "b": 2, "c": 12345678901234567890}', "an integer of more than 18 digits"),
    (b'{"a": 01, "b": 2, "c": 3}', "a leading zero"),
    (b'{"a": 1., "b": 2, "c": 3}', "a bare decimal point"),
    (b'{"a": +1, "b": 2, "c": 3}', "a plus sign"),
    (b'{"a": NaN, "b": 2, "c": 3}', "NaN"),
    (b'{"\\u0061": 1, "b": 2, "c": 3}', "an escaped name"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "\\ud800"}', "a lone surrogate"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "\\ude00\\ud83d"}', "surrogates in the wrong order"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "\\ud83d\\u0041"}', "a high surrogate without a pair"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "\xff"}', "bad UTF-8"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "\xed\xa0\x80"}', "an encoded surrogate"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "\xc0\xaf"}', "an overlong encoding"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "tab\there"}', "a raw control character"),
    (b'{"a": 1, "b": 2, "c": 3, "x": "\\q"}', "an unknown escape"),
    (b'{"a": 1, "b": 2, "c": 3, "x": [1, 2,]}', "a trailing comma"),
    (b'{"a": 1, "b": 2, "c": 3, "x": ' + b"[" * 70 + b"]" * 70 + b"}", "deep nesting"),
    (b'{"a": 1, "b": 2, "c": 3, "tag": "t\\u00e9"}', "a passthrough string with escapes"),
    (b'{"a": 1, "b": 2, "c": 3, "tag": 1.5}', "a passthrough float (orjson re-formats it)"),
    (b'{"a": 1, "b": 2, "c": 3, "tag": -0}', "a passthrough -0 (written as 0)"),
    (b'{"a": 1, "b": 2, "c": 3, "tag": [1]}', "a passthrough list"),
    (b'\xef\xbb\xbf{"a": 1, "b": 2, "c": 3}', "a byte order mark"),
    (None, "no value"),
]


@pytest.mark.parametrize(("value", "why"), REFUSED, ids=[w for _, w in REFUSED])
def test_anything_else_is_left_to_the_python_path(value: bytes | None, why: str) -> None:
    good = b'{"a": 1, "b": 2, "c": 3}'
    assert _read([good]) is not None
    assert _read([good, value, good]) is None, why


def test_extra_fields_are_refused_when_the_model_takes_only_its_inputs() -> None:
    assert _read([b'{"a": 1, "b": 2, "c": 3, "x": 4}'], allow_extra=False) is None
    assert _read([b'{"a": 1, "b": 2, "c": 3, "id": 4}'], allow_extra=False) is None  # a pick too
    _assert_same([b'{"a": 1, "b": 2, "c": 3}'], allow_extra=False)


def test_signatures_it_does_not_read_are_left_alone() -> None:
    mixed = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("s", "string")))
    assert not RowReader(mixed, (), allow_extra=True).enabled
    assert RowReader(mixed, (), allow_extra=True).read([b'{"a": 1, "s": "x"}']) is None


def test_whatever_it_takes_from_mangled_messages_the_reference_reads_the_same() -> None:
    """Random edits of valid messages: where the reader takes a batch, it agrees bit for bit."""
    rng = random.Random(11)
    base = [json.dumps({"a": rng.uniform(-9, 9), "b": rng.randint(-99, 99), "c": 1e-7 * i,
                        "id": i, "tag": f"t{i}", "x": {"y": [1, "z"]}}).encode()
            for i in range(50)]
    inputs_only = [json.dumps({"a": rng.uniform(-9, 9), "b": i, "c": 0.5}).encode()
                   for i in range(50)]
    alphabet = b'{}[]":,.-+eE0123456789 \\abtnu\xc3\xa9\xff'
    taken = refused = 0
    for attempt in range(8000):
        allow_extra = attempt % 4 != 0  # a quarter for a model that takes its inputs only
        value = bytearray(rng.choice(base if allow_extra else base + inputs_only))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(value))
            action = rng.randrange(3)
            if action == 0:
                value[at] = rng.choice(alphabet)
            elif action == 1:
                value.insert(at, rng.choice(alphabet))
            else:
                del value[at]
        got = _read([bytes(value)], allow_extra=allow_extra)
        want = _reference([bytes(value)], allow_extra=allow_extra)
        if got is None:
            refused += 1
            continue
        taken += 1
        assert want is not None, bytes(value)
        assert got[0].view(np.uint64).tolist() == want[0].view(np.uint64).tolist(), bytes(value)
        assert got[1] == want[1], bytes(value)
    assert taken > 300 and refused > 300  # both sides of the line were exercised


def test_fill_matches_its_python_equivalent() -> None:
    pieces = (b'{"k":"', b'","p":', b",\"pct\":\"100%\",\"s\":\"%s %b\"}")
    columns = [[b"k1", b"", b"%b"], [b"1", b"-2.5e-7", b'"%%"']]
    assert fastcodec.fill(pieces, columns) == fastcodec.fill_python(pieces, columns)
    assert fastcodec.fill(pieces, columns)[2] == (
        b'{"k":"%b","p":"%%","pct":"100%","s":"%s %b"}')
    joined = [b"k1,,%b", b'1,-2.5e-7,"%%"']  # the same texts, as commas join them
    assert fastcodec.fill(pieces, joined) == fastcodec.fill(pieces, columns)
    assert fastcodec.fill_python(pieces, joined) == fastcodec.fill(pieces, columns)
    assert fastcodec.fill((b"<", b">"), [b"7"]) == [b"<7>"]  # one row: no comma
    for implementation in (fastcodec.fill, fastcodec.fill_python):
        with pytest.raises(ValueError, match="differ in length"):
            implementation(pieces, [b"a,b", [b"1", b"2", b"3"]])
    with pytest.raises(ValueError, match="one piece more"):
        fastcodec.fill(pieces[:2], columns)
    with pytest.raises(ValueError, match="differ in length"):
        fastcodec.fill(pieces, [[b"a"], [b"b", b"c"]])
