"""PyTorch modules, stored as TorchScript.

``save`` scripts the module (``torch.jit.script``); when scripting fails (dynamic Python in
``forward``) it traces it with zero inputs shaped like the signature. An existing
``ScriptModule`` is stored as it is. ``load`` uses ``torch.jit.load``, which rebuilds the
module from TorchScript code and tensors and never unpickles Python objects, so loading needs no
trust.

Prediction runs under ``torch.inference_mode()``. Floating inputs are cast to the module's
parameter dtype. A single tensor output comes back as ``outputs={"output": ...}``, and also as
``labels`` when it is 1-D (one value per row); tuples become ``output_0``, ``output_1``, …
and dicts keep their keys.

PyTorch 2.13 marks ``torch.jit`` as deprecated in favour of ``torch.export``; TorchScript is
still the format that loads without Python code, so those deprecation warnings are silenced
exactly around the calls that emit them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.core.batch import Array, Batch, Result
from modelport.errors import ModelLoadError, UnsupportedModelError
from modelport.flavors.base import Description, Flavor, Predictor, comes_from, require, version_of

#: torch intra-op threads set at load time unless ``flavor_info["num_threads"]`` says otherwise.
DEFAULT_THREADS = 1


@contextmanager
def _jit_quietly() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=DeprecationWarning)
        yield


def _example_inputs(torch: Any, signature: Signature, float_dtype: Any) -> tuple[Any, ...]:
    tensors = []
    for spec in signature.inputs if signature.kind == "tensor" else ():
        shape = (2, *(s if s > 0 else 1 for s in spec.shape))
        dtype = float_dtype if spec.dtype.startswith("float") else getattr(torch, spec.dtype,
                                                                           torch.int64)
        tensors.append(torch.zeros(shape, dtype=dtype))
    if signature.kind == "columns":
        tensors.append(torch.zeros((2, len(signature.inputs)), dtype=float_dtype))
    return tuple(tensors)


def _float_dtype(torch: Any, module: Any) -> Any:
    for param in module.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32


class TorchPredictor(Predictor):
    def __init__(self, module: Any, *, signature: Signature, float_dtype: str) -> None:
        import torch

        self.native = module
        self._torch = torch
        self._signature = signature
        self._float = getattr(torch, float_dtype)

    def _tensor(self, arr: Array) -> Any:
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            arr = np.array(arr, order="C")  # torch wraps memory it may write; give it a copy
        t = self._torch.from_numpy(arr)
        return t.to(self._float) if t.is_floating_point() else t

    def inputs(self, batch: Batch) -> list[Any]:
        if self._signature.kind == "columns":
            return [self._tensor(batch.to_matrix(np.float64))]
        return [self._tensor(batch.column(spec.name)) for spec in self._signature.inputs]

    def predict(self, batch: Batch) -> Result:
        with self._torch.inference_mode():
            out = self.native(*self.inputs(batch))
        outputs: dict[str, Array]
        if isinstance(out, tuple | list):
            outputs = {f"output_{i}": o.numpy() for i, o in enumerate(out)}
        elif isinstance(out, dict):
            outputs = {str(k): v.numpy() for k, v in out.items()}
        else:
            outputs = {"output": out.numpy()}
        first = next(iter(outputs.values()))
        labels = first if len(outputs) == 1 and first.ndim == 1 else None
        return Result(batch.n_rows, labels=labels, outputs=outputs)


class TorchFlavor(Flavor):
    name = "torch"
    requirement = "torch"

    def handles(self, model: Any) -> bool:
        if not comes_from(model, "torch"):
            return False
        torch = require("torch", "torch")
        return isinstance(model, torch.nn.Module)

    def describe(self, model: Any) -> Description:
        return Description("other", None, {"torch": version_of("torch")})

    def script(self, model: Any, signature: Signature) -> Any:
        """The module as TorchScript: as is, scripted, or traced with zero inputs."""
        torch = require("torch", "torch")
        if isinstance(model, torch.jit.ScriptModule):
            return model
        with _jit_quietly():
            try:
                return torch.jit.script(model)
            except Exception as script_error:  # TorchScript's frontend raises many kinds
                example = _example_inputs(torch, signature, _float_dtype(torch, model))
                try:
                    return torch.jit.trace(model.eval(), example)
                except Exception as trace_error:
                    raise UnsupportedModelError(
                        "this module can be neither scripted nor traced to TorchScript "
                        f"(script: {str(script_error).splitlines()[0]}; trace: "
                        f"{str(trace_error).splitlines()[0]}); make forward() take tensors "
                        "shaped like the signature, or use the pyfunc flavor"
                    ) from None

    def save(self, model: Any, directory: Path, *, signature: Signature,
             trusted: bool) -> dict[str, Any]:
        torch = require("torch", "torch")
        scripted = self.script(model, signature)
        float_dtype = str(_float_dtype(torch, scripted)).removeprefix("torch.")
        with _jit_quietly():
            torch.jit.save(scripted, str(directory / "model.pt"))
        return {"file": "model.pt", "format": "torchscript", "float_dtype": float_dtype,
                "num_threads": DEFAULT_THREADS}

    def load(self, directory: Path, info: dict[str, Any], signature: Signature, *,
             trusted: bool) -> Predictor:
        torch = require("torch", "torch")
        torch.set_num_threads(int(info.get("num_threads", DEFAULT_THREADS)))
        try:
            with _jit_quietly():
                module = torch.jit.load(str(directory / str(info["file"])), map_location="cpu")
        except RuntimeError as exc:
            raise ModelLoadError(f"TorchScript module could not be loaded: {exc}") from None
        module.eval()
        return TorchPredictor(module, signature=signature,
                              float_dtype=str(info.get("float_dtype", "float32")))
