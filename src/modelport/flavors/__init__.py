"""Flavors: one module per framework, behind the small protocol in :mod:`.base`.

``flavor_for(model)`` picks the flavor of an in-memory object; ``get_flavor(name)`` the one named
in a manifest. Framework modules are imported only when a flavor is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from modelport.errors import UnsupportedModelError
from modelport.flavors.base import Description, Flavor, Predictor

#: name -> "module:Class"; order matters for detection (most specific first).
_FLAVORS: dict[str, str] = {
    "xgboost": "modelport.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "modelport.flavors.lightgbm:LightGBMFlavor",
    "river": "modelport.flavors.river:RiverFlavor",
    "torch": "modelport.flavors.torch:TorchFlavor",
    "onnx": "modelport.flavors.onnx:OnnxFlavor",
    "sklearn": "modelport.flavors.sklearn:SklearnFlavor",
    "pyfunc": "modelport.flavors.pyfunc:PyfuncFlavor",
}
_cache: dict[str, Flavor] = {}


def flavor_names() -> list[str]:
    return list(_FLAVORS)


def get_flavor(name: str) -> Flavor:
    if name not in _FLAVORS:
        raise UnsupportedModelError(
            f"unknown flavor {name!r}; known flavors: {', '.join(_FLAVORS)}"
        )
    if name not in _cache:
        module, cls = _FLAVORS[name].split(":")
        _cache[name] = getattr(importlib.import_module(module), cls)()
    return _cache[name]


def flavor_for(model: Any, flavor: str | None = None) -> Flavor:
    if flavor is not None:
        return get_flavor(flavor)
    for name in _FLAVORS:
        candidate = get_flavor(name)
        if candidate.handles(model):
            return candidate
    raise UnsupportedModelError(
        f"no flavor knows how to save a {type(model).__module__}.{type(model).__name__}; "
        "wrap it in a class with load(path) and predict(batch) to use the pyfunc flavor"
    )


__all__ = ["Description", "Flavor", "Predictor", "flavor_for", "flavor_names", "get_flavor"]
