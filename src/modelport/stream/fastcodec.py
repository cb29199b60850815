"""The stream worker's common batch in compiled code, with a pure-Python path giving the same.

Two steps of the hot path are done in C (``_fastcodec.c``, built with the package; an install
without a C compiler skips it and :data:`COMPILED` is false):

- :class:`RowReader` reads a batch of JSON messages straight into the float matrix the model
  takes, without a dict per message. It takes on only what it can read exactly as
  ``orjson.loads`` then ``Signature.coerce`` would, and returns ``None`` for anything else
  (including every malformed message), so the worker's Python path stays the one that decides
  and explains.
- :func:`fill` writes each output message from a template's literal pieces and one column of
  JSON texts per gap.

>>> fill((b'{"a":', b',"b":', b"}"), [[b"1", b"2"], [b'"x"', b"null"]])
[b'{"a":1,"b":"x"}', b'{"a":2,"b":null}']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.core.batch import Batch

try:
    from modelport.stream import _fastcodec
except ImportError:  # built without a C compiler: the Python path below
    _fastcodec = None  # type: ignore[assignment]

#: whether the compiled codec is in use
COMPILED = _fastcodec is not None

#: one JSON text per row: a list of them, or one bytes object joining them with commas (when no
#: text holds a comma: numbers, say, as ``orjson.dumps`` writes a list of them)
Column = bytes | list[bytes]


class RowReader:
    """Reads messages for one signature: :meth:`read` gives the batch and the JSON texts of the
    ``picks`` fields (``orjson.dumps(record.get(name))``), one :data:`Column` per field, or
    ``None``."""

    def __init__(self, signature: Signature, picks: Sequence[str], *, allow_extra: bool) -> None:
        self.signature = signature
        self._names = tuple(n.encode() for n in signature.input_names)
        self._picks = tuple(n.encode() for n in picks)
        self._allow_extra = allow_extra
        self.enabled = COMPILED and signature.float_columns

    def read(self, values: list[Any]) -> tuple[Batch, list[Column]] | None:
        if not self.enabled:
            return None
        read = _fastcodec.rows(values, self._names, self._picks, self._allow_extra)
        if read is None:
            return None
        matrix, picks = read
        rows = np.frombuffer(matrix, dtype=np.float64).reshape(len(values), len(self._names))
        return self.signature.from_matrix(rows), picks


def fill(pieces: tuple[bytes, ...], columns: list[Column]) -> list[bytes]:
    """``pieces[0] + columns[0][i] + pieces[1] + … + pieces[-1]`` for each row ``i``."""
    if _fastcodec is not None:
        return _fastcodec.fill(pieces, columns)
    return fill_python(pieces, columns)


def fill_python(pieces: tuple[bytes, ...], columns: list[Column]) -> list[bytes]:
    """:func:`fill` without the compiled codec: one bytes ``%``-template."""
    if len(pieces) != len(columns) + 1:
        raise ValueError("fill needs one piece more than columns")
    if not columns:
        raise ValueError("fill needs at least one column")
    template = b"%b".join(p.replace(b"%", b"%%") for p in pieces)
    lists = [as_list(c) for c in columns]
    if len(set(map(len, lists))) > 1:
        raise ValueError("columns differ in length")
    return list(map(template.__mod__, zip(*lists, strict=True)))


def as_list(column: Column) -> list[bytes]:
    return column.split(b",") if isinstance(column, bytes) else column
