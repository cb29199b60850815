"""River online learners: classifiers and regressors that keep learning after deployment.

Stored with skops when it can represent the model faithfully: ``save`` reads the file back and
compares the rebuilt object with the original, field by field, because skops silently drops
state for some River models (dicts keyed by both ``False`` and ``True`` lose one entry). Loading
a skops file rebuilds only River types plus a short list of container types, recorded in
``flavor_info["types"]``; anything else needs ``trusted=True``. Models skops cannot represent
are pickled, which needs ``trusted=True`` both to save and to load, like joblib for
scikit-learn.

Rows reach the model as ``{column: value}`` dicts, one ``predict_one`` / ``predict_proba_one``
/ ``learn_one`` call per row. ``learn_many`` is deliberately not used: for River's linear models
it is a mini-batch update with different arithmetic, and a model should end up the same whether
its labels arrive one at a time or in batches. Classes are the ones the model has seen so far,
so they can grow while it learns.
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.core.batch import Array, Batch, Result
from modelport.errors import (
    InvalidInputError,
    UnsupportedModelError,
    UntrustedArtifactError,
)
from modelport.flavors.base import (
    Description,
    Flavor,
    Predictor,
    comes_from,
    load_skops,
    require,
    version_of,
)

#: Types skops may rebuild for a River model besides ``river.*`` and ``numpy.*``: containers
#: and the random generator River's trees keep. No functions (``builtins.eval`` stays out).
SAFE_TYPES = frozenset({
    "builtins.frozenset", "builtins.set", "builtins.slice", "builtins.bytearray",
    "collections.Counter", "collections.defaultdict", "collections.OrderedDict",
    "collections.deque", "random.Random",
})
SAFE_PREFIXES = ("river.", "numpy.")


def is_safe_type(name: str) -> bool:
    return name.startswith(SAFE_PREFIXES) or name in SAFE_TYPES


def same_state(a: Any, b: Any, _seen: set[tuple[int, int]] | None = None) -> bool:
    """True when ``b`` holds exactly ``a``'s state: same types, keys (with key types), values."""
    seen = _seen if _seen is not None else set()
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    if isinstance(a, float):
        return a == b or (a != a and b != b)
    if isinstance(a, str | bytes | int | complex | type(None)):
        return bool(a == b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, np.generic):
        return bool(a == b) or bool(a != a and b != b)
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        b_keys = {(type(k), k): k for k in b}
        for key, value in a.items():
            other = b_keys.get((type(key), key), _MISSING)
            if other is _MISSING or not same_state(value, b[other], seen):
                return False
        return True
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_state(x, y, seen) for x, y in zip(a, b,
                                                                                strict=True))
    if isinstance(a, set | frozenset):
        return bool(a == b)
    try:
        ra, rb = a.__reduce_ex__(4), b.__reduce_ex__(4)
    except TypeError:
        return False
    if isinstance(ra, str) or isinstance(rb, str):  # module-level singletons
        return bool(ra == rb)
    return same_state(tuple(ra[1:]), tuple(rb[1:]), seen) and ra[0] is rb[0]


_MISSING = object()


class RiverPredictor(Predictor):
    """Predicts and learns row by row; a lock keeps learning and predicting from interleaving."""

    can_learn = True

    def __init__(self, model: Any, *, signature: Signature) -> None:
        self.native = model
        self._names = list(signature.input_names)
        self._classify = signature.task == "classification" and hasattr(
            model, "predict_proba_one")
        self._known = set(signature.classes or ())
        self._lock = threading.Lock()
        # River's default predict_one is argmax(predict_proba_one); skip the second pass then
        base = require("river.base", "river")
        self._label_from_proba = type(final_step(model)).predict_one is \
            base.Classifier.predict_one

    def rows(self, batch: Batch) -> list[dict[str, Any]]:
        if batch.is_matrix:
            return [dict(zip(self._names, row, strict=True))
                    for row in batch.to_matrix().tolist()]
        columns = [batch.column(n).tolist() for n in self._names]
        return [dict(zip(self._names, values, strict=True)) for values in zip(*columns,
                                                                               strict=True)]

    def predict(self, batch: Batch) -> Result:
        rows = self.rows(batch)
        with self._lock:
            if self._classify:
                probas = [self.native.predict_proba_one(x) for x in rows]
                labels = ([max(p, key=p.get) if p else None for p in probas]
                          if self._label_from_proba
                          else [self.native.predict_one(x) for x in rows])
            else:
                probas = None
                labels = [self.native.predict_one(x) for x in rows]
        if probas is None:
            return Result(batch.n_rows, labels=_array(labels))
        classes = _sorted(self._known.union(*probas))
        matrix = np.array([[p.get(c, 0.0) for c in classes] for p in probas],
                          dtype=np.float64).reshape(len(rows), len(classes))
        return Result(batch.n_rows, labels=_array(labels), probabilities=matrix,
                      classes=classes)

    def learn(self, batch: Batch, targets: Array) -> None:
        rows = self.rows(batch)
        ys = np.asarray(targets).tolist()
        if len(ys) != len(rows):
            raise InvalidInputError(
                f"got {len(ys)} targets for {len(rows)} rows; send one target per row"
            )
        with self._lock:
            for x, y in zip(rows, ys, strict=True):
                self.native.learn_one(x, y)


