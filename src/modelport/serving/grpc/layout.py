"""How a model's signature looks as Open Inference Protocol V2 tensors, both ways.

Inputs:

* a **tensor** signature takes its tensors by name, each ``[n, *shape]``; a model with a single
  tensor input takes a single request tensor whatever its name (clients often call it
  ``input__0``);
* a **columns** signature takes either one tensor per column, named like the column, each ``[n]``
  or ``[n, 1]``, or one ``[n, k]`` tensor holding the ``k`` columns in signature order.

Values are then coerced by the signature itself, so wrong dtypes or missing columns are refused
with the same messages as every other entry point. Tensors the model does not take follow the
server's ``--extra-columns`` policy (:func:`split_tensors`, :mod:`modelport.serving.extra_tensors`).

Outputs and metadata are named exactly as the REST V2 route names them
(:mod:`modelport.serving.v2`): classifiers answer ``label`` ``[n]`` and ``probabilities``
``[n, k]`` (class names in the ``classes`` parameter), regressors ``prediction`` ``[n]``, other
models their named outputs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.bundle.model import Model
from modelport.bundle.signature import DEFAULT_EXTRA, ColumnSpec, ExtraColumns, Signature
from modelport.core.batch import Array, Batch, Result
from modelport.errors import InvalidInputError
from modelport.serving.extra_tensors import check_passthrough, extra_tensors
from modelport.serving.grpc.tensors import WireTensor
from modelport.serving.v2 import datatype_of, output_tensors, tensor_metadata


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as model metadata describes it (``-1`` marks the row dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class OutputTensor:
    """One output of a prediction, ready to encode; ``parameters`` travel with the tensor."""

    name: str
    array: Array
    parameters: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ inputs
def split_tensors(signature: Signature, tensors: Sequence[WireTensor],
                  extra: ExtraColumns = DEFAULT_EXTRA
                  ) -> tuple[list[WireTensor], list[WireTensor]]:
    """The tensors the model takes and the extra ones, under the ``extra`` policy (``refuse``
    raises naming the first extra tensor)."""
    extras = extra_tensors(signature, [(t.name, t.array) for t in tensors], extra)
    if not extras:
        return list(tensors), []
    names = set(extras)
    return ([t for t in tensors if t.name not in names],
            [t for t in tensors if t.name in names])


def batch_from_tensors(signature: Signature, tensors: Sequence[WireTensor]) -> Batch:
    """The request's tensors as a ``Batch`` the model accepts, or an error naming the tensor."""
    if not tensors:
        raise InvalidInputError(
            f"the request has no inputs; send {_expected(signature)}"
        )
    if signature.kind == "tensor":
        return _tensor_batch(signature, tensors)
    return _columns_batch(signature, tensors)


def _tensor_batch(signature: Signature, tensors: Sequence[WireTensor]) -> Batch:
    specs = {s.name: s for s in signature.inputs}
    if len(specs) == 1 and len(tensors) == 1:
        only = signature.inputs[0]
        named = {only.name: tensors[0]}
    else:
        named = {}
        for t in tensors:
            if t.name not in specs:
                raise InvalidInputError(
                    f"unexpected input {t.name!r}; the model takes {_expected(signature)}",
                    field=t.name,
                )
            named[t.name] = t
    data: dict[str, Array] = {}
    for name, t in named.items():
        spec = specs[name]
        if t.array.ndim != len(spec.shape) + 1:
            raise InvalidInputError(
                f"input {t.name!r}: expected shape {_shape_text(spec)}, got {list(t.array.shape)}",
                field=t.name,
            )
        data[name] = t.array
    try:
        return signature.coerce(data)
    except InvalidInputError as exc:
        raise _renamed(exc, named) from None


def _columns_batch(signature: Signature, tensors: Sequence[WireTensor]) -> Batch:
    names = signature.input_names
    if all(t.name in names for t in tensors) and not _is_matrix(signature, tensors):
        columns: dict[str, Array] = {}
        for t in tensors:
            arr = t.array
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise InvalidInputError(
                    f"input {t.name!r}: a column takes shape [n] or [n, 1], got "
                    f"{list(t.array.shape)}", field=t.name,
                )
            columns[t.name] = arr
        return signature.coerce(columns)
    if len(tensors) != 1:
        stray = next(t.name for t in tensors if t.name not in names)
        raise InvalidInputError(
            f"unexpected input {stray!r}; the model takes {_expected(signature)}", field=stray
        )
    t = tensors[0]
    if t.array.ndim != 2 or t.array.shape[1] != len(names):
        raise InvalidInputError(
            f"input {t.name!r}: expected shape [n, {len(names)}] (columns {names} in this "
            f"order) or one [n] tensor per column, got {list(t.array.shape)}", field=t.name,
        )
    matrix = t.array
    if matrix.dtype.kind == "O" and not all(s.dtype == "string" for s in signature.inputs):
        # text cells for numeric columns: let the per-column check name the column
        return signature.coerce({n: matrix[:, j] for j, n in enumerate(names)})
    return signature.coerce(matrix)


