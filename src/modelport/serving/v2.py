"""Open Inference Protocol V2 over REST: tensors in, tensors out (JSON and binary extension).

A tabular model takes either one tensor per column (shape ``[n]`` or ``[n, 1]``, the form
Triton and MLServer clients send) or one ``[n, k]`` tensor holding every column in signature
order. A tensor model takes its named tensors with shape ``[n, *shape]``.

With the binary-tensor extension (``tritonclient``'s default) the request starts with
``Inference-Header-Content-Length`` bytes of JSON; the raw little-endian tensor bytes of every
input that declares ``parameters.binary_data_size`` follow in input order. Outputs are returned
the same way when the request asks for it (``outputs[].parameters.binary_data`` or the request
parameter ``binary_data_output``).
"""

from __future__ import annotations

import itertools
import math
import operator
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelport.bundle.model import Model
from modelport.bundle.signature import DEFAULT_EXTRA, ColumnSpec, ExtraColumns, Signature
from modelport.core.batch import Array, Batch, Result
from modelport.errors import InvalidInputError
from modelport.serving.extra_tensors import check_passthrough, extra_tensors

#: V2 datatype ⇄ NumPy dtype
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {v.str: k for k, v in DATATYPES.items() if k != "BYTES"}
HEADER_LENGTH = "inference-header-content-length"


def datatype_of(dtype: np.dtype[Any] | str) -> str:
    dt = np.dtype("O" if dtype == "string" else dtype)
    if dt.kind in "OUS":
        return "BYTES"
    return _BY_DTYPE.get(dt.newbyteorder("<").str if dt.byteorder == ">" else dt.str, "BYTES")


@dataclass
class V2Request:
    batch: Batch
    id: str | None
    #: requested output names (None: all) and whether each comes back binary
    outputs: dict[str, bool] | None
    binary_default: bool
    #: extra input tensors answered as outputs (``--extra-columns passthrough``)
    passthrough: dict[str, Array] | None = None


def header_length(raw: bytes | None) -> int | None:
    """The ``Inference-Header-Content-Length`` header as a byte count (400 when it is not)."""
    if raw is None or not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInputError(
            f"{HEADER_LENGTH} must be a byte count (digits only), got "
            f"{raw[:40].decode('latin-1')!r}", field=HEADER_LENGTH)
    return int(raw)


def decode(body: bytes, header_length: int | None, model: Model,
           extra: ExtraColumns = DEFAULT_EXTRA) -> V2Request:
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidInputError(
                f"{HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes"
            )
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, memoryview(b"")
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInputError("an inference request is a JSON object with an 'inputs' list")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError("an inference request needs a non-empty 'inputs' list")
    matrix = None if len(binary) else _named_float_columns(inputs, model.signature)
    passthrough: dict[str, Array] | None = None
    if matrix is not None:
        batch = model.signature.from_matrix(matrix)
    else:
        tensors: dict[str, Array] = {}
        offset = 0
        for i, tensor in enumerate(inputs):
            if not isinstance(tensor, dict) or "name" not in tensor:
                raise InvalidInputError(
                    f"inputs[{i}] needs 'name', 'shape', 'datatype' and 'data'")
            array, used = _decode_tensor(tensor, binary, offset)
            offset += used
            tensors[str(tensor["name"])] = array
        if offset != len(binary):
            raise InvalidInputError(
                f"the binary part has {len(binary)} bytes but the inputs declare {offset}"
            )
        extras = extra_tensors(model.signature, list(tensors.items()), extra)
        if extras:  # --extra-columns: refused above, dropped, or answered as outputs
            dropped = {n: tensors.pop(n) for n in extras}
            if extra == "passthrough":
                passthrough = {n: _strings(a, None) if a.dtype == object else a
                               for n, a in dropped.items()}
        batch = _to_batch(tensors, model.signature)
    params = payload.get("parameters") or {}
    binary_default = _flag(params.get("binary_data_output", False), "binary_data_output") \
        if isinstance(params, dict) else False
    outputs: dict[str, bool] | None = None
    requested = payload.get("outputs")
    if isinstance(requested, list) and requested:
        outputs = {}
        for item in requested:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInputError("each entry of 'outputs' needs a 'name' (a string)",
                                        field="outputs")
            p = item.get("parameters") or {}
            if not isinstance(p, dict):
                raise InvalidInputError(
                    f"output {item['name']!r}: 'parameters' must be an object", field="outputs")
            outputs[item["name"]] = _flag(p.get("binary_data", binary_default), "binary_data")
    rid = payload.get("id")
    return V2Request(batch, str(rid) if rid is not None else None, outputs, binary_default,
                     passthrough)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"parameter {name!r} must be true or false, got {value!r}"[:200],
                                field=name)
    return value


