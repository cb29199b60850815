"""Drift benchmark: modelport's drift report against Evidently and a plain SciPy loop, in one run;
and what live drift gauges cost a server.

**Report.** ``--rows`` logged rows x ``--features`` numeric features (the mean of three features
shifted) against a ``--reference-rows`` reference, each variant in its own process (wall time
and peak resident memory of the work, above the process's memory once the data is loaded):

  (a) modelport: ``Reference.from_columns`` (once per model version, timed apart) and
      ``compare`` (every statistic: PSI, KS with p-value, Wasserstein and its normed form);
  (b) a plain SciPy loop: ``ks_2samp`` + ``wasserstein_distance`` + a NumPy PSI per feature;
  (c) Evidently's ``DataDriftPreset`` report (Evidently 0.7 does not import with pandas 3, the
      project's pandas, so it runs in a virtual environment of its own: ``--evidently-python``,
      made at /tmp/evvenv when missing).

Verdicts are compared feature by feature (all three use the normed Wasserstein distance at 0.1
for large samples, Evidently's default).

**Serving cost** (``--serving``): ``modelport serve`` of the realtime benchmark's model, with
and without ``--drift-window 1000``, under wrk (c=64), alternating ``--rounds`` times; the ratio
of medians is the cost of the gauges (target: at most 5 %).

    python benchmarks/drift.py                       # 1,000,000 x 30, all variants
    python benchmarks/drift.py --rows 200000 --skip-evidently
    python benchmarks/drift.py --serving --rounds 3  # only the serving cost
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHIFTED = (3, 11, 27)
EVIDENTLY_VENV = Path("/tmp/evvenv")


def make_data(folder: Path, rows: int, reference_rows: int, features: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(features)]
    reference = {n: rng.normal(size=reference_rows) for n in names}
    current = {n: rng.normal(loc=0.3 if i in SHIFTED else 0.0, size=rows)
               for i, n in enumerate(names)}
    pq.write_table(pa.table(reference), folder / "reference.parquet")
    pq.write_table(pa.table(current), folder / "current.parquet")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------ workers
def worker(variant: str, folder: Path) -> dict[str, Any]:
    """Runs in its own process; prints one JSON line."""
    import numpy as np
    import pyarrow.parquet as pq

    if variant == "evidently":
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset

        reference = pd.read_parquet(folder / "reference.parquet")
        current = pd.read_parquet(folder / "current.parquet")
        base = _peak_mib()
        start = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        seconds = time.perf_counter() - start
        verdicts = {}
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            if config.get("type", "").endswith("ValueDrift"):
                verdicts[config["column"]] = bool(metric["value"] >= config["threshold"])
        return {"seconds": seconds, "peak_mib": _peak_mib() - base, "verdicts": verdicts}
    reference = {k: v.to_numpy() for k, v in
                 zip(*_columns(pq.read_table(folder / "reference.parquet")), strict=True)}
    current = {k: v.to_numpy() for k, v in
               zip(*_columns(pq.read_table(folder / "current.parquet")), strict=True)}
    base = _peak_mib()
    if variant == "modelport":
        from modelport.monitor.drift import Reference, compare

        start = time.perf_counter()
        ref = Reference.from_columns(reference)
        built = time.perf_counter() - start
        report = compare(ref, current)
        seconds = time.perf_counter() - start - built
        verdicts = {n: f.drifted for n, f in report.features.items()}
        return {"seconds": seconds, "reference_s": built, "peak_mib": _peak_mib() - base,
                "verdicts": verdicts}
    from scipy import stats

    start = time.perf_counter()
    verdicts = {}
    for name, ref_values in reference.items():
        cur = current[name]
        stats.ks_2samp(ref_values, cur)
        distance = stats.wasserstein_distance(ref_values, cur)
        edges = np.quantile(ref_values, np.linspace(0, 1, 11))
        expected = np.histogram(ref_values, edges)[0] / ref_values.size
        actual = np.histogram(cur, edges)[0] / cur.size
        np.sum((actual - expected) * np.log(np.maximum(actual, 1e-4) / np.maximum(expected,
                                                                                   1e-4)))
        verdicts[name] = bool(distance / max(ref_values.std(), 1e-3) >= 0.1)
    return {"seconds": time.perf_counter() - start, "peak_mib": _peak_mib() - base,
            "verdicts": verdicts}


def _columns(table: Any) -> tuple[list[str], list[Any]]:
    return table.column_names, [table.column(n) for n in table.column_names]


def _evidently_python(given: str | None) -> str | None:
    if given:
        return given
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print("making a virtual environment for Evidently at /tmp/evvenv …", file=sys.stderr)
        done = subprocess.run(
            f"python3 -m venv {EVIDENTLY_VENV} && {EVIDENTLY_VENV}/bin/pip install -q "
            "evidently==0.7.23 'pandas<3' scipy pyarrow", shell=True, check=False)
        if done.returncode != 0:
            return None
    return str(python)


def run_variant(python: str, variant: str, folder: Path) -> dict[str, Any]:
    done = subprocess.run([python, str(Path(__file__).resolve()), "--worker", variant,
                           "--data", str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def report_main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-drift-") as tmp:
        folder = Path(tmp)
        make_data(folder, args.rows, args.reference_rows, args.features)
        variants = [("modelport", sys.executable), ("scipy", sys.executable)]
        if not args.skip_evidently:
            python = _evidently_python(args.evidently_python)
            if python is None:
                print("Evidently could not be installed: skipped", file=sys.stderr)
            else:
                variants.append(("evidently", python))
        for variant, python in variants:
            print(f"  {variant} …", file=sys.stderr, flush=True)
            results[variant] = run_variant(python, variant, folder)
    ours = results["modelport"]
    print(f"\ndrift report: {args.rows:,} rows x {args.features} features against "
          f"{args.reference_rows:,} reference rows (3 features shifted)")
    print(f"{'variant':<12} {'seconds':>9} {'peak MiB':>9} {'vs modelport':>13} "
          f"{'same verdicts':>14}")
    for variant, r in results.items():
        same = sum(r["verdicts"].get(k) == v for k, v in ours["verdicts"].items())
        print(f"{variant:<12} {r['seconds']:>9.2f} {r['peak_mib']:>9.0f} "
              f"{r['seconds'] / ours['seconds']:>12.1f}x {same:>6}/{len(ours['verdicts'])}")
    print(f"(modelport built the reference once in {ours['reference_s']:.2f} s; drifted: "
          f"{sorted(k for k, v in ours['verdicts'].items() if v)})")
    return results


# ------------------------------------------------------------------------------ serving
def serving_main(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import realtime

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="modelport-drift-"))
    env, row = realtime.prepare(work)
    subprocess.run([sys.executable, "-m", "modelport.cli.main", "monitor", "reference",
                    "bench:1", "--data", str(work / "rows.parquet")], env=env, check=True)
    request = realtime.requests_for(row)["simple"]
    load = realtime.Load(realtime.shutil.which("wrk"), 1, args.duration, 1.0, args.load_cpus,
                         work)
    print(f"server CPUs: {args.server_cpus or 'any'}; cores: {os.cpu_count()}", file=sys.stderr)
    print(load.describe(), file=sys.stderr)
    rps: dict[str, list[float]] = {"plain": [], "drift": []}
    cpu: dict[str, list[float]] = {"plain": [], "drift": []}
    for _ in range(args.rounds):
        for label, extra in (("plain", []), ("drift", ["--drift-window", "1000"])):
            port = realtime._free_port()
            pin = ["taskset", "-c", args.server_cpus] if args.server_cpus else []
            proc = subprocess.Popen(
                [*pin, sys.executable, "-m", "modelport.cli.main", "serve", "bench", "--port",
                 str(port), *extra], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                realtime.wait_until_answering(port, request, proc)
                result = load.run(port, request, 64, realtime._tree(proc.pid))
                rps[label].append(result["rps"])
                cpu[label].append(result["cpu_us_per_request"])
                print(f"  {label:<6} {result['rps']:>9.0f} req/s  p99 {result['p99_ms']:.1f} ms"
                      f"  cpu {result['cpu_us_per_request']:.0f} us/req"
                      f"  errors {result['errors']}", file=sys.stderr, flush=True)
            finally:
                realtime.stop(proc)
    ratio = statistics.median(rps["drift"]) / statistics.median(rps["plain"])
    cost = statistics.median(cpu["drift"]) / statistics.median(cpu["plain"]) - 1
    print(f"\nlive drift gauges (--drift-window 1000), c=64: {ratio:.1%} of the throughput "
          f"without, server CPU per request {cost:+.1%} (medians of {args.rounds}; target: "
          "throughput ≥ 95 %; on a busy machine the CPU figure is the steadier one)")
    return {"rps": rps, "cpu_us_per_request": cpu, "ratio": ratio, "cpu_cost": cost}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--evidently-python", help="a Python with evidently installed")
    parser.add_argument("--serving", action="store_true",
                        help="measure the cost of live drift gauges in a server instead")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--server-cpus", help="taskset CPU list for the server, e.g. 0")
    parser.add_argument("--load-cpus", help="taskset CPU list for wrk, e.g. 1")
    parser.add_argument("--work", help="--serving: a prepared realtime benchmark folder "
                                       "(benchmarks/realtime.py --work), reused")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.data))))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = serving_main(args) if args.serving else report_main(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
