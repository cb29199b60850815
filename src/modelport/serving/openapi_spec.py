"""The OpenAPI 3.1 document of a running server: what each route accepts and answers.

The document describes the server as it behaves, so that a client (or schemathesis) that sends
what the schemas allow gets an answer from the documented ones:

- request bodies use each served model's own input schema: a record's columns with their JSON
  types and ranges (numbers within what a JSON reader takes as a 64-bit value), ``required``,
  lists of at least one record; V2 requests as one tensor per input column, ``shape`` equal to
  the length of ``data`` (written out for 1-4 rows: JSON Schema cannot tie two lengths
  together in general), each input once, named as the model names it;
- every answer the server gives is listed with its body: 400 (the request does not fit the
  model), 401 / 403 / 429 (with authentication; ``WWW-Authenticate`` / ``Retry-After``), 404,
  413 (body too large), 500 (the model failed; the message never carries its words), 503
  (overloaded or not ready, ``Retry-After``) and 504 (timeout), in each protocol's error shape;
- with authentication on, every route but the health checks declares the bearer scheme.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import modelport
from modelport.bundle.model import Model
from modelport.bundle.signature import ColumnSpec

#: a JSON number every reader (orjson) takes: integers must fit 64 bits
_JSON_NUMBER_LIMIT = 9.2e18
#: the row counts the V2 schema writes out (shape == [len(data)])
V2_ROWS = (1, 2, 3, 4)

_ERROR_SHAPES: dict[str, dict[str, Any]] = {
    "v2": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "mlflow": {"type": "object", "required": ["error_code", "message"], "properties": {
        "error_code": {"type": "string"}, "message": {"type": "string"}}},
    "simple": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "field": {"type": ["string", "null"]}}},
}
_RETRY = {"Retry-After": {"description": "seconds to wait before retrying",
                          "schema": {"type": "string"}}}
_AUTHENTICATE = {"WWW-Authenticate": {"description": "the bearer scheme",
                                      "schema": {"type": "string"}}}
_JSON_ANY: dict[str, Any] = {"application/json": {"schema": {}}}


def scalar_schema(spec: ColumnSpec) -> dict[str, Any]:
    """JSON Schema of one value of a column."""
    dtype = spec.dtype
    base: dict[str, Any]
    if dtype == "string":
        base = {"type": "string"}
    elif dtype == "bool":
        base = {"type": "boolean"}
    elif dtype.startswith(("int", "uint")):
        info = np.iinfo(np.dtype(dtype))
        base = {"type": "integer", "minimum": max(int(info.min), -2**63),
                "maximum": min(int(info.max), 2**63 - 1)}
    else:
        base = {"type": "number", "minimum": -_JSON_NUMBER_LIMIT,
                "maximum": _JSON_NUMBER_LIMIT}
    base["description"] = dtype
    for size in reversed(spec.shape):
        base = {"type": "array", "items": base,
                **({"minItems": size, "maxItems": size} if size and size > 0 else {})}
    if spec.nullable:
        base = {"anyOf": [base, {"type": "null"}], "description": f"{dtype}, nullable"}
    return base


def record_schema(model: Model) -> dict[str, Any]:
    """JSON Schema of one input record of ``model``."""
    inputs = model.signature.inputs
    return {
        "type": "object",
        "properties": {s.name: scalar_schema(s) for s in inputs},
        "required": [s.name for s in inputs],
        "additionalProperties": False,
    }


def _v2_datatypes(spec: ColumnSpec) -> list[str]:
    if spec.dtype == "string":
        return ["BYTES"]
    if spec.dtype == "bool":
        return ["BOOL"]
    if spec.dtype.startswith(("float", "double")):
        return ["FP64", "FP32"] if spec.dtype == "float64" else ["FP32", "FP64"]
    from modelport.serving.v2 import datatype_of

    return [datatype_of(spec.dtype)]


def v2_request_schema(model: Model) -> dict[str, Any]:
    """A V2 inference request for ``model``: each input once, ``shape`` matching ``data``."""
    outputs = [s.name for s in model.signature.outputs]
    output_item: dict[str, Any] = {"type": "object", "required": ["name"], "properties": {
        "name": {"enum": outputs} if outputs else {"type": "string"},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}},
                       "additionalProperties": False}}, "additionalProperties": False}
    alternatives = []
    for rows in V2_ROWS:
        tensors = []
        for spec in model.signature.inputs:
            value = scalar_schema(spec)
            tensors.append({
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"const": spec.name},
                    "shape": {"const": [rows, *spec.shape]},
                    "datatype": {"enum": _v2_datatypes(spec)},
                    "data": {"type": "array", "minItems": rows, "maxItems": rows,
                             "items": value},
                },
                "additionalProperties": False,
            })
        alternatives.append({
            "type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string", "maxLength": 128},
                "inputs": {"type": "array", "prefixItems": tensors, "items": False,
                           "minItems": len(tensors)},
                "outputs": {"type": "array", "items": output_item, "uniqueItems": True},
            }, "additionalProperties": False})
    return {"oneOf": alternatives}


def _errors(shape: str, *, auth: bool, codes: tuple[int, ...]) -> dict[str, Any]:
    body = {"application/json": {"schema": _ERROR_SHAPES[shape]}}
    text = {
        400: "the request does not fit the model or the protocol",
        401: "no API key, or one the server does not accept",
        403: "the key lacks the scope this route needs",
        404: "no such model served here",
        413: "the request body is larger than the server's limit",
        429: "this key (or client) is over its rate or quota",
        500: "the model failed on this request (details in the server log)",
        503: "overloaded or not ready; retry after Retry-After",
        504: "the prediction did not finish in time",
    }
    out: dict[str, Any] = {}
    for code in codes:
        if code in (401, 403, 429) and not auth:
            continue
        response: dict[str, Any] = {"description": text[code], "content": body}
        if code in (429, 503):
            response["headers"] = _RETRY
        if code == 401:
            response["headers"] = _AUTHENTICATE
        out[str(code)] = response
    return out


_PREDICT = (400, 401, 403, 404, 413, 429, 500, 503, 504)
_READ = (401, 403, 404, 429)


def document(models: dict[str, Model], *, auth: bool = False) -> dict[str, Any]:
    """The OpenAPI document for ``models`` (served name → model)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name, model in models.items():
        key = f"{name.replace('@', '_').replace(':', '_')}_record"
        schemas[key] = record_schema(model)
        ref = {"$ref": f"#/components/schemas/{key}"}
        rows = {"type": "array", "items": ref, "minItems": 1}
        tags = [name]
        paths[f"/predict/{name}"] = {"post": _op(
            tags, f"Predict with {name} (version {model.version})",
            {"oneOf": [ref, rows]}, "simple", auth,
            "prediction records: prediction id, prediction, probabilities, model, version")}
        paths[f"/v2/models/{name}/infer"] = {"post": _op(
            tags, "Open Inference Protocol V2 inference", v2_request_schema(model), "v2", auth,
            "output tensors (binary tensor data after the JSON header when an output asks for "
            "binary_data)")}
        paths[f"/v2/models/{name}/infer"]["post"]["responses"]["200"]["content"] = {
            **_JSON_ANY, "application/octet-stream": {"schema": {"type": "string",
                                                                 "format": "binary"}}}
        paths[f"/v1/models/{name}:predict"] = {"post": _op(
            tags, "KServe V1 predict", {"type": "object", "required": ["instances"],
                                        "properties": {"instances": rows},
                                        "additionalProperties": False},
            "v1", auth, "predictions")}
        paths[f"/v2/models/{name}"] = {"get": _get(tags, "V2 model metadata", auth)}
        paths[f"/v2/models/{name}/ready"] = {"get": _get(
            tags, "V2 model readiness", auth, extra={"503": {
                "description": "not ready", "content": _JSON_ANY}})}
        paths[f"/v1/models/{name}"] = {"get": _get(tags, "KServe V1 model status", auth)}
    if models:
        mlflow_bodies = []
        for name in models:
            ref = {"$ref": f"#/components/schemas/"
                           f"{name.replace('@', '_').replace(':', '_')}_record"}
            records = {"type": "array", "items": ref, "minItems": 1}
            columns = [s.name for s in models[name].signature.inputs]
            row = {"type": "array", "prefixItems": [
                scalar_schema(s) for s in models[name].signature.inputs],
                "items": False, "minItems": len(columns)}
            mlflow_bodies += [
                {"type": "object", "required": ["dataframe_split"], "properties": {
                    "dataframe_split": {"type": "object", "required": ["columns", "data"],
                                        "properties": {"columns": {"const": columns},
                                                       "data": {"type": "array", "items": row,
                                                                "minItems": 1}},
                                        "additionalProperties": False}},
                 "additionalProperties": False},
                {"type": "object", "required": ["dataframe_records"],
                 "properties": {"dataframe_records": records}, "additionalProperties": False},
                {"type": "object", "required": ["instances"],
                 "properties": {"instances": records}, "additionalProperties": False},
            ]
        operation = _op(["mlflow"], "MLflow scoring (JSON: dataframe_records, dataframe_split, "
                        "instances, inputs; or text/csv)", {"oneOf": mlflow_bodies}, "mlflow",
                        auth, "predictions")
        if len(models) > 1:
            operation["parameters"] = [{"name": "model", "in": "query", "required": True,
                                        "schema": {"enum": list(models)}}]
        paths["/invocations"] = {"post": operation}
    paths["/v2"] = {"get": _get(["server"], "V2 server metadata", auth)}
    for path, summary in [("/v2/health/live", "liveness"), ("/v2/health/ready", "readiness")]:
        paths[path] = {"get": {"tags": ["server"], "summary": summary, "security": [],
                               "responses": {"200": {"description": "ok", "content": _JSON_ANY},
                                             "503": {"description": "not ready",
                                                     "content": _JSON_ANY}}}}
    for path, summary in [("/ping", "MLflow liveness"), ("/health", "MLflow readiness")]:
        paths[path] = {"get": {"tags": ["mlflow"], "summary": summary, "security": [],
                               "responses": {
                                   "200": {"description": "ok", "content": _TEXT},
                                   "503": {"description": "not ready", "content": _TEXT}}}}
    paths["/metrics"] = {"get": _get(["server"], "Prometheus metrics", auth, content=_TEXT)}
    paths["/version"] = {"get": _get(["mlflow"], "modelport version", auth, content=_TEXT,
                                     shape="mlflow")}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "modelport", "version": modelport.__version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "an API key from 'modelport auth create-key', or an OIDC JWT"}}
        document["security"] = [{"bearer": []}]
    return document


_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _op(tags: list[str], summary: str, body: dict[str, Any], shape: str, auth: bool,
        ok: str) -> dict[str, Any]:
    return {
        "tags": tags, "summary": summary,
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": body}}},
        "responses": {"200": {"description": ok, "content": _JSON_ANY},
                      **_errors("v2" if shape == "v1" else shape, auth=auth, codes=_PREDICT)},
    }


def _get(tags: list[str], summary: str, auth: bool, *, content: dict[str, Any] | None = None,
         extra: dict[str, Any] | None = None, shape: str = "v2") -> dict[str, Any]:
    return {"tags": tags, "summary": summary, "responses": {
        "200": {"description": "ok", "content": content or _JSON_ANY},
        **(extra or {}), **_errors(shape, auth=auth, codes=_READ)}}


__all__ = ["V2_ROWS", "document", "record_schema", "scalar_schema", "v2_request_schema"]
