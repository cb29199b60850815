"""Batch scoring benchmark: Parquet → Parquet, ``modelport batch run`` against two baselines.

For a ~100-tree HistGradientBoosting classifier and a LogisticRegression, on N rows x F float
features (default 1,000,000 x 30), each measured in its own process, in one run:

(a) ``modelport batch run BUNDLE --input in.parquet --output out`` exactly as a user runs it,
    on a bundle written by ``modelport.save`` (which stores the model's ONNX form, checked
    against the native model) — a first run (loads that form and re-checks it on the example
    rows; neither scikit-learn nor the converter is imported) and a second run;
(b) a naive pandas script: read everything, ``predict_proba``, write;
(c) the in-process limit: pyarrow record batches + the model converted to ONNX (ONNX Runtime,
    all cores), written with a ParquetWriter — no framework.

Reported per variant: wall time of the whole process (imports and model load included), the time
of the scoring section alone, rows/s for both, and peak resident memory (``VmHWM``; not
``ru_maxrss``, which a child started by ``subprocess`` inherits from this process, so any variant
using less than this benchmark's own ~500 MB read as ~500 MB). (a) also
runs on a quarter of the input to show that its peak memory does not grow with the input.

The machine may be shared: compare the ratios of one run, and use ``--repeat N`` to run every
variant N times, interleaved, and report each one's median (by wall time).

    python benchmarks/batch.py                       # 1M x 30, both models
    python benchmarks/batch.py --repeat 3 --json results.json
    python benchmarks/batch.py --rows 200000 --models logistic_regression
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

PANDAS_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    import pandas as pd, skops.io as sio, numpy as np
    model_file, src, dst = sys.argv[1:4]
    model = sio.load(model_file, trusted=sio.get_untrusted_types(file=model_file))
    t1 = time.perf_counter()
    frame = pd.read_parquet(src)
    features = frame.drop(columns=["id"])
    proba = model.predict_proba(features)
    out = pd.DataFrame({"id": frame["id"], "prediction": model.classes_[proba.argmax(axis=1)]})
    for j, c in enumerate(model.classes_):
        out[f"probability_{c}"] = proba[:, j]
    out.to_parquet(dst, index=False)
    t2 = time.perf_counter()
    print(json.dumps({"rows": len(out), "score_s": t2 - t1, "wall_in_s": t2 - t0,
                      "maxrss_mb": peak_mb()}))
""")

ONNX_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    import numpy as np, onnxruntime as ort, pyarrow as pa, pyarrow.parquet as pq
    onnx_file, src, dst, classes = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    t1 = time.perf_counter()
    source = pq.ParquetFile(src)
    features = [n for n in source.schema_arrow.names if n != "id"]
    writer, rows = None, 0
    for batch in source.iter_batches(batch_size=65536):
        x = np.column_stack([batch.column(n).to_numpy() for n in features]).astype(np.float32)
        label, proba = session.run(None, {name: x})
        cols = {"id": batch.column("id"), "prediction": pa.array(label)}
        for j, c in enumerate(classes):
            cols[f"probability_{c}"] = pa.array(proba[:, j].astype(np.float64))
        table = pa.table(cols)
        writer = writer or pq.ParquetWriter(dst, table.schema)
        writer.write_table(table)
        rows += batch.num_rows
    writer.close()
    t2 = time.perf_counter()
    print(json.dumps({"rows": rows, "score_s": t2 - t1, "wall_in_s": t2 - t0,
                      "maxrss_mb": peak_mb()}))
""")

MODELPORT_WRAPPER = textwrap.dedent("""
    import json, resource, sys, io, contextlib
    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from modelport.cli.main import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(sys.argv[1:])
    summary = json.loads(out.getvalue())
    summary["maxrss_mb"] = peak_mb()
    summary["exit"] = code
    print(json.dumps(summary))
