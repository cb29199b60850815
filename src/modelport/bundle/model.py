"""``Model``: a loaded bundle — manifest, signature and the flavor's predictor in one object."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import numpy as np

from modelport.bundle.hashing import verify_tree
from modelport.bundle.manifest import Manifest
from modelport.bundle.signature import ExtraColumns, Signature
from modelport.core.batch import Array, Batch, Result
from modelport.core.events import EventBus, PredictionEvent
from modelport.errors import ModelportError, PredictionError, UnsupportedModelError
from modelport.flavors import Predictor, get_flavor

if TYPE_CHECKING:
    from modelport.core.schema import PredictionSchema


class Model:
    """A model ready to predict.

    ``predict(data)`` and ``predict_proba(data)`` take any input the signature can coerce (records,
    columns, DataFrame, Arrow, NumPy) and answer like the framework would. ``predict_batch`` is the
    inference core's entry: an already-coerced ``Batch`` in, a ``Result`` out.

    ``predictor`` may be left out in favour of ``loader``, which deserializes the native model
    the first time ``predictor`` is read (a server answering from the bundle's stored ONNX form
    never reads it, and never imports the framework).
    """

    def __init__(
        self,
        manifest: Manifest,
        predictor: Predictor | None = None,
        *,
        path: Path | None = None,
        version: int | None = None,
        loader: Callable[[], Predictor] | None = None,
    ) -> None:
        self.manifest = manifest
        self._predictor = predictor
        self._loader = loader
        self._load_lock = threading.Lock()
        self.path = path
        self.version = version
        #: set by ``modelport.log.enable(model)``: every ``predict*`` call is then published as a
        #: prediction event (the Python API's opt-in prediction log)
        self.events: EventBus | None = None
        #: the prediction id of the last logged call (``P``; rows ``P-0`` … for several rows)
        self.last_prediction_id: str | None = None
        self._schemas: dict[tuple[str, ...], PredictionSchema] = {}

    def prediction_schema(self, keys: Sequence[str] = ()) -> PredictionSchema:
        """The one prediction schema of this model's outputs with ``keys`` in front, made once
        per key set (servers ask for it on every request)."""
        key = tuple(keys)
        schema = self._schemas.get(key)
        if schema is None:
            from modelport.core.schema import PredictionSchema

            schema = self._schemas[key] = PredictionSchema.of(self.signature, keys=key)
        return schema

    @property
    def predictor(self) -> Predictor:
        """The native model's predictor, deserialized on first use when loaded lazily."""
        predictor = self._predictor
        if predictor is None:
            with self._load_lock:
                if self._predictor is None:
                    if self._loader is None:
                        raise UnsupportedModelError(f"model {self.ref} has no predictor")
                    self._predictor = self._loader()
                predictor = self._predictor
        return predictor

    @predictor.setter
    def predictor(self, value: Predictor) -> None:
        self._predictor = value

    @property
    def native_loaded(self) -> bool:
        """Whether the native model has been deserialized (always, unless loaded lazily)."""
        return self._predictor is not None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def flavor(self) -> str:
        return self.manifest.flavor

    @property
    def signature(self) -> Signature:
        return self.manifest.signature

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}" if self.version is not None else self.name

    @property
    def has_proba(self) -> bool:
        return self.signature.task == "classification" and any(
            o.name == "probabilities" for o in self.signature.outputs
        )

    def coerce(self, data: Any, *, allow_extra: bool | None = None,
               extra: ExtraColumns | None = None) -> Batch:
        """``data`` as the signature's batch; ``extra`` as in :meth:`Signature.coerce`."""
        return self.signature.coerce(data, allow_extra=allow_extra, extra=extra)

    def predict_batch(self, batch: Batch) -> Result:
        events = self.events
        start = time.perf_counter() if events is not None else 0.0
        try:
            result = self.predictor.predict(batch)
        except ModelportError:
            raise
        except Exception as exc:
            raise PredictionError(f"model {self.ref} failed to predict: {exc}") from exc
        if events is not None:
            event = PredictionEvent(model=self.name, version=self.version, inputs=batch,
                                    outputs=result, source="python",
                                    latency_ms=(time.perf_counter() - start) * 1000.0)
            self.last_prediction_id = event.id
            events.publish(event)
        return result

    def predict(self, data: Any) -> Array:
        result = self.predict_batch(self.coerce(data))
        if result.labels is not None:
            return result.labels
        if len(result.outputs) == 1:
            return next(iter(result.outputs.values()))
        raise UnsupportedModelError(
            f"model {self.ref} has several outputs {list(result.outputs)}; use predict_batch()"
        )

    def predict_proba(self, data: Any) -> Array:
        if not self.has_proba:
            raise UnsupportedModelError(f"model {self.ref} does not produce class probabilities")
        result = self.predict_batch(self.coerce(data))
        assert result.probabilities is not None
        return result.probabilities

    def predict_table(self, data: Any, *, keep: Sequence[str] = (),
                      extra: ExtraColumns | None = None) -> Any:
        """Predictions of ``data`` as an Arrow table in the one prediction schema
        (:mod:`modelport.core.schema`): the ``keep`` columns of ``data`` first, then
        ``prediction_id``, ``prediction``, ``probability_<class>``, further outputs, ``model``,
        ``version`` and ``predicted_at`` (``.to_pandas()`` for a DataFrame). With
        ``extra="passthrough"`` every column the model does not take is kept too."""
        from modelport.core.schema import row_ids

        keep = list(keep)
        if extra == "passthrough":
            keep += [n for n in self.signature.extra_names(_names(data)) if n not in keep]
        schema = self.prediction_schema(keep)
        result = self.predict_batch(self.coerce(data, extra=extra))
        base = (self.last_prediction_id if self.events is not None else None) or uuid4().hex
        return schema.table(result, ids=row_ids(base, result.n_rows, single=result.n_rows == 1),
                            model=self.name, version=self.version,
                            predicted_at=datetime.now(UTC),
                            keys={k: _column(data, k) for k in keep})

    def predict_records(self, data: Any, *, keep: Sequence[str] = (),
                        extra: ExtraColumns | None = None) -> list[dict[str, Any]]:
        """:meth:`predict_table` in the record form: one JSON-ready dict per row."""
        from modelport.core.schema import timestamp_text

        out = []
        classes = self.prediction_schema().classes or ()
        for row in self.predict_table(data, keep=keep, extra=extra).to_pylist():
            record: dict[str, Any] = {}
            probabilities = {c: row.pop(f"probability_{c}") for c in classes}
            for name, value in row.items():
                if name == "model" and classes:
                    record["probabilities"] = probabilities
                record[name] = timestamp_text(value) if isinstance(value, datetime) else value
            out.append(record)
        return out

    def learn(self, data: Any, targets: Any) -> None:
        """Incremental update (online flavors such as River)."""
        self.predictor.learn(self.coerce(data), np.asarray(targets))

    def __repr__(self) -> str:
        return f"Model({self.ref!r}, flavor={self.flavor!r})"


