"""Triton's model configuration, statistics and repository index, as plain JSON-ready objects.

The REST routes (``GET /v2/models/{m}/config``, ``GET /v2/models/{m}/stats``,
``POST /v2/repository/index``) send these objects as JSON; the gRPC calls (``ModelConfig``,
``ModelStatistics``, ``RepositoryIndex``) parse the same objects into their messages, so both
protocols answer alike. The layouts are Triton's, so ``tritonclient`` (HTTP and gRPC) reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelport.core.runner import Runner
from modelport.core.service import InferenceService
from modelport.serving.statistics import InferenceStatistics
from modelport.serving.v2 import tensor_metadata

#: V2 datatype -> Triton's model configuration data type
_TRITON_TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64", "BYTES": "TYPE_STRING", "BF16": "TYPE_BF16",
}


def model_config(name: str, runner: Runner) -> dict[str, Any]:
    """Triton's ``ModelConfig`` for a served model: its tensors (without the batch dimension,
    which ``max_batch_size`` stands for) and the micro-batcher's limits."""
    inputs, outputs = tensor_metadata(runner.model)
    options = runner.options
    return {
        "name": name,
        "platform": f"modelport_{runner.model.flavor}",
        "backend": "modelport",
        "max_batch_size": options.max_batch_rows,
        "input": [_tensor(t) for t in inputs],
        "output": [_tensor(t) for t in outputs],
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(options.max_wait_ms * 1000),
        },
        "parameters": {
            "flavor": {"string_value": runner.model.flavor},
            "task": {"string_value": runner.model.signature.task},
            "version": {"string_value": str(runner.version)},
        },
    }


def _tensor(meta: dict[str, Any]) -> dict[str, Any]:
    return {"name": meta["name"], "data_type": _TRITON_TYPES.get(meta["datatype"], "TYPE_INVALID"),
            "dims": list(meta["shape"][1:]) or [1]}


def statistics_of(statistics: InferenceStatistics, served: Mapping[str, str],
                  service: InferenceService, name: str | None,
                  version: str | None) -> dict[str, Any]:
    """``{"model_stats": [...]}`` for one served model (every served model when ``name`` is
    None), every version it has served or only ``version``; loaded models with no request yet
    are listed with zero counts, as Triton lists them."""
    loaded = service.references()
    chosen = served if name is None else {name: served.get(name, name)}
    stats: list[dict[str, Any]] = []
    for served_name, ref in sorted(chosen.items()):
        key = loaded.get(ref)
        model_name = key[0] if key else served_name
        if key is not None:
            statistics.ensure(model_name, str(key[1]))
        for entry in statistics.snapshot(model_name, version):
            row = entry.as_dict()
            row["name"] = served_name
            stats.append(row)
    return {"model_stats": stats}


def repository_index(served: Mapping[str, str], service: InferenceService,
                     load_errors: Mapping[str, str], *, ready_only: bool = False
                     ) -> list[dict[str, str]]:
    """One entry per served model: name, version, state (``READY`` / ``UNAVAILABLE``), reason."""
    loaded = service.references()
    out = []
    for name, ref in served.items():
        key = loaded.get(ref)
        if ready_only and key is None:
            continue
        out.append({"name": name, "version": str(key[1]) if key else "",
                    "state": "READY" if key else "UNAVAILABLE",
                    "reason": load_errors.get(ref, "")})
    return out


__all__ = ["model_config", "repository_index", "statistics_of"]
