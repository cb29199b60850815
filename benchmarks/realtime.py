"""Real-time serving benchmark: modelport against hand-written baselines, in one run.

For one model (a 100-tree HistGradientBoosting classifier on 30 numeric features) and one row
per request, measure requests/s, p50/p99 latency and server CPU time per request for:

  (a) ``modelport serve`` with its defaults (ONNX acceleration auto, validation through the
      signature, Prometheus metrics and prediction events on), over every protocol it speaks:
      ``simple`` (POST /predict/{m}, a JSON object), ``v2`` (Open Inference Protocol JSON, one
      [1, 30] FP64 tensor), ``v2named`` (30 named [1] tensors), ``v2binary`` (the binary tensor
      extension tritonclient uses), ``v1`` (KServe V1 instances), ``mlflow`` (/invocations,
      dataframe_split)
  (b) a plain FastAPI + uvicorn app calling the scikit-learn model per request
  (c) the same FastAPI app calling the model converted to ONNX (ONNX Runtime) — the baseline
      every modelport protocol is compared with
  (d) a bare ASGI app returning a constant (the floor of the HTTP stack)

Every server runs as a subprocess with the same worker count, uvloop + httptools and
``OMP_NUM_THREADS=1``. The load generator is ``wrk`` (C, one thread per loader, keep-alive
connections) when it is installed — the output says which — else a Python asyncio client that
itself needs a core. ``--loaders N`` runs N load processes at once and sums them. Besides
throughput the run measures:

* cold start: launch → first 200 on the prediction route, repeated, median (``--cold-start``),
  for modelport and the FastAPI + ONNX app; and the start-up of ``modelport predict`` for one
  row and of ``modelport batch run`` on a small file (``--cli-startup``);
* resident memory per worker after the load (the server's process tree / workers);
* per-worker efficiency when several worker counts run: req/s(N) / (N x req/s(1)).

    python benchmarks/realtime.py                       # 1 worker, every protocol, c=1 and 64
    python benchmarks/realtime.py --only a,c --protocols simple,v2 --duration 5
    python benchmarks/realtime.py --workers 1,2,4,8 --loaders 4 --concurrency 8,64 \\
        --protocols simple --accept both --server-cpus 0-11 --load-cpus 12-15

``--concurrency`` is the number of connections per loader. On a 2-core machine give the server
and the load generator a core each (``--server-cpus 0 --load-cpus 1``); CPU time per request
is then the steadier figure, since other processes on the machine take cycles from both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
N_FEATURES = 30
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
BASELINES = {
    "b": "FastAPI + sklearn",
    "c": "FastAPI + ONNX Runtime",
    "d": "bare ASGI constant",
}
PROTOCOLS = ("simple", "v2", "v2named", "v2binary", "v1", "mlflow")
#: modelport serving an endpoint (issue 13): the request each sends instead of /predict/bench
ROLLOUT = {"e": ("modelport canary endpoint 50/50", "canary"),
           "f": ("modelport 100% shadow endpoint", "shadow")}
#: modelport with the prediction log on (issue 12): every prediction and all its features
#: written to the embedded Delta table (serve --log delta); compared with "a" on /predict
LOGGED = {"g": ("modelport logging every prediction", "simple")}
#: modelport with authentication on (issue 14): every request carries an API key that is
#: checked (route scope, constant-time digest compare, rate bucket); compared with "a" on /predict
AUTHED = {"h": ("modelport with --auth (API key)", "authed")}
TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------ baseline apps
def make_fastapi_app() -> Any:
    """(b) or (c): the hand-written app, model chosen by environment variables."""
    import numpy as np
    from fastapi import FastAPI

    kind = os.environ["BENCH_KIND"]
    app = FastAPI()
    if kind == "sklearn":
        import skops.io

        path = os.environ["BENCH_MODEL"]
        model = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))

        @app.post("/predict")
        def predict_sklearn(payload: dict[str, float]) -> dict[str, Any]:
            row = np.array([[payload[c] for c in COLUMNS]])
            proba = model.predict_proba(row)[0]
            return {"label": int(proba.argmax()), "probabilities": proba.tolist()}
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(os.environ["BENCH_MODEL"], options,
                                       providers=["CPUExecutionProvider"])
        meta = session.get_inputs()[0]
        dtype = np.float32 if "float)" in meta.type else np.float64
        name = meta.name

        # async def: the model call is ~10 µs, a thread hop would cost more than it
        @app.post("/predict")
        async def predict_onnx(payload: dict[str, float]) -> dict[str, Any]:
            row = np.array([[payload[c] for c in COLUMNS]], dtype=dtype)
            label, proba = session.run(None, {name: row})
            return {"label": int(label[0]), "probabilities": proba[0].tolist()}
    return app


async def constant_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """(d): reads the body, answers a constant."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"label":1,"probabilities":[0.1,0.9]}'
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


