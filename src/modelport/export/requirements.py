"""Pinned requirements for a container that serves one model.

The image runs ``modelport serve`` with the model's own libraries. The pins are

1. every distribution ``modelport[serve]`` (and the model's flavor extra) needs, transitively,
   at the version installed where the package was made — a lock of a working environment;
2. overridden by the versions the bundle recorded when the model was saved (``libraries`` in
   ``modelport.yaml``: numpy, scikit-learn, skops, xgboost, lightgbm, torch, ...), so the image
   deserializes the artifact with the library that wrote it.

``modelport`` itself is not pinned here: it goes into the build context as a wheel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution

from modelport.errors import ConfigurationError

#: recorded library name → distribution to install (xgboost's own wheel pulls ~300 MB of CUDA)
DISTRIBUTIONS = {"xgboost": "xgboost-cpu", "sklearn": "scikit-learn"}
#: recorded names that are not distributions to install
NOT_PACKAGES = {"python", "modelport"}
#: extras of modelport each flavor needs in the image
FLAVOR_EXTRAS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "torch": "torch",
                 "river": "river", "onnx": "onnx"}


@dataclass
class Pins:
    """``{distribution: version}`` and which came from the bundle rather than this machine."""

    versions: dict[str, str] = field(default_factory=dict)
    from_bundle: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for name in sorted(self.versions, key=str.lower):
            note = "  # recorded in the bundle" if name in self.from_bundle else ""
            out.append(f"{name}=={self.versions[name]}{note}")
        return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> dict[str, str]:
    """Installed versions of ``roots`` (requirement strings, extras allowed) and everything they
    need, following environment markers for this interpreter."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    names: dict[str, str] = {}
    queue = [Requirement(r) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req = queue.pop()
        key = (_norm(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            raise ConfigurationError(
                f"{req.name} is needed in the image but is not installed here, so its version "
                f"cannot be pinned; install it (pip install '{req}') and package again") from None
        if _norm(req.name) != "modelport":
            found[_norm(req.name)] = dist.version
            names[_norm(req.name)] = dist.metadata["Name"] or req.name
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(
                    sub.marker.evaluate({"extra": extra}) for extra in (req.extras or {""})):
                queue.append(sub)
    return {names[k]: v for k, v in found.items()}


def pins_for(flavor: str, libraries: dict[str, str]) -> Pins:
    """The pins of an image serving a model of ``flavor`` that recorded ``libraries``."""
    extras = ["serve"] + ([FLAVOR_EXTRAS[flavor]] if flavor in FLAVOR_EXTRAS else [])
    versions = closure([f"modelport[{','.join(extras)}]"])
    by_norm = {_norm(k): k for k in versions}
    pins = Pins(dict(versions))
    for lib, version in libraries.items():
        if lib in NOT_PACKAGES:
            continue
        name = DISTRIBUTIONS.get(lib, lib)
        existing = by_norm.get(_norm(name))
        if existing is not None and existing != name:
            del pins.versions[existing]
        pins.versions[name] = version
        pins.from_bundle[name] = version
    return pins