def final_step(model: Any) -> Any:
    """The estimator that answers for ``model``: a Pipeline answers like its last step."""
    while isinstance(getattr(model, "steps", None), dict) and model.steps:
        model = list(model.steps.values())[-1]
    return model


def classes_seen(classifier: Any) -> tuple[Any, ...] | None:
    """The classes a River classifier has seen so far, where its state tells them."""
    for attribute in ("classes", "classifiers", "class_counts"):
        seen = getattr(classifier, attribute, None)
        if isinstance(seen, set | frozenset | list | tuple | dict) and seen:
            return tuple(_sorted(set(seen)))
    if getattr(classifier, "_multiclass", True) is False:
        return (False, True)  # River's binary classifiers answer {False: p, True: q}
    return None


def _sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def _array(values: list[Any]) -> Array:
    if any(v is None or isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    return np.asarray(values)


class RiverFlavor(Flavor):
    name = "river"
    requirement = "river"

    def handles(self, model: Any) -> bool:
        return comes_from(model, "river")

    def describe(self, model: Any) -> Description:
        base = require("river.base", "river")
        final = final_step(model)
        task = ("classification" if isinstance(final, base.Classifier)
                else "regression" if isinstance(final, base.Regressor) else "other")
        classes = classes_seen(final) if task == "classification" else None
        return Description(task, classes, {"river": version_of("river")})  # type: ignore[arg-type]

    def save(self, model: Any, directory: Path, *, signature: Signature,
             trusted: bool) -> dict[str, Any]:
        import skops.io

        path = directory / "model.skops"
        problem = ""
        try:
            skops.io.dump(model, path)
            types = skops.io.get_untrusted_types(file=path)
            unsafe = [t for t in types if not is_safe_type(t)]
            if unsafe:
                problem = f"it contains types outside River ({unsafe[:3]})"
            elif not same_state(model, skops.io.load(path, trusted=types)):
                problem = "skops does not rebuild its state exactly"
        except Exception as exc:  # skops raises plain TypeErrors for objects it can't walk
            problem = f"skops cannot store it ({str(exc).splitlines()[0]})"
        if not problem:
            return {"file": "model.skops", "serialization": "skops", "types": sorted(types)}
        path.unlink(missing_ok=True)
        if not trusted:
            raise UnsupportedModelError(
                f"this River model cannot be stored in the safe skops format: {problem}; "
                "if you trust it, save with trusted=True (CLI: --trusted) to use pickle"
            )
        with (directory / "model.pkl").open("wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return {"file": "model.pkl", "serialization": "pickle"}

    def load(self, directory: Path, info: dict[str, Any], signature: Signature, *,
             trusted: bool) -> Predictor:
        path = directory / str(info["file"])
        if info.get("serialization") == "pickle":
            if not trusted:
                raise UntrustedArtifactError(
                    "this River model is stored with pickle, which can run arbitrary code when "
                    "loaded; load it with trusted=True (CLI: --trusted) only if you trust its "
                    "source"
                )
            require("river", "river")
            with path.open("rb") as fh:
                model = pickle.load(fh)
        else:
            require("river", "river")
            model = load_skops(path, is_safe=is_safe_type, trusted=trusted, allowed="River",
                               framework="River")
        return RiverPredictor(model, signature=signature)
