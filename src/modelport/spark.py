"""``predict_udf``: a modelport model as a Spark pandas UDF, for users' own Spark jobs.

>>> from pyspark.sql import functions as F                                  # doctest: +SKIP
>>> score = predict_udf("churn@production")                                 # doctest: +SKIP
>>> df.withColumn("score", score(F.struct(*df.columns)))                    # doctest: +SKIP
...   .select("customer_id", "score.prediction", "score.probability_1")

The UDF takes one struct column holding (at least) the model's input columns and returns a
struct in the tabular form of :mod:`modelport.core.schema`: ``prediction_id`` (``<P>-<i>`` for
row ``i`` of each Arrow batch, ``P`` a fresh id per batch), ``prediction``,
``probability_<class>`` for classifiers, further outputs, ``model``, ``version`` and
``predicted_at``. Each executor process loads
the model once (from the bundle folder, which executors must be able to read: a shared
filesystem, or ``local[*]`` mode) and scores Arrow batches with the same core as every other
form; ONNX acceleration applies when the model converts faithfully.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd  # at runtime: PySpark reads the UDF's type hints to pick its kind

from modelport.bundle.signature import Signature
from modelport.core.schema import PredictionSchema, row_ids
from modelport.errors import ConfigurationError, UnsupportedModelError

if TYPE_CHECKING:
    from modelport.registry import Registry


def result_type(signature: Signature) -> Any:
    """The Spark struct type the UDF returns for a model with this signature."""
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import from_arrow_type

    schema = PredictionSchema.of(signature).arrow_schema()
    return T.StructType([T.StructField(f.name, from_arrow_type(f.type)) for f in schema])


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
        from modelport.core.runner import new_id

        runner = runner_for(path, trusted, accelerate)  # type: ignore[arg-type]
        schema = PredictionSchema.of(signature)
        for frame in batches:
            request_id = new_id()
            result = runner.predict(signature.coerce(frame[names]), source="spark",
                                    request_id=request_id)
            table = schema.table(result, ids=row_ids(request_id, result.n_rows),
                                 model=runner.name, version=runner.version,
                                 predicted_at=datetime.now(UTC))
            yield table.to_pandas()

    return pandas_udf(score, result_type(signature))


__all__ = ["predict_udf", "result_type"]
