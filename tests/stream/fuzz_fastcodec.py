"""Coverage-guided fuzzing of the stream worker's C reader (``_fastcodec.c``) with atheris.

Each input is split into a batch of messages (``rows``) and output pieces (``fill``). ``rows``
must never crash (AddressSanitizer aborts on any out-of-bounds read or write), must never raise
for message content, and wherever it takes a batch it must read exactly what ``orjson.loads`` +
``Signature.coerce`` read (the same bits, the same passthrough texts). ``fill`` must equal its
pure-Python equivalent.

Bounded run (tests/stream/test_fastcodec_fuzz.py)::

    python tests/stream/fuzz_fastcodec.py -runs=20000 -seed=1

The long run under AddressSanitizer (see scripts/fuzz_fastcodec.sh) builds the extension with
``clang -fsanitize=address,fuzzer-no-link`` and points ``FASTCODEC_DIR`` at it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["modelport.stream.fastcodec"]):
    import numpy as np
    import orjson

    from modelport.bundle.signature import ColumnSpec, Signature
    from modelport.errors import ModelportError
    from modelport.stream import fastcodec


def _compiled() -> Any:
    where = os.environ.get("FASTCODEC_DIR")
    if not where:
        from modelport.stream import _fastcodec

        return _fastcodec
    path = next(os.path.join(where, f) for f in os.listdir(where)
                if f.startswith("_fastcodec") and f.endswith(".so"))
    spec = importlib.util.spec_from_file_location("modelport.stream._fastcodec", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CODEC = _compiled()
NAMES = (b"a", b"b", b"c", b"", b"a\xc3\xa9")
PICKS = (b"id", b"tag", b"b", b"x")


def _reference(values: list[bytes], names: tuple[bytes, ...], picks: tuple[bytes, ...],
               allow_extra: bool) -> tuple[np.ndarray, list[list[bytes]]] | None:
    try:
        records = [orjson.loads(v) for v in values]
    except orjson.JSONDecodeError:
        return None
    if not all(isinstance(r, dict) for r in records):
        return None
    try:
        signature = Signature(inputs=tuple(ColumnSpec(n.decode(), "float64") for n in names))
        batch = signature.coerce(records, allow_extra=allow_extra)
    except (ModelportError, UnicodeDecodeError):
        return None
    return batch.to_matrix(), [[orjson.dumps(r.get(p.decode())) for r in records] for p in picks]


def check_rows(data: bytes) -> None:
    """``data``: a byte choosing the input names (bit mask over :data:`NAMES`), one choosing the
    passthrough picks, one for ``allow_extra``, then messages separated by newlines."""
    if len(data) < 3:
        return
    names = tuple(n for i, n in enumerate(NAMES) if data[0] >> i & 1) or (b"a",)
    picks = tuple(p for i, p in enumerate(PICKS) if data[1] >> i & 1)
    allow_extra = bool(data[2] & 1)
    values = data[3:].split(b"\n")[:8]
    got = CODEC.rows(values, names, picks, allow_extra)
    if got is None:
        return
    matrix, columns = got
    want = _reference(values, names, picks, allow_extra)
    if want is None:
        raise AssertionError(f"the C reader took a batch the reference refuses: {values!r}")
    rows = np.frombuffer(matrix, dtype=np.float64).reshape(len(values), len(names))
    if rows.view(np.uint64).tolist() != want[0].view(np.uint64).tolist():
        raise AssertionError(f"different numbers for {values!r}")
    if [fastcodec.as_list(c) for c in columns] != want[1]:
        raise AssertionError(f"different passthrough texts for {values!r}")


def check_fill(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    n_columns = fdp.ConsumeIntInRange(1, 3)
    n_rows = fdp.ConsumeIntInRange(1, 4)
    pieces = tuple(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6)) for _ in range(n_columns + 1))
    columns: list[Any] = []
    for _ in range(n_columns):
        texts = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 5)) for _ in range(n_rows)]
        joined = b",".join(texts)
        columns.append(joined if fdp.ConsumeBool() and joined.count(b",") == n_rows - 1
                       else texts)
    try:
        got = CODEC.fill(pieces, columns)
    except ValueError:
        got = None
    try:
        want = fastcodec.fill_python(pieces, columns)
    except ValueError:
        want = None
    if got != want:
        raise AssertionError(f"fill differs for {pieces!r} {columns!r}: {got!r} != {want!r}")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        check_rows(data[1:])
    else:
        check_fill(data[1:])


#: valid starting points for the mutations (first byte: odd → rows, even → fill)
SEEDS = {
    "rows1": b'\x01\x07\x03\x01{"a": 1.5, "b": -2, "c": 3e-7, "id": 7, "tag": "t"}\n'
             b'{"a":0,"b":1E5,"c":-0.0,"id":"x"}',
    "rows2": b'\x01\x03\x0c\x00{"b": 12345678901234567, "a": 1}\n{"a":2.5e300,"b":-1e-400}',
    "rows3": b'\x01\x11\x0f\x01{"a": 1, "a\xc3\xa9": 2, "x": {"y": [1, "z\\u00e9"]}, '
             b'"tag": null}',
    "rows4": b'\x01\x01\x01\x01 { "a" : 0.000001 , "id" : "k,1" } \n{"a":-0}',
    "fill1": b'\x00\x01\x02\x02{"k":\x02,"v"\x01}\x01a\x011\x012',
}


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        os.makedirs(sys.argv[2], exist_ok=True)
        for name, seed in SEEDS.items():
            with open(os.path.join(sys.argv[2], name), "wb") as f:
                f.write(seed)
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