def _named_float_columns(inputs: list[Any], signature: Signature) -> Array | None:
    """The float matrix of the common JSON request for float columns: one FP64 (or FP32) tensor
    per input column, each of shape ``[n]`` (or ``[n, 1]``) with a flat list of plain numbers.

    Read in C-level passes with the checks the general path makes; anything else (other
    datatypes, binary data, nesting, missing or repeated names) returns None and takes the
    general path, which explains what is wrong.
    """
    names = signature.input_names
    if not signature.float_columns or len(inputs) != len(names) or len(names) < 2:
        return None
    if set(map(type, inputs)) != {dict}:
        return None
    try:
        datatypes = set(map(_DATATYPE, inputs))
        if datatypes != {"FP64"} and datatypes != {"FP32"}:
            return None
        by_name = dict(zip(map(_NAME, inputs), inputs, strict=True))
        ordered = list(map(by_name.__getitem__, names))  # KeyError: a name not taken
    except (KeyError, TypeError):  # TypeError: an unhashable name or datatype
        return None
    if any(map(_PARAMETERS, ordered)):
        return None
    try:
        columns, shapes = list(map(_DATA, ordered)), list(map(_SHAPE, ordered))
    except KeyError:
        return None
    if set(map(type, columns)) != {list}:
        return None
    lengths = set(map(len, columns))
    n_rows = lengths.pop()
    if lengths or n_rows < 1 or shapes.count([n_rows]) + shapes.count([n_rows, 1]) != len(
            shapes):
        return None
    values = list(itertools.chain.from_iterable(columns))
    if not set(map(type, values)) <= _NUMBERS:
        return None
    dtype = np.float64 if datatypes == {"FP64"} else np.float32  # rounded as the general path
    by_column = np.array(values, dtype=dtype).reshape(len(names), n_rows)
    return by_column.reshape(1, -1) if n_rows == 1 else np.ascontiguousarray(by_column.T)


_DATATYPE = operator.itemgetter("datatype")
_NAME = operator.itemgetter("name")
_DATA = operator.itemgetter("data")
_SHAPE = operator.itemgetter("shape")
_PARAMETERS = operator.methodcaller("get", "parameters")
_NUMBERS = {int, float}


def _decode_tensor(tensor: Mapping[str, Any], binary: memoryview, offset: int
                   ) -> tuple[Array, int]:
    name = str(tensor["name"])
    datatype = str(tensor.get("datatype", "")).upper()
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise InvalidInputError(
            f"input {name!r}: unknown datatype {tensor.get('datatype')!r}; use one of "
            f"{sorted(DATATYPES)}", field=name)
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise InvalidInputError(f"input {name!r}: 'shape' must be a list of sizes", field=name)
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    count = math.prod(shape)
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInputError(
                f"input {name!r}: binary_data_size must be a byte count, got {size!r}",
                field=name)
        raw = binary[offset:offset + size]
        if len(raw) != size:
            raise InvalidInputError(f"input {name!r}: binary data is shorter than declared",
                                    field=name)
        if datatype == "BYTES":
            flat = _bytes_elements(raw, name)
        else:
            if size != count * dtype.itemsize:
                raise InvalidInputError(
                    f"input {name!r}: {size} bytes do not hold shape {shape} of {datatype}",
                    field=name)
            flat = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
        used = size
    else:
        if "data" not in tensor:
            raise InvalidInputError(f"input {name!r} has no 'data'", field=name)
        data = tensor["data"]
        try:
            if datatype == "BYTES":
                flat = np.array(_flatten(data), dtype=object)
            elif dtype.kind == "f" and dtype.itemsize < 8:  # 70000 as FP16: refused, not inf
                with np.errstate(over="raise"):
                    flat = np.asarray(data, dtype=dtype).reshape(-1)
            else:
                flat = np.asarray(data, dtype=dtype).reshape(-1)
        except (OverflowError, FloatingPointError):
            raise InvalidInputError(
                f"input {name!r}: a value is outside the range of {datatype}", field=name
            ) from None
        except (ValueError, TypeError):
            raise InvalidInputError(
                f"input {name!r}: data is not a list of {datatype} values", field=name
            ) from None
        used = 0
    if flat.size != count:
        raise InvalidInputError(
            f"input {name!r}: shape {shape} needs {count} values, got {flat.size}", field=name)
    return flat.reshape(shape), used


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item)) if isinstance(item, list) else out.append(item)
    return out


