"""The prediction log's two tables, their columns and what each means.

This is the contract that rollout, monitoring and online learning read; keep it stable and add
columns rather than change them.

**predictions** — one row per prediction, one table per model (the ``prediction`` column keeps the
model's own class / value dtype, which differs between models):

=================== ======================== ==================================================
column              Arrow type               meaning
=================== ======================== ==================================================
``prediction_id``   string                   the id the client received (see below)
``predicted_at``    timestamp[us, UTC]       when the model answered
``date``            string ``YYYY-MM-DD``    ``predicted_at``'s UTC day: the partition column
``model``           string                   model name
``version``         int64                    model version (null for an unregistered bundle)
``endpoint``        string                   endpoint called (null until rollouts route it)
``variant``         string                   variant that answered (null until rollouts)
``request_id``      string                   the request's ``x-request-id`` / batch / message id
``source``          string                   ``simple``, ``v2``, ``v1``, ``mlflow``, ``grpc``
                                             (the protocol), ``stream:<topic>``,
                                             ``batch:<run id>``, ``python``
``entity_key``      string                   the configured business key (``customer_id``)
``latency_ms``      float64                  model call time of the request this row was in
``inputs``          struct<feature: type>    the input features after the model's log policy
                                             (allowlist, dropped and hashed columns)
``prediction``      the model's dtype        class label or regressed value
``probability_<c>`` float64                  one per class, for classifiers with probabilities
``<output>``        native / list            further named outputs (``output_<name>`` when the
                                             name collides with a column above)
=================== ======================== ==================================================

Prediction ids: a REST / gRPC / Python request gets a 32-hex id ``P``; a one-row request's
prediction is ``P``, an n-row request's rows are ``P-0`` … ``P-<n-1>``; a batch run's rows are
``<run id>-<row>``, a stream's ``<topic>-<partition>-<offset>`` (both deterministic, so a rerun
writes the same ids; readers keep the first committed row of an id).

**feedback** — one table for every model, one row per feedback item as it arrived:

=================== ======================== ==================================================
``prediction_id``   string                   the prediction this is about (or null, see below)
``model``           string                   model name, when the sender gave it
``entity_key``      string                   business key, for feedback without a prediction id
``at``              timestamp[us, UTC]       for entity-key feedback: the outcome's time; the
                                             latest prediction for the key in ``[at - window_s,
                                             at]`` is the one labelled
``window_s``        float64                  the entity-key window in seconds (default 1 day)
``label``           string                   the true class, as text (cast to the model's class
                                             type when joined)
``value``           float64                  the true value, for regressors
``reward``          float64                  a reward, for bandits
``received_at``     timestamp[us, UTC]       when modelport stored it
``source``          string                   ``rest``, ``grpc``, ``kafka:<topic>``, ``file``,…
``date``            string                   ``received_at``'s UTC day: the partition column
=================== ======================== ==================================================

Repeated feedback for one prediction is idempotent: per field (label, value, reward) the
**latest received** non-empty one wins (a correction replaces a wrong label); resending the same
item changes nothing.
"""

from __future__ import annotations

import pyarrow as pa

#: the fixed leading columns of every predictions table, in order
PREDICTION_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("prediction_id", pa.string()),
    ("predicted_at", pa.timestamp("us", tz="UTC")),
    ("date", pa.string()),
    ("model", pa.string()),
    ("version", pa.int64()),
    ("endpoint", pa.string()),
    ("variant", pa.string()),
    ("request_id", pa.string()),
    ("source", pa.string()),
    ("entity_key", pa.string()),
    ("latency_ms", pa.float64()),
)
FIXED_NAMES = frozenset(n for n, _ in PREDICTION_COLUMNS) | {"inputs", "prediction"}

FEEDBACK_SCHEMA = pa.schema([
    ("prediction_id", pa.string()),
    ("model", pa.string()),
    ("entity_key", pa.string()),
    ("at", pa.timestamp("us", tz="UTC")),
    ("window_s", pa.float64()),
    ("label", pa.string()),
    ("value", pa.float64()),
    ("reward", pa.float64()),
    ("received_at", pa.timestamp("us", tz="UTC")),
    ("source", pa.string()),
    ("date", pa.string()),
])

#: the default entity-key window: feedback labels the key's latest prediction of the last day
DEFAULT_WINDOW_S = 86_400.0


def probability_column(cls: object) -> str:
    """``probability_<class>``: the column of one class's probability."""
    return f"probability_{cls}"


def output_column(name: str) -> str:
    """The column of an extra model output (prefixed when it would collide with a fixed one)."""
    if name in FIXED_NAMES or name.startswith("probability_"):
        return f"output_{name}"
    return name


__all__ = ["DEFAULT_WINDOW_S", "FEEDBACK_SCHEMA", "PREDICTION_COLUMNS", "output_column",
           "probability_column"]