def requests_for(row: dict[str, float]) -> dict[str, Request]:
    """One row as every protocol sends it (``baseline``: the hand-written apps' route)."""
    import numpy as np

    values = [row[c] for c in COLUMNS]
    infer = "/v2/models/bench/infer"
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, N_FEATURES],
                                   "datatype": "FP64",
                                   "parameters": {"binary_data_size": 8 * N_FEATURES}}],
                       "outputs": [{"name": "label", "parameters": {"binary_data": True}},
                                   {"name": "probabilities",
                                    "parameters": {"binary_data": True}}]}).encode()
    return {
        "baseline": Request("/predict", json.dumps(row).encode()),
        "simple": Request("/predict/bench", json.dumps(row).encode()),
        "canary": Request("/predict/bench-canary", json.dumps(row).encode()),
        "shadow": Request("/predict/bench-shadow", json.dumps(row).encode()),
        "v2": Request(infer, json.dumps({"inputs": [{
            "name": "input", "shape": [1, N_FEATURES], "datatype": "FP64",
            "data": values}]}).encode()),
        "v2named": Request(infer, json.dumps({"inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [row[c]]}
            for c in COLUMNS]}).encode()),
        "v2binary": Request(infer, head + np.asarray(values, dtype="<f8").tobytes(), (
            ("Content-Type", "application/octet-stream"),
            ("Inference-Header-Content-Length", str(len(head))))),
        "v1": Request("/v1/models/bench:predict", json.dumps({"instances": [values]}).encode()),
        "mlflow": Request("/invocations", json.dumps({"dataframe_split": {
            "columns": COLUMNS, "data": [values]}}).encode()),
    }


