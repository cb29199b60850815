"""The extra-column policy (``--extra-columns``) for the tensor protocols: Open Inference
Protocol V2 over REST (JSON and binary) and gRPC.

A request tensor the model's signature does not name is an extra column, and follows the policy
every other surface follows (:meth:`modelport.bundle.signature.Signature.coerce`):

* ``refuse``: 400 / ``INVALID_ARGUMENT`` naming the tensor, with the message of every surface;
* ``ignore`` (the default): the tensor is dropped;
* ``passthrough``: the tensor comes back unchanged as an output tensor of the same name, shape
  and datatype, after the model's own outputs. A request's ``outputs`` list selects among them as
  among the model's outputs. A passed-through name that is also one of the model's outputs is a
  400 (the answer would hold two tensors of one name).

A single request tensor is never extra: it is the ``[n, k]`` matrix of a columns model, or the
only input of a one-input tensor model whatever its name. With several tensors and none named
like a column, the one ``[n, k]`` tensor is the matrix and the others are extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelport.bundle.signature import ExtraColumns, Signature
from modelport.core.batch import Array
from modelport.errors import InvalidInputError


def extra_tensors(signature: Signature, tensors: Sequence[tuple[str, Array]],
                  extra: ExtraColumns) -> list[str]:
    """The names of the request tensors the model does not take, in request order.

    Under ``refuse`` the first one raises :class:`InvalidInputError`; when every tensor is extra
    the request has nothing the model takes, which is an error under any policy.
    """
    if len(tensors) < 2:
        return []
    names = [name for name, _ in tensors]
    inputs = signature.input_names
    taken = set(inputs)
    if taken.issuperset(names):  # the usual request: every tensor is an input
        return []
    if signature.kind == "columns" and taken.isdisjoint(names):
        matrices = [name for name, array in tensors
                    if array.ndim == 2 and array.shape[1] == len(inputs)]
        if len(matrices) == 1:  # the [n, k] tensor of every column, beside extra tensors
            taken.add(matrices[0])
    extras = signature.extra_inputs([n for n in names if n not in taken], extra)
    if len(extras) == len(names):
        raise InvalidInputError(
            f"none of the inputs {names} is one the model takes; the model takes {inputs}"
            + (f" (or one [n, {len(inputs)}] tensor)" if signature.kind == "columns" else ""),
            field=names[0])
    return extras


def check_passthrough(outputs: Sequence[str], passthrough: Mapping[str, Array]) -> None:
    """Refuse a passed-through tensor named like one of the model's outputs."""
    clash = next((name for name in passthrough if name in set(outputs)), None)
    if clash is not None:
        raise InvalidInputError(
            f"input {clash!r} is passed through (--extra-columns passthrough) but the model has "
            f"an output of that name; rename the input", field=clash)


__all__ = ["check_passthrough", "extra_tensors"]
