"""``modelport export REF --format web``: a static folder that predicts in the browser.

::

    site/
      index.html              demo form generated from the signature (prefilled: example rows)
      modelport.js            predict(rows) -> the REST API's answer; input checks by the signature
      model.js                the ONNX graph (base64) and what the page needs to know about it
      ort/ort.wasm.min.js     onnxruntime-web's WebAssembly build (MIT, see ort/LICENSE)
      ort/ort-wasm-glue.js    its Emscripten glue module, as a string
      ort/ort-wasm-binary.js  its .wasm binary, as base64
      ort/LICENSE
      README.md

Every file is a classic script or a page: browsers refuse ``fetch`` and ES-module imports of
``file://`` URLs, so the model and the runtime travel inside scripts, and the glue module is
imported from a ``blob:`` URL made in the page. The site works from ``file://`` or any static
host, offline, and asks for nothing outside its folder. The graph is the ONNX export with plain
probability tensors (:func:`modelport.export.onnx_file.export_onnx`, parity-checked).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UnsupportedModelError
from modelport.export.onnx_file import OnnxExport, OnnxOptions, export_onnx
from modelport.export.ortweb import LICENSE_TEXT, obtain

if TYPE_CHECKING:
    from modelport.bundle.signature import ColumnSpec
    from modelport.export.source import ExportSource

#: example rows shown by the demo form
EXAMPLES = 5
_ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
               7: "int64", 8: "string", 9: "bool", 11: "float64", 12: "uint32", 13: "uint64"}


@dataclass
class WebSite:
    """The files of the site (relative path → content) and the export behind them."""

    files: dict[str, str | bytes]
    onnx: OnnxExport
    ort_version: str

    def report(self) -> dict[str, Any]:
        sizes = {rel: len(c.encode() if isinstance(c, str) else c) for rel, c in self.files.items()}
        return {"files": sizes, "total_bytes": sum(sizes.values()),
                "onnxruntime_web": self.ort_version, "onnx": self.onnx.report()}


def build_site(source: ExportSource, *, cache_root: Path,
               onnxruntime_web: str | Path | None = None,
               options: OnnxOptions | None = None) -> WebSite:
    """Every file of the browser bundle for ``source``'s model."""
    options = options or OnnxOptions()
    if options.dtype != "float32":
        raise UnsupportedModelError("the web export runs float32 graphs; drop --dtype")
    exported = export_onnx(source, options)
    meta = _meta(source, exported)
    ort = obtain(cache_root, onnxruntime_web)
    line = source.provenance.line()
    header = f"/* {line}; onnxruntime-web {ort.version} (MIT) */\n"
    glue = ort.read("ort-wasm-simd-threaded.mjs").decode("utf-8")
    wasm = base64.b64encode(ort.read("ort-wasm-simd-threaded.wasm")).decode("ascii")
    model_js = (f"/* {line} */\nglobalThis.MODELPORT_MODEL = "
                + json.dumps({"meta": meta, "onnx": base64.b64encode(exported.onnx_bytes)
                              .decode("ascii")}, default=_plain) + ";\n")
    files: dict[str, str | bytes] = {
        "index.html": _page(source, meta),
        "modelport.js": f"/* {line} */\n" + _asset("modelport.js"),
        "model.js": model_js,
        "ort/ort.wasm.min.js": header + ort.read("ort.wasm.min.js").decode("utf-8"),
        "ort/ort-wasm-glue.js": header + "globalThis.MODELPORT_ORT_GLUE = "
                                + json.dumps(glue) + ";\n",
        "ort/ort-wasm-binary.js": header + f'globalThis.MODELPORT_ORT_WASM = "{wasm}";\n',
        "ort/LICENSE": f"onnxruntime-web {ort.version}, copied by modelport ({line})\n\n"
                       + LICENSE_TEXT,
        "README.md": _readme(source, ort.version),
    }
    return WebSite(files, exported, ort.version)


