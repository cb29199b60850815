"""MLflow scoring protocol: ``POST /invocations`` as ``mlflow models serve`` accepts it.

JSON bodies name their layout with one key: ``dataframe_split`` (``columns`` + ``data`` rows),
``dataframe_records`` (a list of objects), ``instances`` (rows) or ``inputs`` (rows or columns);
``params`` is accepted and ignored. ``text/csv`` bodies carry a header line and one row per line,
read into the signature's types. The answer is ``{"predictions": [...]}``.

As with MLflow's pyfunc, columns the model's signature does not name are ignored here, whatever
``--extra-columns`` says for the other routes: MLflow clients send ids and other columns along,
and ``DataFrame.to_csv()`` writes the pandas index as a first column with an empty name.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from modelport.bundle.model import Model
from modelport.bundle.signature import ColumnSpec, ExtraColumns
from modelport.core.batch import Batch, Result
from modelport.errors import InvalidInputError

LAYOUTS = ("dataframe_split", "dataframe_records", "instances", "inputs")
#: what MLflow's pyfunc does with columns its signature does not name
EXTRA: ExtraColumns = "ignore"


def decode(body: bytes, content_type: str, model: Model) -> Batch:
    if content_type.startswith("text/csv"):
        return model.coerce(_csv_columns(body, model), extra=EXTRA)
    if content_type and not content_type.startswith("application/json"):
        raise InvalidInputError(
            f"unsupported content type {content_type!r}; send application/json or text/csv")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInputError(f"the JSON body must be an object with one of {list(LAYOUTS)}")
    keys = [k for k in LAYOUTS if k in payload]
    if len(keys) != 1:
        raise InvalidInputError(
            f"the JSON body must have exactly one of {list(LAYOUTS)}, got {sorted(payload)}")
    key = keys[0]
    data = payload[key]
    if key == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise InvalidInputError("'dataframe_split' needs 'columns' and 'data' (a list of rows)",
                                    field="dataframe_split")
        columns = data.get("columns") or model.signature.input_names
        rows = data["data"]
        if any(not isinstance(r, list) or len(r) != len(columns) for r in rows):
            raise InvalidInputError(
                f"each row of 'dataframe_split.data' must have {len(columns)} values "
                f"({columns})", field="dataframe_split")
        if [str(c) for c in columns] == model.signature.input_names:
            matrix = model.signature.rows_matrix(rows)  # plain numbers for float columns
            if matrix is not None:
                return model.signature.from_matrix(matrix)
        return model.coerce({str(c): [r[j] for r in rows] for j, c in enumerate(columns)},
                            extra=EXTRA)
    return model.coerce(data, extra=EXTRA)


def _csv_columns(body: bytes, model: Model) -> dict[str, list[Any]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("CSV body is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise InvalidInputError("CSV body needs a header line naming the columns")
    specs = {s.name: s for s in model.signature.inputs}
    columns: dict[str, list[Any]] = {h: [] for h in header}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInputError(f"CSV line {line} has {len(row)} values, header has "
                                    f"{len(header)}")
        for name, cell in zip(header, row, strict=True):
            columns[name].append(_cell(specs.get(name), name, cell, line))
    return columns


def _cell(spec: ColumnSpec | None, name: str, cell: str, line: int) -> Any:
    if spec is None or spec.dtype == "string":
        return cell if cell != "" or spec is None or not spec.nullable else None
    if cell == "":
        return None
    try:
        if spec.dtype == "bool":
            if cell.lower() in ("true", "1"):
                return True
            if cell.lower() in ("false", "0"):
                return False
            raise ValueError(cell)
        if spec.dtype.startswith(("int", "uint")):
            return int(cell)
        return float(cell)
    except ValueError:
        raise InvalidInputError(
            f"CSV line {line}, column {name!r}: expected {spec.dtype}, got {cell!r}",
            field=name) from None


def encode(result: Result) -> bytes:
    if result.labels is not None:
        predictions: Any = result.labels
        if predictions.dtype.kind in "OUS":
            predictions = predictions.tolist()
    else:
        predictions = result.to_records()
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
