"""Lambda cold start: ``modelport package --target lambda``'s handler against a plain baseline.

Both are invoked in-process exactly as the Lambda Python runtime does it (import the handler
module, then call ``handler(event, context)``) with an API Gateway HTTP API (v2) event, each in a
fresh Python process, interleaved, ``--repeat`` times:

(a) modelport: the generated ``handler.py`` (Mangum over the ``modelport serve`` app, the
    bundle's stored ONNX form checked at load, the model loaded at import);
(b) baseline: a hand-written FastAPI app that opens the same ONNX graph with ONNX Runtime at
    import and answers ``POST /predict`` with labels and probabilities, behind the same Mangum.

Reported per variant (medians): cold start = import of the handler module to the first answer
(what a cold invocation adds to the runtime's own start), the import alone, the first
invocation, and a warm invocation (median of 50); then the ratios (a) / (b). The machine may be
shared: compare the ratios of one run.

    python benchmarks/lambda_cold_start.py [--repeat 7] [--trees 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EVENTS = HERE.parent / "tests" / "export"

BASELINE = '''
import json
from pathlib import Path

import numpy as np
import onnxruntime
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from mangum import Mangum

options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
session = onnxruntime.InferenceSession(str(Path(__file__).parent / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
COLUMNS = json.loads((Path(__file__).parent / "columns.json").read_text())
CLASSES = json.loads((Path(__file__).parent / "classes.json").read_text())
app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> JSONResponse:
    rows = await request.json()
    rows = rows if isinstance(rows, list) else [rows]
    matrix = np.array([[row[c] for c in COLUMNS] for row in rows], dtype=np.float32)
    labels, proba = session.run(None, {session.get_inputs()[0].name: matrix})
    return JSONResponse({"predictions": [
        {"prediction": int(label), "probabilities": dict(zip(CLASSES, p.tolist()))}
        for label, p in zip(labels.tolist(), proba)]})


handler = Mangum(app, lifespan="off")
'''

MEASURE = '''
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import lambda_events
event = lambda_events.http_v2("POST", sys.argv[3], sys.argv[4])
t0 = time.perf_counter()
import handler
t1 = time.perf_counter()
first = handler.handler(event, None)
t2 = time.perf_counter()
assert first["statusCode"] == 200, first
warm = []
for _ in range(50):
    s = time.perf_counter()
    handler.handler(event, None)
    warm.append(time.perf_counter() - s)
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3,
                  "cold_ms": (t2 - t0) * 1e3, "warm_ms": statistics.median(warm) * 1e3,
                  "body": first["body"]}))
'''


def build(root: Path, trees: int) -> dict[str, tuple[Path, str]]:
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    import modelport
    from modelport.export import serverless
    from modelport.export.onnx_file import export_onnx
    from modelport.export.output import write_tree
    from modelport.export.source import ExportSource

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(5000, 30)), columns=[f"f{i}" for i in range(30)])
    y = (x.f0 + x.f1 * x.f2 + rng.normal(scale=0.5, size=len(x)) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=trees, random_state=0).fit(x, y)
    bundle = modelport.save(model, root / "bundle", name="bench", example=x.head(200))
    source = ExportSource.open(str(bundle))
    function = root / "modelport"
    write_tree(serverless.build_function(source), function, force=True,
               command="benchmark", executable=serverless.EXECUTABLE)
    baseline = root / "baseline"
    baseline.mkdir()
    (baseline / "handler.py").write_text(textwrap.dedent(BASELINE))
    (baseline / "model.onnx").write_bytes(export_onnx(source).onnx_bytes)
    (baseline / "columns.json").write_text(json.dumps(list(x.columns)))
    (baseline / "classes.json").write_text(json.dumps([str(c) for c in model.classes_]))
    row = json.dumps([{c: float(v) for c, v in x.iloc[7].items()}])
    (root / "row.json").write_text(row)
    return {"modelport": (function, "/predict/bench"), "baseline": (baseline, "/predict")}


def run_once(folder: Path, path: str, row: str, home: Path) -> dict[str, Any]:
    import os

    env = {**os.environ, "MODELPORT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(folder), str(EVENTS), path, row],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{folder.name} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lambda-bench-") as tmp:
        root = Path(tmp)
        variants = build(root, args.trees)
        row = (root / "row.json").read_text()
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, (folder, path) in variants.items():
                runs[name].append(run_once(folder, path, row, root / "home"))
    keys = ("cold_ms", "import_ms", "first_ms", "warm_ms")
    summary = {name: {k: statistics.median(r[k] for r in results) for k in keys}
               for name, results in runs.items()}
    ratios = {k: summary["modelport"][k] / summary["baseline"][k] for k in keys}
    print(f"HistGradientBoosting, {args.trees} trees x 30 features; medians of {args.repeat} "
          "fresh processes each (API Gateway HTTP API v2 event, one row)")
    print(f"{'':12}" + "".join(f"{k:>12}" for k in keys))
    for name, values in summary.items():
        print(f"{name:12}" + "".join(f"{values[k]:12.1f}" for k in keys))
    print(f"{'ratio':12}" + "".join(f"{ratios[k]:12.2f}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "ratios": ratios,
                                               "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
