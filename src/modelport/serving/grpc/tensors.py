"""Open Inference Protocol V2 tensors on the gRPC wire, to NumPy arrays and back.

A request tensor carries its values either in the typed ``contents`` field that matches its
datatype, or as bytes in ``raw_input_contents`` (row-major, little-endian, no padding; ``BYTES``
elements each prefixed by a 4-byte little-endian length). Both decode to one NumPy array of the
declared shape; ``BYTES`` becomes an object array of ``str``, because models take text.

Anything that does not add up (a count that does not match the shape, a value out of the
datatype's range, contents in the wrong field) raises
:class:`~modelport.errors.InvalidInputError` naming the tensor.

>>> from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
>>> t = pb.ModelInferRequest.InferInputTensor(name="x", datatype="INT8", shape=[2])
>>> t.contents.int_contents.extend([1, 300])
>>> decode_inputs(pb.ModelInferRequest(inputs=[t]))
Traceback (most recent call last):
...
modelport.errors.InvalidInputError: input 'x': value 300 is out of range for INT8
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.core.batch import Array
from modelport.errors import InvalidInputError
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb

#: fixed-width datatypes and their little-endian NumPy dtypes
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*NUMPY_DTYPES, "BYTES")

#: which ``InferTensorContents`` field carries each datatype (FP16 travels raw only)
CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_FIELDS = sorted(set(CONTENTS_FIELDS.values()))
_LENGTH = struct.Struct("<I")
#: the dtype typed contents are read into before the range check and narrowing
_WIDE = {"b": np.bool_, "i": np.int64, "u": np.uint64, "f": np.float64}


@dataclass(frozen=True)
class WireTensor:
    """One decoded input tensor: its name, declared datatype and values in the declared shape."""

    name: str
    datatype: str
    array: Array


# ------------------------------------------------------------------ decoding (requests)
def decode_inputs(request: pb.ModelInferRequest) -> list[WireTensor]:
    """Every input tensor of ``request`` as an array, from typed contents or raw bytes."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents "
            "entries; send exactly one raw entry per input, in the same order"
        )
    tensors: list[WireTensor] = []
    seen: set[str] = set()
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInputError(f"input #{i} has no name; name every input tensor")
        if name in seen:
            raise InvalidInputError(f"input {name!r} is given twice", field=name)
        seen.add(name)
        datatype = tensor.datatype.upper()
        if datatype not in DATATYPES:
            raise InvalidInputError(
                f"input {name!r}: unsupported datatype {tensor.datatype!r}; use one of "
                f"{', '.join(DATATYPES)}", field=name,
            )
        shape = _shape(name, tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInputError(
                    f"input {name!r} has typed contents while the request uses "
                    "raw_input_contents; use one form for all inputs", field=name,
                )
            array = decode_raw(name, datatype, shape, raw[i])
        else:
            array = _decode_contents(name, datatype, shape, tensor.contents)
        tensors.append(WireTensor(name, datatype, array))
    return tensors


def decode_raw(name: str, datatype: str, shape: tuple[int, ...], data: bytes) -> Array:
    """Raw little-endian bytes (or length-prefixed ``BYTES`` elements) to an array."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _as_text(name, _split_bytes(name, data, count)).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    if len(data) != count * dtype.itemsize:
        raise InvalidInputError(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {count * dtype.itemsize} "
            f"bytes of raw content, got {len(data)}", field=name,
        )
    if datatype == "BOOL":
        flags: Array = np.frombuffer(data, dtype=np.uint8) != 0
        return flags.reshape(shape)
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="),
                                                                  copy=False)


def _decode_contents(
    name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> Array:
    count = math.prod(shape)
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:  # FP16 has no typed field
        raise InvalidInputError(
            f"input {name!r}: {datatype} values must be sent as raw_input_contents", field=name
        )
    for other in _ALL_FIELDS:
        if other != field and len(getattr(contents, other)):
            raise InvalidInputError(
                f"input {name!r} is declared {datatype} but carries {other}; put its values in "
                f"{field}", field=name,
            )
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInputError(
            f"input {name!r}: shape {list(shape)} needs {count} values in {field}, "
            f"got {len(values)}", field=name,
        )
    if datatype == "BYTES":
        return _as_text(name, list(values)).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    wide: Array = np.array(values, dtype=_WIDE[dtype.kind])
    if dtype.kind in "iu" and wide.size:
        info = np.iinfo(dtype)
        bad = (wide < info.min) | (wide > info.max)
        if bad.any():
            raise InvalidInputError(
                f"input {name!r}: value {wide[np.argmax(bad)]} is out of range for {datatype}",
                field=name,
            )
    return wide.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def _shape(name: str, dims: Sequence[int]) -> tuple[int, ...]:
    if any(d < 0 for d in dims):
        raise InvalidInputError(
            f"input {name!r}: shape {list(dims)} has a negative dimension; give the actual "
            "size of every dimension", field=name,
        )
    return tuple(int(d) for d in dims)


def _split_bytes(name: str, data: bytes, count: int) -> list[bytes]:
    items: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInputError(
                f"input {name!r}: raw BYTES content ends inside a 4-byte length prefix",
                field=name,
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if offset + length > len(data):
            raise InvalidInputError(
                f"input {name!r}: raw BYTES element {len(items)} claims {length} bytes, only "
                f"{len(data) - offset} remain", field=name,
            )
        items.append(data[offset:offset + length])
        offset += length
    if len(items) != count:
        raise InvalidInputError(
            f"input {name!r}: the shape needs {count} BYTES elements, the raw content holds "
            f"{len(items)}", field=name,
        )
    return items


def _as_text(name: str, items: Sequence[bytes]) -> Array:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        try:
            out[i] = item.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(
                f"input {name!r}: BYTES element {i} is not valid UTF-8 text", field=name
            ) from None
    return out


# ------------------------------------------------------------------ encoding (responses)
def datatype_of(array: Array) -> str:
    """The V2 datatype for an array (object / string arrays become ``BYTES``)."""
    kind = array.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'INT' if kind == 'i' else 'UINT'}{array.dtype.itemsize * 8}"
    if kind == "f" and array.dtype.itemsize in (2, 4, 8):
        return f"FP{array.dtype.itemsize * 8}"
    return "BYTES"


def plain_array(array: Array) -> Array:
    """An array in a dtype the wire can carry: object arrays of numbers become numeric."""
    if array.dtype.kind != "O" or not array.size:
        return array.astype(np.float64) if array.dtype.kind == "f" and \
            array.dtype.itemsize not in (2, 4, 8) else array
    values = array.ravel().tolist()
    if all(isinstance(v, bool) for v in values):
        return array.astype(np.bool_)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        try:
            return array.astype(np.int64)
        except OverflowError:
            return array
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return array.astype(np.float64)
    return array


def encode_output(
    name: str, array: Array, *, raw: bool
) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes | None]:
    """One output tensor; with ``raw`` its values come back as bytes for raw_output_contents."""
    array = plain_array(np.asarray(array))
    datatype = datatype_of(array)
    if datatype == "FP16" and not raw:  # FP16 has no typed field: widen losslessly
        array, datatype = array.astype(np.float32), "FP32"
    tensor = pb.ModelInferResponse.InferOutputTensor(
        name=name, datatype=datatype, shape=[int(d) for d in array.shape]
    )
    flat = array.ravel()
    if datatype == "BYTES":
        items = [_to_bytes(v) for v in flat.tolist()]
        if raw:
            return tensor, b"".join(_LENGTH.pack(len(b)) + b for b in items)
        tensor.contents.bytes_contents.extend(items)
        return tensor, None
    if raw:
        little = flat.astype(NUMPY_DTYPES[datatype], copy=False)
        return tensor, little.astype(np.uint8 if datatype == "BOOL" else little.dtype,
                                     copy=False).tobytes()
    getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(flat.tolist())
    return tensor, None


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    return str(value).encode("utf-8")


__all__ = [
    "CONTENTS_FIELDS",
    "DATATYPES",
    "NUMPY_DTYPES",
    "WireTensor",
    "datatype_of",
    "decode_inputs",
    "decode_raw",
    "encode_output",
    "plain_array",
]