def feeds(onnx_bytes: bytes, signature_inputs: list[ColumnSpec], kind: str) -> list[dict[str, Any]]:
    """How rows become the graph's input tensors (mirrors ``OnnxPredictor.feeds``)."""
    import onnx

    proto = onnx.load_model_from_string(onnx_bytes)
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    names = [s.name for s in signature_inputs]

    def elem(value: Any) -> str:
        code = value.type.tensor_type.elem_type
        if code not in _ELEM_TYPES:
            raise UnsupportedModelError(
                f"the graph input {value.name!r} has ONNX element type {code}, which the browser "
                "runtime cannot be fed")
        return _ELEM_TYPES[code]

    def rank(value: Any) -> int:
        return len(value.type.tensor_type.shape.dim)

    if kind == "columns" and len(inputs) == 1 and rank(inputs[0]) == 2:
        return [{"name": inputs[0].name, "type": elem(inputs[0]), "columns": names, "rank": 2,
                 "shape": []}]
    by_name = all(i.name in names for i in inputs)
    out = []
    for position, value in enumerate(inputs):
        column = value.name if by_name else names[position]
        spec = signature_inputs[names.index(column)]
        out.append({"name": value.name, "type": elem(value), "columns": [column],
                    "rank": rank(value), "shape": list(spec.shape)})
    return out


def _meta(source: ExportSource, exported: OnnxExport) -> dict[str, Any]:
    import onnx

    model = source.model
    sig = model.signature
    outputs = [o.name for o in onnx.load_model_from_string(exported.onnx_bytes).graph.output]
    from modelport.flavors.onnx import looks_like_classifier

    return {
        "model": model.name, "version": model.version, "made_by": source.provenance.line(),
        "signature": sig.to_dict(), "feeds": feeds(exported.onnx_bytes, list(sig.inputs),
                                                   sig.kind),
        "classifier": looks_like_classifier(outputs), "labels_from_proba":
            exported.labels_from_proba, "examples": _examples(model),
        "parity": exported.parity.to_dict(),
    }


def _examples(model: Any) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if model.manifest.example is None or model.path is None:
        return []
    table = pq.ParquetFile(model.path / model.manifest.example).read()
    rows: list[dict[str, Any]] = table.slice(0, EXAMPLES).to_pylist()
    return rows


def _field(spec: ColumnSpec) -> str:
    name = html.escape(spec.name, quote=True)
    label = html.escape(f"{spec.name} ({spec.dtype}{', optional' if spec.nullable else ''})")
    if spec.dtype == "bool":
        return f'  <label>{label}<input type="checkbox" name="{name}"></label>'
    if spec.shape:
        return (f'  <label>{label} — JSON array of shape {list(spec.shape)}'
                f'<input type="text" name="{name}"></label>')
    if spec.dtype == "string":
        return f'  <label>{label}<input type="text" name="{name}"></label>'
    step = "any" if spec.dtype.startswith("float") else "1"
    required = "" if spec.nullable else " required"
    return f'  <label>{label}<input type="number" step="{step}" name="{name}"{required}></label>'


def _page(source: ExportSource, meta: dict[str, Any]) -> str:
    model = source.model
    title = f"{model.name}" + (f" version {model.version}" if model.version is not None else "")
    task = model.signature.task
    note = (f"{task.capitalize()} model predicting in this browser with onnxruntime-web "
            f"(WebAssembly); nothing is sent anywhere. {source.provenance.line()}.")
    return (_asset("index.html")
            .replace("{{PROVENANCE}}", html.escape(source.provenance.line()))
            .replace("{{TITLE}}", html.escape(title))
            .replace("{{NOTE}}", html.escape(note))
            .replace("{{FIELDS}}", "\n".join(_field(s) for s in model.signature.inputs)))


def _readme(source: ExportSource, ort_version: str) -> str:
    return f"""# {source.model.name} in the browser

{source.provenance.line()}; runtime: onnxruntime-web {ort_version} (WebAssembly, MIT).

Open `index.html` (from disk or any static host: nothing is fetched from elsewhere), or use the
API from your own page, after the same five scripts as `index.html`:

```js
const answer = await modelport.predict([{{...}}, {{...}}]);  // as POST /predict/{{model}}
```

`modelport.signature` lists the inputs; a row that does not fit throws
`modelport.ModelportInputError` with `field` naming the column.
"""


def _asset(name: str) -> str:
    return (resources.files("modelport.export") / "assets" / name).read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    import datetime as dt

    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