def _names(data: Any) -> list[str]:
    """The column names of user data (DataFrame, Arrow, records, columns)."""
    if hasattr(data, "column_names"):
        return list(data.column_names)
    if hasattr(data, "columns"):
        return [str(c) for c in data.columns]
    if isinstance(data, Mapping):
        return list(data)
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return list(dict.fromkeys(k for r in data for k in r))
    return []


def _column(data: Any, name: str) -> Any:
    """One column of user data as a list or an Arrow / NumPy array."""
    if hasattr(data, "column_names"):
        return data.column(name)
    if hasattr(data, "columns"):
        return data[name].tolist()
    if isinstance(data, Mapping):
        values = data[name]
        return values if isinstance(values, list | np.ndarray) else [values]
    return [r.get(name) for r in data]


def load_bundle(
    directory: str | Path,
    *,
    trusted: bool = False,
    expected_files: Mapping[str, str] | None = None,
    version: int | None = None,
    lazy: bool = False,
) -> Model:
    """Verify every file's SHA-256, then let the flavor deserialize the artifact.

    ``expected_files`` (from the registry database) overrides the manifest's own list, so a
    manifest edited together with its artifact is still caught.

    ``lazy``: deserialize the native artifact only when ``model.predictor`` is first read. Every
    file is verified now, and verified again right before that deserialization, so a file
    replaced in between is refused rather than loaded.
    """
    path = Path(directory)
    manifest = Manifest.read(path)
    files = dict(expected_files) if expected_files is not None else manifest.files
    what = f"model {manifest.name or path.name}"
    manifest.check_paths(files)  # before any file it names is opened (issue 14.3)
    verify_tree(path, files, what=what)

    def deserialize() -> Predictor:
        flavor = get_flavor(manifest.flavor)
        return flavor.load(path, manifest.flavor_info, manifest.signature, trusted=trusted)

    if not lazy:
        return Model(manifest, deserialize(), path=path, version=version)

    def verified_deserialize() -> Predictor:
        verify_tree(path, files, what=what)
        return deserialize()

    return Model(manifest, path=path, version=version, loader=verified_deserialize)