def _bytes_elements(raw: memoryview, name: str) -> Array:
    out: list[Any] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InvalidInputError(f"input {name!r}: truncated BYTES element", field=name)
        (n,) = struct.unpack_from("<I", raw, pos)
        out.append(bytes(raw[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return np.array(out, dtype=object)


def _to_batch(tensors: dict[str, Array], signature: Signature) -> Batch:
    specs = {s.name: s for s in signature.inputs}
    if signature.kind == "columns" and len(tensors) == 1:
        (name, array), = tensors.items()
        if name not in specs and array.ndim == 2:
            # one [n, k] tensor with every column in signature order
            return signature.coerce(_strings(array, None) if array.dtype == object else array)
    columns: dict[str, Any] = {}
    for name, array in tensors.items():
        spec = specs.get(name)
        if spec is None:
            raise InvalidInputError(
                f"unexpected input {name!r}; the model takes {signature.input_names}", field=name)
        if signature.kind == "columns":
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1:
                raise InvalidInputError(
                    f"input {name!r}: expected shape [n] or [n, 1], got {list(array.shape)}",
                    field=name)
        columns[name] = _strings(array, spec) if array.dtype == object else array
    return signature.coerce(columns)


def _strings(array: Array, spec: ColumnSpec | None) -> Array:
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i, value in enumerate(flat_in):
        flat_out[i] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return out


# ------------------------------------------------------------------------------ response
def output_tensors(result: Result, model: Model) -> list[tuple[str, Array]]:
    """The named output tensors of ``result`` (labels first, then probabilities, then extras)."""
    names = [o.name for o in model.signature.outputs]
    out: list[tuple[str, Array]] = []
    if result.labels is not None:
        label = next((n for n in names if n in ("label", "prediction")), None)
        if label is None:
            label = "prediction" if model.signature.task == "regression" else "label"
        out.append((label, result.labels))
    if result.probabilities is not None:
        out.append(("probabilities", result.probabilities))
    out.extend(result.outputs.items())
    # what the metadata declares is what is sent (a bundle saved before its signature recorded
    # the native dtypes may declare float64 where the model answers float32)
    declared = {o.name: o.dtype for o in model.signature.outputs}
    return [(name, _as_declared(array, declared.get(name))) for name, array in out]


def _as_declared(array: Array, dtype: str | None) -> Array:
    if dtype is None or dtype == "string" or array.dtype.kind not in "biuf" \
            or array.dtype == dtype:
        return array
    return array.astype(dtype)


def encode(request: V2Request, result: Result, model: Model, model_name: str,
           request_id: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    tensors = output_tensors(result, model)
    if request.passthrough:
        check_passthrough([n for n, _ in tensors], request.passthrough)
        tensors.extend(request.passthrough.items())
    if request.outputs is not None:
        available = dict(tensors)
        missing = [n for n in request.outputs if n not in available]
        if missing:
            raise InvalidInputError(
                f"unknown output {missing[0]!r}; the model returns {list(available)}",
                field=missing[0])
        tensors = [(n, available[n]) for n in request.outputs]
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in tensors:
        binary = request.outputs[name] if request.outputs is not None else request.binary_default
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = _tensor_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array)
        outputs.append(entry)
    response = {
        "model_name": model_name,
        "model_version": str(model.version) if model.version is not None else "",
        "id": request.id if request.id is not None else request_id,
        "outputs": outputs,
    }
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, [(b"content-type", b"application/json")]
    return head + b"".join(blobs), [
        (b"content-type", b"application/octet-stream"),
        (HEADER_LENGTH.encode(), str(len(head)).encode()),
    ]


def _json_data(array: Array) -> Any:
    flat = array.reshape(-1)
    if flat.dtype.kind in "OUS":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        return [None if v != v else v for v in flat.tolist()]
    return flat if flat.flags.c_contiguous else np.ascontiguousarray(flat)


def _tensor_bytes(array: Array, datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.reshape(-1).tolist():
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def tensor_metadata(model: Model) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs as V2 model metadata lists (``-1`` marks the batch dimension)."""
    sig = model.signature
    inputs = [{"name": s.name, "datatype": datatype_of(s.dtype), "shape": [-1, *s.shape]}
              for s in sig.inputs]
    outputs = [{"name": s.name, "datatype": datatype_of(s.dtype), "shape": [-1, *s.shape]}
               for s in sig.outputs]
    return inputs, outputs