""")


def make_input(path: Path, rows: int, features: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(features)]
    writer = None
    done = 0
    while done < rows:
        n = min(131072, rows - done)
        cols = {"id": pa.array(np.arange(done, done + n, dtype=np.int64))}
        for name in names:
            cols[name] = pa.array(rng.normal(size=n))
        table = pa.table(cols)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=65536)
        done += n
    assert writer is not None
    writer.close()


def make_models(work: Path, features: int) -> dict[str, dict[str, Any]]:
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.flavors.convert import to_onnx

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(20000, features)), columns=[f"f{i}" for i in range(features)])
    y = ((x["f0"] + x["f1"] * x["f2"] - x["f3"]) > 0).astype(int)
    models = {
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            max_iter=100, early_stopping=False, random_state=0),
        "logistic_regression": LogisticRegression(max_iter=500),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, estimator in models.items():
        estimator.fit(x, y)
        bundle = work / f"bundle-{name}"
        modelport.save(estimator, bundle, name=name.replace("_", "-"), example=x.iloc[:200],
                       flavor="sklearn")
        predictor, reason = to_onnx(modelport.load(str(bundle)))
        if predictor is None:
            raise SystemExit(f"{name}: cannot convert to ONNX for baseline (c): {reason}")
        onnx_file = work / f"{name}.onnx"
        onnx_file.write_bytes(predictor.onnx_bytes)
        out[name] = {"bundle": bundle, "onnx": onnx_file,
                     "skops": next(bundle.glob("*.skops")),
                     "classes": [int(c) for c in estimator.classes_]}
    return out


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def variants(m: dict[str, Any], name: str, work: Path, source: Path, quarter: Path,
             env: dict[str, str], round_: int) -> list[tuple[str, dict[str, Any]]]:
    """One run of every variant on model ``m`` (each in its own process)."""
    out: list[tuple[str, dict[str, Any]]] = []
    runs = (("a_modelport_first_run", source), ("a_modelport", source),
            ("a_modelport_quarter_input", quarter))
    for label, src in runs:
        target = work / f"out-{name}-{label}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(work / f".out-{name}-{label}.modelport", ignore_errors=True)
        r = timed([sys.executable, "-c", MODELPORT_WRAPPER, "batch", "run", str(m["bundle"]),
                   "--input", str(src), "--output", str(target), "--keep", "id", "--json",
                   "--no-progress", "--run-id", f"bench-{label}-{round_}"], env)
        out.append((label, {"rows": r["rows_out"], "wall_s": r["wall_s"],
                            "score_s": r["duration_s"] - r.get("load_s", 0.0),
                            "load_s": r.get("load_s"), "maxrss_mb": r["maxrss_mb"],
                            "accelerated": r["accelerated"], "engine": r["engine"],
                            "acceleration": r.get("acceleration")}))
    out.append(("b_pandas", timed([sys.executable, "-c", PANDAS_SCRIPT, str(m["skops"]),
                                   str(source), str(work / f"out-{name}-pandas.parquet")], env)))
    out.append(("c_arrow_onnx", timed([sys.executable, "-c", ONNX_SCRIPT, str(m["onnx"]),
                                       str(source), str(work / f"out-{name}-onnx.parquet"),
                                       json.dumps(m["classes"])], env)))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="modelport-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MODELPORT_HOME": str(work / "home")}
    source = work / "input.parquet"
    quarter = work / "input-quarter.parquet"
    t = time.perf_counter()
    make_input(source, args.rows, args.features)
    make_input(quarter, args.rows // 4, args.features)
    print(f"input: {args.rows:,} rows x {args.features} features "
          f"({source.stat().st_size / 1e6:.0f} MB Parquet) in {time.perf_counter() - t:.1f}s",
          file=sys.stderr)
    models = make_models(work, args.features)
    report: dict[str, Any] = {"rows": args.rows, "features": args.features,
                              "cpus": os.cpu_count(), "repeat": args.repeat,
                              "load_before": os.getloadavg(), "models": {}}
    for name, m in models.items():
        if args.models and name not in args.models:
            continue
        rounds: dict[str, list[dict[str, Any]]] = {}
        for round_ in range(args.repeat):  # interleaved, so a busy moment hits every variant
            shutil.rmtree(work / "home", ignore_errors=True)  # each round's first run is a first
            for label, r in variants(m, name, work, source, quarter, env, round_):
                r["rows_per_s_wall"] = r["rows"] / r["wall_s"]
                r["rows_per_s_scoring"] = r["rows"] / r["score_s"]
                rounds.setdefault(label, []).append(r)
                print(f"{name} {label}: {r['wall_s']:.2f} s", file=sys.stderr, flush=True)
        results: dict[str, Any] = {}
        for label, rs in rounds.items():  # the median run of each variant (by wall time)
            results[label] = sorted(rs, key=lambda r: r["wall_s"])[len(rs) // 2]
            results[label]["runs_wall_s"] = [round(r["wall_s"], 3) for r in rs]
        limit = results["c_arrow_onnx"]
        for key in ("a_modelport_first_run", "a_modelport"):
            results[key]["share_of_c_scoring"] = \
                results[key]["rows_per_s_scoring"] / limit["rows_per_s_scoring"]
            results[key]["share_of_c_wall"] = \
                results[key]["rows_per_s_wall"] / limit["rows_per_s_wall"]
        report["models"][name] = results
    report["load_after"] = os.getloadavg()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['rows']:,} rows x {report['features']} features, Parquet -> Parquet, "
          f"{report['cpus']} CPUs")
    head = (f"{'model':24} {'variant':28} {'wall s':>7} {'rows/s (wall)':>14} "
            f"{'scoring s':>9} {'rows/s (scoring)':>16} {'peak MB':>8}")
    print(head)
    print("-" * len(head))
    for model, results in report["models"].items():
        for variant, r in results.items():
            print(f"{model:24} {variant:28} {r['wall_s']:7.2f} {r['rows_per_s_wall']:14,.0f} "
                  f"{r['score_s']:9.2f} {r['rows_per_s_scoring']:16,.0f} {r['maxrss_mb']:8.0f}")
        for key in ("a_modelport_first_run", "a_modelport"):
            a = results[key]
            print(f"{'':24} {key} / (c): {a['share_of_c_scoring']:.0%} of the limit's scoring "
                  f"rate, {a['share_of_c_wall']:.0%} end to end")
    print(f"load average {report['load_before'][0]:.1f} before, "
          f"{report['load_after'][0]:.1f} after; median of {report['repeat']} run(s) each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--models", nargs="*",
                        choices=["hist_gradient_boosting", "logistic_regression"])
    parser.add_argument("--workdir", help="keep inputs and outputs here")
    parser.add_argument("--keep", action="store_true", help="do not delete the work folder")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each variant, interleaved; reports the median (default 1)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
