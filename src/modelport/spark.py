"""``predict_udf``: a modelport model as a Spark pandas UDF, for users' own Spark jobs.

>>> from pyspark.sql import functions as F                                  # doctest: +SKIP
>>> score = predict_udf("churn@production")                                 # doctest: +SKIP
>>> df.withColumn("score", score(F.struct(*df.columns)))                    # doctest: +SKIP
...   .select("customer_id", "score.prediction", "score.probability_1")

The UDF takes one struct column holding (at least) the model's input columns and returns a
struct: ``prediction`` plus ``probability_<class>`` for classifiers. Each executor process loads
the model once (from the bundle folder, which executors must be able to read: a shared
filesystem, or ``local[*]`` mode) and scores Arrow batches with the same core as every other
form; ONNX acceleration applies when the model converts faithfully.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd  # at runtime: PySpark reads the UDF's type hints to pick its kind

from modelport.bundle.signature import Signature
from modelport.errors import ConfigurationError, UnsupportedModelError

if TYPE_CHECKING:
    from modelport.registry import Registry


def result_type(signature: Signature) -> Any:
    """The Spark struct type the UDF returns for a model with this signature."""
    from pyspark.sql import types as T

    label = next((s for s in signature.outputs if s.name in ("label", "prediction")), None)
    kinds = {"string": T.StringType(), "bool": T.BooleanType(), "int64": T.LongType(),
             "int32": T.LongType()}
    fields = [T.StructField("prediction",
                            kinds.get(label.dtype, T.DoubleType()) if label else T.DoubleType())]
    if signature.task == "classification" and signature.classes is not None:
        fields += [T.StructField(f"probability_{c}", T.DoubleType())
                   for c in signature.classes]
    return T.StructType(fields)


def predict_udf(ref: str, *, trusted: bool = False, accelerate: str = "auto",
                registry: Registry | None = None) -> Any:
    """A pandas UDF scoring with ``ref``: ``name``, ``name:3``, ``name@alias`` or a folder."""
    try:
        from pyspark.sql.functions import pandas_udf  # type: ignore[attr-defined]
    except ImportError:
        raise UnsupportedModelError(
            "predict_udf needs PySpark; run: pip install 'modelport[spark]'") from None
    import modelport

    model = modelport.load(ref, trusted=trusted, registry=registry)
    if model.path is None:
        raise ConfigurationError(f"model {model.ref} has no bundle folder executors can load")
    if accelerate not in ("auto", "onnx", "off"):
        raise ConfigurationError("accelerate is one of auto, onnx, off")
    path, signature = str(model.path), model.signature
    names = signature.input_names

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from modelport.batch.task import runner_for

        runner = runner_for(path, trusted, accelerate)  # type: ignore[arg-type]
        for frame in batches:
            result = runner.predict(signature.coerce(frame[names]), source="spark")
            out = pd.DataFrame({"prediction": result.labels if result.labels is not None
                                else next(iter(result.outputs.values()))})
            if result.probabilities is not None and signature.classes is not None:
                for j, cls in enumerate(signature.classes):
                    out[f"probability_{cls}"] = result.probabilities[:, j]
            yield out

    return pandas_udf(score, result_type(signature))


__all__ = ["predict_udf", "result_type"]
