"""The OpenAPI document of a running server, with each served model's input schema, and the
``/docs`` page.

Each model's request bodies carry its bundle's example rows (``modelport.save(example=...)``) as
request examples, in the layout of each route, so "Try it out" in ``/docs`` sends a valid request.
The page loads Swagger UI from the package itself (``modelport/web/static/swagger``, served at
``/docs/assets/``), never from a CDN, so the docs work offline.
"""

from __future__ import annotations

import html
import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from modelport.bundle.model import Model

log = logging.getLogger("modelport.serving")

#: rows of a bundle's example shown as a request example
EXAMPLE_ROWS = 2
#: the Swagger UI files served at /docs/assets/ and their content types
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

def document(models: dict[str, Model], *, auth: bool = False) -> dict[str, Any]:
    """The OpenAPI document (:mod:`modelport.serving.openapi_spec`) with each model's example
    rows as request examples."""
    from modelport.serving.openapi_spec import document as spec_document

    doc = spec_document(models, auth=auth)
    paths = doc["paths"]
    mlflow_examples = {}
    for name, model in models.items():
        rows = example_rows(model)
        if not rows:
            continue
        examples = _examples(model, rows)
        for path, kind in ((f"/predict/{name}", "simple"), (f"/v2/models/{name}/infer", "v2"),
                           (f"/v1/models/{name}:predict", "v1")):
            paths[path]["post"]["requestBody"]["content"]["application/json"].update(
                examples[kind])
        mlflow_examples[name] = {"summary": f"{name}: example rows",
                                 "value": _dataframe_split(rows)}
    if mlflow_examples and "/invocations" in paths:
        paths["/invocations"]["post"]["requestBody"]["content"]["application/json"][
            "examples"] = mlflow_examples
    return doc


def page(doc: dict[str, Any], base: str = "/") -> str:
    """The docs page: Swagger UI from the package's own assets under ``base`` (the server's root
    path), with a plain summary inside (what a browser without JavaScript shows)."""
    rows = "".join(
        f"<li><code>{html.escape(m.upper())} {html.escape(p)}</code> "
        f"{html.escape(op.get('summary', ''))}</li>"
        for p, ops in doc["paths"].items() for m, op in ops.items())
    schemas = html.escape(orjson.dumps(doc["components"]["schemas"],
                                       option=orjson.OPT_INDENT_2).decode())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>modelport API</title>
<link rel="icon" type="image/png" href="{base}docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="{base}docs/assets/swagger-ui.css">
</head><body>
<div id="swagger-ui"><h1>modelport API</h1><ul>{rows}</ul>
<h2>Input schemas</h2><pre>{schemas}</pre>
<p>Machine-readable: <a href="{base}openapi.json">openapi.json</a></p></div>
<script src="{base}docs/assets/swagger-ui-bundle.js"></script>
<script>if (window.SwaggerUIBundle) {{
  window.ui = SwaggerUIBundle({{url: "{base}openapi.json", dom_id: "#swagger-ui",
                               validatorUrl: null}});
}}</script>
</body></html>"""


def asset(name: str) -> tuple[bytes, str] | None:
    """A Swagger UI file and its content type, or None for a name that is not one."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return _read_asset(name), content_type


@lru_cache(maxsize=len(ASSETS))
def _read_asset(name: str) -> bytes:
    return (resources.files("modelport") / "web" / "static" / "swagger" / name).read_bytes()


def example_rows(model: Model) -> list[dict[str, Any]]:
    """The first rows of the bundle's example as JSON records (empty without an example)."""
    if model.path is None or model.manifest.example is None:
        return []
    return list(_example_rows(model.path / model.manifest.example))


@lru_cache(maxsize=256)
def _example_rows(path: Path) -> tuple[dict[str, Any], ...]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path).read().slice(0, EXAMPLE_ROWS)
    except (OSError, ValueError) as exc:
        log.warning("example rows of %s are unreadable: %s", path, exc)
        return ()
    # through JSON once, so NaN becomes null and NumPy / date values become JSON values
    rows: list[dict[str, Any]] = orjson.loads(orjson.dumps(
        table.to_pylist(), default=str, option=orjson.OPT_SERIALIZE_NUMPY))
    return tuple(rows)


def _examples(model: Model, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A request example per protocol, built from ``rows``."""
    from modelport.serving.v2 import datatype_of

    names = [s.name for s in model.signature.inputs if all(s.name in r for r in rows)]
    tensors = []
    for spec in model.signature.inputs:
        if spec.name not in names:
            continue
        values = [r[spec.name] for r in rows]
        tensors.append({"name": spec.name, "shape": [len(rows), *spec.shape],
                        "datatype": datatype_of(spec.dtype), "data": _flat(values)})
    return {
        "simple": {"example": rows[0] if len(rows) == 1 else rows},
        "v1": {"example": {"instances": rows}},
        "v2": {"example": {"inputs": tensors}},
    }


def _dataframe_split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"dataframe_split": {"columns": columns,
                                "data": [[r.get(c) for c in columns] for r in rows]}}


def _flat(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, list):
            out.extend(_flat(value))
        else:
            out.append(value)
    return out