def _lua(request: Request, path: Path) -> Path:
    """A wrk script sending ``request`` (bytes escaped, so binary bodies travel as they are)."""
    body = "".join(f"\\{b}" for b in request.body)
    lines = ['wrk.method = "POST"', f'wrk.body = "{body}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in request.headers]
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------ python load generator
async def _connection(host: str, port: int, request: bytes, until: float, warm_until: float,
                      latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clock = time.perf_counter
    try:
        while True:
            start = clock()
            if start >= until:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length:
                await reader.readexactly(length)
            end = clock()
            if start >= warm_until:
                if status == 200:
                    latencies.append(end - start)
                else:
                    errors.append(status)
    finally:
        writer.close()


async def _load(host: str, port: int, raw: bytes, concurrency: int, duration: float,
                warmup: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    now = time.perf_counter()
    warm_until, until = now + warmup, now + warmup + duration
    await asyncio.gather(*(_connection(host, port, raw, until, warm_until, latencies,
                                       errors) for _ in range(concurrency)))
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] * 1000 if n else float("nan")

    return {"requests": n, "errors": len(errors), "rps": n / duration,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def load_main(args: argparse.Namespace) -> None:
    import uvloop

    raw = Path(args.request).read_bytes()
    result = uvloop.run(_load(args.host, args.port, raw, args.concurrency, args.duration,
                              args.warmup))
    print(json.dumps(result))


def _raw_request(request: Request, port: int) -> bytes:
    head = f"POST {request.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers)
    head += f"Content-Length: {len(request.body)}\r\n\r\n"
    return head.encode() + request.body


# ------------------------------------------------------------------------ load orchestration
@dataclass
class Load:
    """How load is generated: the generator, loaders, pinning and durations."""

    wrk: str | None
    loaders: int
    duration: float
    warmup: float
    cpus: str | None
    work: Path

    def describe(self) -> str:
        if self.wrk:
            version = subprocess.run([self.wrk, "--version"], capture_output=True,
                                     text=True).stdout.split("\n")[0].strip()
            kind = f"wrk ({version or self.wrk}; one thread per loader, keep-alive)"
        else:
            kind = ("Python asyncio client (wrk is not installed: apt-get install wrk); it needs "
                    "a core of its own per loader")
        pin = f", pinned to CPUs {self.cpus}" if self.cpus else ""
        return f"load generator: {kind}; {self.loaders} loader(s){pin}"

    def _prefix(self) -> list[str]:
        return ["taskset", "-c", self.cpus] if self.cpus else []

    def run(self, port: int, request: Request, connections: int, server_pids: list[int]
            ) -> dict[str, Any]:
        if self.wrk:
            script = _lua(request, self.work / f"req-{abs(hash(request))}.lua")
            url = f"http://127.0.0.1:{port}{request.path}"
            # a warm-up run, not counted
            self._wrk(script, url, connections, max(1.0, self.warmup))
            cpu0 = _cpu_seconds(server_pids)
            outs = self._wrk(script, url, connections, self.duration)
            cpu1 = _cpu_seconds(server_pids)
            parsed = [_parse_wrk(o) for o in outs]
        else:
            raw = self.work / f"req-{abs(hash(request))}.bin"
            raw.write_bytes(_raw_request(request, port))
            cpu0 = _cpu_seconds(server_pids)  # includes the loaders' warm-up: approximate
            procs = [subprocess.Popen(
                [*self._prefix(), sys.executable, str(Path(__file__).resolve()), "load",
                 "--port", str(port), "--request", str(raw), "--concurrency",
                 str(connections), "--duration", str(self.duration), "--warmup",
                 str(self.warmup)], stdout=subprocess.PIPE, text=True)
                for _ in range(self.loaders)]
            parsed = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
            cpu1 = _cpu_seconds(server_pids)
        requests = sum(p["requests"] for p in parsed)
        return {
            "rps": sum(p["rps"] for p in parsed),
            "p50_ms": statistics.median(p["p50_ms"] for p in parsed),
            "p99_ms": max(p["p99_ms"] for p in parsed),
            "errors": sum(p["errors"] for p in parsed),
            "requests": requests,
            "cpu_us_per_request": (cpu1 - cpu0) * 1e6 / requests if requests else float("nan"),
        }

    def _wrk(self, script: Path, url: str, connections: int, seconds: float) -> list[str]:
        assert self.wrk is not None
        cmd = [*self._prefix(), self.wrk, "-t1", f"-c{connections}",
               f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(self.loaders)]
        return [p.communicate()[0] for p in procs]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _parse_wrk(out: str) -> dict[str, Any]:
    def latency(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")

    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if total is None or rps is None:
        raise RuntimeError(f"wrk failed:\n{out}")
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      out):
        errors += sum(int(g) for g in m.groups())
    return {"requests": int(total.group(1)), "rps": float(rps.group(1)),
            "p50_ms": latency("50"), "p99_ms": latency("99"), "errors": errors}


# ------------------------------------------------------------------------ process trees
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a multi-worker server's supervisor and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------------ servers
@dataclass(frozen=True)
class Spec:
    """One server to start: ``kind`` a/b/c/d, and modelport's accept model."""

    kind: str
    accept: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "a":
            return f"modelport ({self.accept} accept)" if self.accept else "modelport"
        if self.kind in ROLLOUT:
            return ROLLOUT[self.kind][0]
        if self.kind in LOGGED:
            return LOGGED[self.kind][0]
        if self.kind in AUTHED:
            return AUTHED[self.kind][0]
        return BASELINES[self.kind]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(work: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Train, register, convert; returns the environment for the servers and one row.

    A ``work`` folder prepared before (``--work``) is reused as it is, so a machine without the
    training libraries (scikit-learn, skl2onnx) can run the benchmark on a prepared model.
    """
    env = dict(os.environ, MODELPORT_HOME=str(work / "home"), OMP_NUM_THREADS="1")
    for var in ("MODELPORT_REGISTRY_URL", "MODELPORT_ARTIFACTS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(var, None)
    done = work / "row.json"
    if done.exists():
        return env, dict(json.loads(done.read_text()))
    import numpy as np
    import pandas as pd
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    import modelport
    from modelport.flavors.convert import to_onnx
    from modelport.registry import Registry
    from modelport.settings import Settings

    x, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=12,
                               random_state=0)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(x, y)
    example = pd.DataFrame(x[:100], columns=COLUMNS)
    modelport.save(model, work / "bundle", name="bench", example=example)
    with Registry.from_settings(Settings.from_env(env)) as registry:
        registry.register(work / "bundle")
    skops.io.dump(model, work / "model.skops")
    loaded = modelport.load(str(work / "bundle"))
    predictor, reason = to_onnx(loaded)
    if predictor is None:
        raise RuntimeError(f"the benchmark model did not convert to ONNX: {reason}")
    (work / "model.onnx").write_bytes(predictor.onnx_bytes)
    row = dict(zip(COLUMNS, np.round(x[1234], 6).tolist(), strict=True))
    pd.DataFrame([row]).to_csv(work / "one-row.csv", index=False)
    pd.DataFrame(x[:1000], columns=COLUMNS).to_parquet(work / "rows.parquet")
    done.write_text(json.dumps(row))
    return env, row


def prepare_endpoints(env: dict[str, str]) -> None:
    """A second version of the model and two endpoints over both: a canary holding half the
    traffic (never stepping during the run) and a primary with a 100 % shadow."""
    from modelport.registry import Registry
    from modelport.rollout import EndpointSpec, EndpointStore
    from modelport.settings import Settings

    with Registry.from_settings(Settings.from_env(env)) as registry:
        if len(registry.list_versions("bench")) < 2:
            registry.register(Path(env["MODELPORT_HOME"]).parent / "bundle")
        store = EndpointStore(registry)
        store.create(EndpointSpec.from_dict({
            "name": "bench-canary", "policy": "canary", "candidate": "green",
            "variants": {"blue": "bench:1", "green": "bench:2"},
            "canary": {"steps": [50, 100], "interval_s": 1e9}}), replace_existing=True)
        store.create(EndpointSpec.from_dict({
            "name": "bench-shadow", "policy": "shadow", "primary": "main", "shadows": ["copy"],
            "variants": {"main": "bench:1", "copy": "bench:2"}}), replace_existing=True)


def prepare_auth(work: Path, simple: Request) -> Request:
    """An API key in ``work/keys.json`` (predict scope) and the simple request carrying it."""
    from modelport.serving.auth import FileKeyStore, new_key

    keys = FileKeyStore(work / "keys.json")
    token, key = new_key("benchmark", ["predict"])
    keys.add(key)
    return Request(simple.path, simple.body,
                   (*simple.headers, ("Authorization", f"Bearer {token}")))


def command(spec: Spec, work: Path, env: dict[str, str], workers: int, port: int,
            cpus: str | None) -> tuple[list[str], dict[str, str]]:
    pin = ["taskset", "-c", cpus] if cpus else []
    uvicorn = [*pin, sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port",
               str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning", "--app-dir", str(HERE)]
    if spec.kind == "a" or spec.kind in ROLLOUT or spec.kind in LOGGED or spec.kind in AUTHED:
        cmd = [*pin, sys.executable, "-m", "modelport.cli.main", "serve", "bench", "--port",
               str(port), "--workers", str(workers)]
        if spec.kind in LOGGED:
            cmd += ["--log", "delta"]
        if spec.kind in AUTHED:
            cmd += ["--auth", "--keys-file", str(work / "keys.json")]
        if spec.accept:
            cmd += ["--accept", spec.accept]
        return cmd, env
    if spec.kind in ("b", "c"):
        return [*uvicorn, "--factory", "realtime:make_fastapi_app"], dict(
            env, BENCH_KIND="sklearn" if spec.kind == "b" else "onnx",
            BENCH_MODEL=str(work / ("model.skops" if spec.kind == "b" else "model.onnx")))
    return [*uvicorn, "realtime:constant_app"], env


def start(spec: Spec, work: Path, env: dict[str, str], workers: int, port: int,
          cpus: str | None) -> subprocess.Popen[bytes]:
    cmd, kenv = command(spec, work, env, workers, port, cpus)
    log = (work / f"server-{spec.kind}-{spec.accept}-{workers}-{port}.log").open("wb")
    return subprocess.Popen(cmd, env=kenv, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _post(port: int, request: Request, timeout: float = 2.0) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", request.path, request.body, dict(request.headers))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_until_answering(port: int, request: Request, proc: subprocess.Popen[bytes],
                         workers: int = 1, timeout: float = 180) -> None:
    """Until the prediction route answers 200 (every worker started, for several)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if _post(port, request) == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError(f"server on port {port} did not answer in {timeout:.0f} s")
    # several workers: wait until each has started (imports done, model loaded)
    if workers > 1:
        target = workers + 1
        while len(_tree(proc.pid)) < target and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(min(10.0, 1.0 + 0.5 * workers))


# ------------------------------------------------------------------------ cold start
def cold_start(spec: Spec, work: Path, env: dict[str, str], request: Request, repeat: int,
               cpus: str | None) -> dict[str, Any]:
    """Launch → first 200 on the prediction route, ``repeat`` times; median and spread, with
    the CPU time and resident memory of the process at that moment."""
    times, cpu, rss = [], [], []
    for _ in range(repeat):
        port = _free_port()
        started = time.perf_counter()
        proc = start(spec, work, env, 1, port, cpus)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{spec.label} exited with {proc.returncode}")
                try:
                    if _post(port, request, timeout=5) == 200:
                        break
                except OSError:
                    time.sleep(0.005)
            times.append(time.perf_counter() - started)
            pids = _tree(proc.pid)
            cpu.append(_cpu_seconds(pids))
            rss.append(_rss_mib(pids))
        finally:
            stop(proc)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "cpu_s": statistics.median(cpu), "rss_mib": statistics.median(rss),
            "runs": times}


def cli_startup(work: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    """Wall-clock of ``modelport predict`` for one row and ``modelport batch run`` over 1,000
    rows, each a fresh process, median of ``repeat``."""
    base = [sys.executable, "-m", "modelport.cli.main"]
    jobs = {
        "predict one row": lambda i: [*base, "predict", "bench", "-i",
                                      str(work / "one-row.csv")],
        "batch run, 1,000 rows": lambda i: [*base, "batch", "run", "bench", "-i",
                                            str(work / "rows.parquet"), "-o",
                                            str(work / f"batch-out-{i}"), "--no-progress"],
    }
    out: dict[str, Any] = {}
    for name, make in jobs.items():
        times = []
        for i in range(repeat):
            started = time.perf_counter()
            done = subprocess.run(make(i), env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if done.returncode != 0:
                out[name] = {"error": done.stderr.strip().splitlines()[-1:]}
                break
        else:
            out[name] = {"median_s": statistics.median(times), "min_s": min(times)}
    return out


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    load = sub.add_parser("load", help="(internal) run the Python load generator")
    load.add_argument("--host", default="127.0.0.1")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--request", required=True, help="file holding the raw HTTP request")
    load.add_argument("--concurrency", type=int, default=1)
    load.add_argument("--duration", type=float, default=4.0)
    load.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--workers", default="1", help="worker counts, e.g. 1,2,4,8")
    parser.add_argument("--loaders", type=int, default=1,
                        help="load processes run at once, their results summed")
    parser.add_argument("--concurrency", default="1,64",
                        help="keep-alive connections per loader, e.g. 1,64")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every cell, keep the best (noise from other processes); "
                        "each round starts the protocol list one place further on, so no "
                        "protocol always runs first after the server started")
    parser.add_argument("--only", default="a,c", help="servers to run (a,b,c,d; e: a canary "
                        "endpoint, f: a 100%% shadow endpoint, both beside a; g: modelport "
                        "logging every prediction to the prediction log, beside a; h: modelport "
                        "with --auth, an API key on every request, beside a)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS),
                        help=f"modelport protocols ({','.join(PROTOCOLS)})")
    parser.add_argument("--accept", default="default",
                        choices=["default", "shared", "reuseport", "both"],
                        help="modelport's accept model with several workers")
    parser.add_argument("--interleave", action="store_true",
                        help="run the servers side by side, taking turns round by round (for "
                        "ratios between them on a machine whose speed drifts)")
    parser.add_argument("--generator", default="auto", choices=["auto", "wrk", "python"])
    parser.add_argument("--server-cpus", help="taskset CPU list for the servers, e.g. 0-11")
    parser.add_argument("--load-cpus", help="taskset CPU list for the load generators")
    parser.add_argument("--cold-start", type=int, default=5, metavar="N",
                        help="cold-start runs per server (0: skip)")
    parser.add_argument("--cli-startup", type=int, default=3, metavar="N",
                        help="runs of modelport predict / batch run (0: skip)")
    parser.add_argument("--work", help="keep the model and logs in this folder (reused)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.command == "load":
        load_main(args)
        return 0
    wrk = shutil.which("wrk") if args.generator != "python" else None
    if args.generator == "wrk" and wrk is None:
        parser.error("--generator wrk: wrk is not installed (apt-get install wrk)")
    workers_list = [int(w) for w in args.workers.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    protocols = [p for p in args.protocols.split(",") if p in PROTOCOLS]
    if "simple" not in protocols and set(args.only.split(",")) & {*ROLLOUT, *LOGGED, *AUTHED}:
        protocols.append("simple")  # e-h are reported as ratios to a's simple JSON route
    specs: list[Spec] = []
    for kind in args.only.split(","):
        if kind == "a":
            accepts = {"default": [None], "both": ["shared", "reuseport"]}.get(
                args.accept, [args.accept])
            specs += [Spec("a", a) for a in accepts]
        elif kind in BASELINES or kind in ROLLOUT or kind in LOGGED or kind in AUTHED:
            specs.append(Spec(kind))
    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="modelport-bench-")
        work = Path(tmp.name)
    try:
        env, row = prepare(work)
        if any(spec.kind in ROLLOUT for spec in specs):
            prepare_endpoints(env)
        reqs = requests_for(row)
        if any(spec.kind in AUTHED for spec in specs):
            reqs["authed"] = prepare_auth(work, reqs["simple"])
        loadgen = Load(wrk, args.loaders, args.duration, args.warmup, args.load_cpus, work)
        print(loadgen.describe(), file=sys.stderr, flush=True)
        results = run_cells(specs, workers_list, levels, protocols, reqs, loadgen, work, env,
                            args)
        colds: dict[str, Any] = {}
        if args.cold_start > 0:
            for spec in specs:
                if spec.kind in ("a", "c") and spec.accept in (None, "shared"):
                    request = reqs["simple" if spec.kind == "a" else "baseline"]
                    colds[spec.label] = cold_start(spec, work, env, request, args.cold_start,
                                                   args.server_cpus)
                    c = colds[spec.label]
                    print(f"  cold start {spec.label:<28} median {c['median_s']:.2f} s",
                          file=sys.stderr, flush=True)
        startup = cli_startup(work, env, args.cli_startup) if args.cli_startup > 0 else {}
        report = {"generator": loadgen.describe(), "cpu_cores": os.cpu_count(),
                  "cells": results, "cold_start": colds, "cli_startup": startup}
        print_report(report, workers_list, levels)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


def run_cells(specs: list[Spec], workers_list: list[int], levels: list[int],
              protocols: list[str], reqs: dict[str, Request], loadgen: Load, work: Path,
              env: dict[str, str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every server at every worker count: its protocols at every connection count.

    ``--interleave``: the servers run side by side and take turns round by round (a, h, a, h,
    ...), so a ratio between two of them is not skewed by the machine drifting over the run;
    otherwise one server at a time runs all its rounds."""
    results: list[dict[str, Any]] = []
    groups = [specs] if args.interleave else [[spec] for spec in specs]
    for workers in workers_list:
        for group in groups:
            procs: dict[str, tuple[Any, int]] = {}
            try:
                for spec in group:
                    port = _free_port()
                    procs[spec.label] = (start(spec, work, env, workers, port,
                                               args.server_cpus), port)
                    wait_until_answering(port, reqs[_names(spec, protocols)[0]],
                                         procs[spec.label][0], workers)
                for round_ in range(args.rounds):
                    turn = round_ % len(group)
                    for spec in group[turn:] + group[:turn]:
                        proc, port = procs[spec.label]
                        names = _names(spec, protocols)
                        # rotate: a cell's figures drift with its position in the run (CPU time
                        # per request of one protocol varied 1.45x within one 16-core run), so
                        # no protocol may always take the first place
                        shift = round_ % len(names)
                        for c in levels:
                            for name in names[shift:] + names[:shift]:
                                _run_cell(results, spec, name, workers, c, proc, port, reqs,
                                          loadgen)
                for spec in group:
                    rss = _rss_mib(_tree(procs[spec.label][0].pid))
                    for cell in results:
                        if cell["server"] == spec.label and cell["workers"] == workers:
                            cell["rss_mib_per_worker"] = rss / workers
            finally:
                for proc, _ in procs.values():
                    stop(proc)
    return results


def _names(spec: Spec, protocols: list[str]) -> list[str]:
    """The requests a server is asked with (the protocols for plain modelport)."""
    if spec.kind == "a":
        return protocols
    for table in (ROLLOUT, LOGGED, AUTHED):
        if spec.kind in table:
            return [table[spec.kind][1]]
    return ["baseline"]


def _run_cell(results: list[dict[str, Any]], spec: Spec, name: str, workers: int, c: int,
              proc: Any, port: int, reqs: dict[str, Request], loadgen: Load) -> None:
    r = loadgen.run(port, reqs[name], c, _tree(proc.pid))
    cell = {"server": spec.label, "kind": spec.kind, "accept": spec.accept, "protocol": name,
            "workers": workers, "loaders": loadgen.loaders, "connections": c, **r}
    best = next((x for x in results if _same_cell(x, cell)), None)
    seen = [*(best or {}).get("rounds", []), {"rps": r["rps"], "cpu_us": r["cpu_us_per_request"]}]
    if best is None:
        results.append(cell)
        best = cell
    elif r["rps"] > best["rps"]:
        best.update(cell)
    best["rounds"] = seen  # every round's figures, in run order
    print(f"  {spec.label:<28} {name:<9} w={workers:<2} {loadgen.loaders}x{c:<3} "
          f"{r['rps']:>9.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
          f"cpu {r['cpu_us_per_request']:5.0f} us/req  errors {r['errors']}", file=sys.stderr,
          flush=True)


def _same_cell(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in ("server", "protocol", "workers", "connections"))


def rollout_targets(cells: list[dict[str, Any]],
                    plain: dict[tuple[int, int], dict[str, Any]]) -> list[str]:
    """The issue's targets, one line each: the canary's req/s ratio to the plain model at the
    most connections run (target c=64: >= 0.95x) and the p99 each endpoint adds at c=1
    (canary: < 1 ms; shadow: nothing beyond noise)."""
    lines = []
    for c in cells:
        if c["kind"] not in ROLLOUT:
            continue
        b = plain.get((c["workers"], c["connections"]))
        if b is None:
            continue
        what = ROLLOUT[c["kind"]][1]
        top = max(x["connections"] for x in cells if x["kind"] == c["kind"]
                  and x["workers"] == c["workers"])
        if what == "canary" and c["connections"] == top:
            ratio = c["rps"] / b["rps"]
            lines.append(f"  target: canary req/s at w={c['workers']} c={top} = {ratio:.3f}x the "
                         f"plain model (>= 0.95x{'' if top == 64 else ', measured at c=64'}): "
                         f"{'met' if ratio >= 0.95 else 'MISSED'}")
        if c["connections"] == 1:
            added = c["p99_ms"] - b["p99_ms"]
            if what == "canary":
                limit, rule = 1.0, "< 1 ms"
            else:  # nothing added: allow 5 % of the plain p99 as run-to-run noise
                limit = 0.05 * b["p99_ms"]
                rule = f"nothing; noise allowance {limit:.3f} ms"
            lines.append(f"  target: {what} p99 added at w={c['workers']} c=1 = {added:+.3f} ms "
                         f"({rule}): {'met' if added < limit else 'MISSED'}")
    return lines


def _paired(cell: dict[str, Any], base: dict[str, Any]) -> str:
    """With --rounds N: the median over rounds of each round's ratio to the base's same round
    (with --interleave the two ran back to back in every round)."""
    ours, theirs = cell.get("rounds", []), base.get("rounds", [])
    if len(ours) < 2 or len(ours) != len(theirs):
        return ""
    rps = statistics.median(o["rps"] / t["rps"] for o, t in zip(ours, theirs, strict=True))
    cpu = statistics.median(o["cpu_us"] / t["cpu_us"] for o, t in zip(ours, theirs, strict=True))
    return f"; median of {len(ours)} paired rounds {rps:.3f}x req/s, cpu {cpu:.3f}x"


def print_report(report: dict[str, Any], workers_list: list[int], levels: list[int]) -> None:
    cells = report["cells"]
    print(f"\n{report['generator']}\ncpu cores: {report['cpu_cores']}")
    print(f"\n{'server':<30}{'protocol':<10}{'wrk':>4}{'conns':>7}{'req/s':>10}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'cpu us/req':>11}{'MiB/wkr':>9}{'errors':>7}")
    for c in cells:
        print(f"{c['server']:<30}{c['protocol']:<10}{c['workers']:>4}"
              f"{str(c['loaders']) + 'x' + str(c['connections']):>7}{c['rps']:>10.0f}"
              f"{c['p50_ms']:>8.2f}{c['p99_ms']:>8.2f}{c['cpu_us_per_request']:>11.0f}"
              f"{c.get('rss_mib_per_worker', float('nan')):>9.0f}{c['errors']:>7}")
    if any(len(c.get("rounds", ())) > 1 for c in cells):
        print("\nevery round (req/s / cpu us per request; the table keeps the best req/s):")
        for c in cells:
            seen = "  ".join(f"{x['rps']:.0f}/{x['cpu_us']:.0f}" for x in c.get("rounds", ()))
            print(f"  {c['server']:<28} {c['protocol']:<9} w={c['workers']:<2} "
                  f"{c['loaders']}x{c['connections']:<4} {seen}")
    base = {(c["workers"], c["connections"]): c for c in cells if c["kind"] == "c"}
    if base and any(c["kind"] == "a" for c in cells):
        print("\nmodelport / FastAPI + ONNX Runtime at the same workers and connections "
              "(req/s ratio; p50 latency modelport vs baseline):")
        for c in cells:
            b = base.get((c["workers"], c["connections"]))
            if c["kind"] != "a" or b is None:
                continue
            mem = ""
            if "rss_mib_per_worker" in c and "rss_mib_per_worker" in b:
                mem = f"; memory {c['rss_mib_per_worker'] / b['rss_mib_per_worker']:.2f}x"
            print(f"  {c['server']:<28} {c['protocol']:<9} w={c['workers']:<2} "
                  f"{c['loaders']}x{c['connections']:<3} {c['rps'] / b['rps']:5.2f}x  "
                  f"p50 {c['p50_ms']:.2f} vs {b['p50_ms']:.2f} ms{mem}")
    plain = {(c["workers"], c["connections"]): c for c in cells
             if c["kind"] == "a" and c["protocol"] == "simple"}
    variants = [
        (LOGGED, "logging every prediction (all features, Delta table) / the same server "
         "without the log, simple JSON, same workers and connections (target >= 0.90x at c=64)"),
        (AUTHED, "authentication (an API key checked on every request) / the same server "
         "without it, simple JSON, same workers and connections (target >= 0.97x req/s at "
         "c=64)"),
    ]
    for kinds, title in variants:
        if not plain or not any(c["kind"] in kinds for c in cells):
            continue
        print(f"\n{title}:")
        for c in cells:
            b = plain.get((c["workers"], c["connections"]))
            if c["kind"] in kinds and b is not None:
                print(f"  {c['server']:<36} w={c['workers']:<2} {c['loaders']}x"
                      f"{c['connections']:<3} {c['rps'] / b['rps']:5.2f}x req/s  cpu "
                      f"{c['cpu_us_per_request']:.0f} vs {b['cpu_us_per_request']:.0f} us/req"
                      f"{_paired(c, b)}")
    if plain and any(c["kind"] in ROLLOUT for c in cells):
        print("\nendpoints / the plain model on the same route shape (simple JSON), same "
              "workers and connections (targets: canary >= 0.95x req/s at c=64, < 1 ms added "
              "to p99 at c=1; shadow: nothing added to the client's latency):")
        for c in cells:
            b = plain.get((c["workers"], c["connections"]))
            if c["kind"] not in ROLLOUT or b is None:
                continue
            print(f"  {c['server']:<32} w={c['workers']:<2} {c['loaders']}x"
                  f"{c['connections']:<3} {c['rps'] / b['rps']:5.2f}x req/s  p99 "
                  f"{c['p99_ms'] - b['p99_ms']:+.2f} ms ({c['p99_ms']:.2f} vs "
                  f"{b['p99_ms']:.2f}); cpu {c['cpu_us_per_request']:.0f} vs "
                  f"{b['cpu_us_per_request']:.0f} us/req")
        for line in rollout_targets(cells, plain):
            print(line)
    if len(workers_list) > 1 and workers_list[0] == 1:
        print("\nper-worker efficiency: req/s(N) / (N x req/s(1 worker)), same server, "
              "protocol and connections")
        for c in cells:
            if c["workers"] == 1:
                continue
            one = next((x for x in cells if x["workers"] == 1 and x["server"] == c["server"]
                        and x["protocol"] == c["protocol"]
                        and x["connections"] == c["connections"]), None)
            if one is not None:
                eff = c["rps"] / (c["workers"] * one["rps"])
                print(f"  {c['server']:<28} {c['protocol']:<9} w={c['workers']:<2} "
                      f"{c['loaders']}x{c['connections']:<3} {eff:6.0%}")
    if report["cold_start"]:
        print("\ncold start (launch -> first 200 on the prediction route, one worker):")
        for label, c in report["cold_start"].items():
            print(f"  {label:<28} median {c['median_s']:.2f} s (min {c['min_s']:.2f}, max "
                  f"{c['max_s']:.2f}; CPU {c['cpu_s']:.2f} s; RSS {c['rss_mib']:.0f} MiB)")
        labels = list(report["cold_start"])
        mp = next((report["cold_start"][x] for x in labels if x.startswith("modelport")), None)
        fa = report["cold_start"].get(BASELINES["c"])
        if mp and fa:
            print(f"  modelport / FastAPI + ONNX: {mp['median_s'] / fa['median_s']:.2f}x "
                  "(target <= 1.5x and <= 1 s)")
    if report["cli_startup"]:
        print("\nmodelport CLI start-up (a fresh process each, median):")
        for name, c in report["cli_startup"].items():
            if "error" in c:
                print(f"  {name:<24} failed: {c['error']}")
            else:
                print(f"  {name:<24} {c['median_s']:.2f} s (min {c['min_s']:.2f})")


if __name__ == "__main__":
    sys.exit(main())