def _is_matrix(signature: Signature, tensors: Sequence[WireTensor]) -> bool:
    """A single 2-D tensor named like the only column of a one-column model is still a column."""
    return (len(tensors) == 1 and len(signature.inputs) > 1 and tensors[0].array.ndim == 2
            and tensors[0].array.shape[1] == len(signature.inputs))


def _renamed(exc: InvalidInputError, named: dict[str, WireTensor]) -> InvalidInputError:
    """A coercion error about the model's tensor, told with the name the client used."""
    if exc.field in named and named[exc.field].name != exc.field:
        sent = named[exc.field].name
        return InvalidInputError(f"input {sent!r}: {exc.message}", field=sent)
    return exc


def _shape_text(spec: ColumnSpec) -> str:
    return "[n" + "".join(f", {d}" for d in spec.shape) + "]"


def _expected(signature: Signature) -> str:
    if signature.kind == "tensor":
        return "tensors " + ", ".join(
            f"{s.name!r} {_shape_text(s)} {datatype_of(s.dtype)}"
            for s in signature.inputs)
    names = signature.input_names
    return f"one [n] tensor per column {names} or one [n, {len(names)}] tensor"


# ------------------------------------------------------------------ outputs
def result_tensors(model: Model, result: Result) -> list[OutputTensor]:
    """The named output tensors of one prediction, as the REST V2 route names them."""
    outputs = []
    for name, array in output_tensors(result, model):
        params = {}
        if name == "probabilities" and result.classes is not None:
            params["classes"] = _classes_json(tuple(result.classes))
        outputs.append(OutputTensor(name, array, params))
    return outputs


def passthrough_outputs(outputs: list[OutputTensor], extras: Sequence[WireTensor]
                        ) -> list[OutputTensor]:
    """``outputs`` followed by the extra input tensors, unchanged (``--extra-columns
    passthrough``); an extra tensor named like an output is refused."""
    check_passthrough([o.name for o in outputs], {t.name: t.array for t in extras})
    return [*outputs, *(OutputTensor(t.name, t.array) for t in extras)]


def select_outputs(outputs: list[OutputTensor], requested: Sequence[str]) -> list[OutputTensor]:
    """Only the requested outputs, in the requested order (all when none are requested)."""
    if not requested:
        return outputs
    by_name = {o.name: o for o in outputs}
    chosen = []
    for name in requested:
        if name not in by_name:
            raise InvalidInputError(
                f"unknown output {name!r}; the model produces {list(by_name)}", field=name
            )
        chosen.append(by_name[name])
    return chosen


# ------------------------------------------------------------------ metadata
def model_tensors(model: Model) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Inputs and outputs as V2 model metadata describes them."""
    inputs, outputs = tensor_metadata(model)
    if not outputs and model.signature.task == "regression":
        outputs = [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    return ([TensorInfo(t["name"], t["datatype"], tuple(t["shape"])) for t in inputs],
            [TensorInfo(t["name"], t["datatype"], tuple(t["shape"])) for t in outputs])


def model_parameters(signature: Signature) -> dict[str, str]:
    """What V2 metadata has no field for: task, input layout and class names."""
    params: dict[str, str] = {"task": signature.task, "input_layout": signature.kind}
    if signature.classes is not None:
        params["classes"] = _classes_json(tuple(signature.classes))
    return params


@functools.lru_cache(maxsize=256)  # the same few class lists on every response
def _classes_json(classes: tuple[Any, ...]) -> str:
    return json.dumps([_plain(c) for c in classes])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = [
    "OutputTensor",
    "TensorInfo",
    "batch_from_tensors",
    "model_parameters",
    "model_tensors",
    "passthrough_outputs",
    "result_tensors",
    "select_outputs",
    "split_tensors",
]
