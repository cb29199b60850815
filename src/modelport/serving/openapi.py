"""The OpenAPI document of a running server, with each served model's input schema."""

from __future__ import annotations

import html
from typing import Any

import orjson

import modelport
from modelport.bundle.model import Model
from modelport.bundle.signature import ColumnSpec

_TYPES: dict[str, dict[str, Any]] = {"string": {"type": "string"}, "bool": {"type": "boolean"}}


def _scalar(spec: ColumnSpec) -> dict[str, Any]:
    base: dict[str, Any] = dict(_TYPES.get(spec.dtype) or (
        {"type": "integer"} if spec.dtype.startswith(("int", "uint")) else {"type": "number"}))
    base["description"] = spec.dtype
    for _ in spec.shape:
        base = {"type": "array", "items": base}
    if spec.nullable:
        base["nullable"] = True
    return base


def record_schema(model: Model) -> dict[str, Any]:
    """JSON Schema of one input record of ``model``."""
    inputs = model.signature.inputs
    return {
        "type": "object",
        "properties": {s.name: _scalar(s) for s in inputs},
        "required": [s.name for s in inputs],
        "additionalProperties": False,
    }


def _v2_request() -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"}, "data": {"type": "array", "items": {}}}}
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "inputs": {"type": "array", "items": tensor},
        "outputs": {"type": "array", "items": {"type": "object"}}}}


def document(models: dict[str, Model]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    error = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}
    for name, model in models.items():
        key = f"{name.replace('@', '_').replace(':', '_')}_record"
        schemas[key] = record_schema(model)
        ref = {"$ref": f"#/components/schemas/{key}"}
        tags = [name]
        paths[f"/predict/{name}"] = {"post": {
            "tags": tags, "summary": f"Predict with {name} (version {model.version})",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [ref, {"type": "array", "items": ref}]}}}},
            "responses": {"200": {"description": "labels, probabilities, version, prediction id"},
                          "400": error, "503": error}}}
        paths[f"/v2/models/{name}/infer"] = {"post": {
            "tags": tags, "summary": "Open Inference Protocol V2 inference",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _v2_request()}}},
            "responses": {"200": {"description": "output tensors"}, "400": error}}}
        paths[f"/v2/models/{name}"] = {"get": {"tags": tags, "summary": "V2 model metadata",
                                               "responses": {"200": {"description": "metadata"}}}}
        paths[f"/v1/models/{name}:predict"] = {"post": {
            "tags": tags, "summary": "KServe V1 predict",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "instances": {"type": "array", "items": ref}}}}}},
            "responses": {"200": {"description": "predictions"}, "400": error}}}
    paths["/invocations"] = {"post": {
        "tags": ["mlflow"], "summary": "MLflow scoring (dataframe_split, dataframe_records, "
        "instances, inputs, text/csv)", "responses": {"200": {"description": "predictions"}}}}
    for path, summary in [("/v2/health/live", "liveness"), ("/v2/health/ready", "readiness"),
                          ("/metrics", "Prometheus metrics")]:
        paths[path] = {"get": {"tags": ["server"], "summary": summary,
                               "responses": {"200": {"description": "ok"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelport", "version": modelport.__version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def page(doc: dict[str, Any]) -> str:
    """A docs page: Swagger UI when the browser can fetch it, a plain summary otherwise."""
    rows = "".join(
        f"<li><code>{html.escape(m.upper())} {html.escape(p)}</code> "
        f"{html.escape(op.get('summary', ''))}</li>"
        for p, ops in doc["paths"].items() for m, op in ops.items())
    schemas = html.escape(orjson.dumps(doc["components"]["schemas"],
                                       option=orjson.OPT_INDENT_2).decode())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>modelport API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body>
<div id="swagger-ui"><h1>modelport API</h1><ul>{rows}</ul>
<h2>Input schemas</h2><pre>{schemas}</pre>
<p>Machine-readable: <a href="openapi.json">openapi.json</a></p></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>if (window.SwaggerUIBundle) {{
  SwaggerUIBundle({{url: "openapi.json", dom_id: "#swagger-ui"}});
}}</script>
</body></html>"""
