#!/usr/bin/env bash
# The real-time tables on a machine with more cores, in one run (benchmarks/realtime.py).
#
#   bash benchmarks/scaling.sh OUTDIR [WORKDIR]
#
# 1. every protocol at one worker (server pinned to one core, wrk on another), c=1 and c=64,
#    cold start (launch -> first 200, 5 runs) and `modelport predict` / `batch run` start-up;
# 2. the same with the Python load generator (2 loaders x 32 connections), to compare the two;
# 3. the scaling table: 1, 2, 4, 8, 12 workers (servers on cores 0-11), 4 wrk loaders (cores
#    12-15) with few (4 each) or many (64 each) connections, modelport with both accept models
#    (shared socket, SO_REUSEPORT) and the FastAPI + ONNX Runtime app.
#
# WORKDIR holds the prepared model (realtime.py --work); it is trained there when missing.
# A machine without network access can be given what it lacks in .bench/ (ignored by git):
#   .bench/whl/*.whl   Python wheels installed with --no-deps into /tmp/site
#   .bench/bin/wrk, .bench/lib/libluajit-5.1.so.2   the load generator
#   .bench/mpbench     a prepared WORKDIR (copied to WORKDIR when that is missing)
set -u
OUT=${1:-$PWD/scaling-out}
WORK=${2:-/tmp/mpbench}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.bench/whl}  # WHEELS=none: use the packages already installed
DURATION=${DURATION:-4}       # seconds per cell
SRC=${SRC:-$PWD/src}          # the modelport sources to run
CORES=$(nproc)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if [ -d "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$SRC
else
  export PYTHONPATH=$SRC${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -x .bench/bin/wrk ]; then
  export PATH=$PWD/.bench/bin:$PATH LD_LIBRARY_PATH=$PWD/.bench/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
if [ ! -d "$WORK" ] && [ -d .bench/mpbench ]; then cp -r .bench/mpbench "$WORK"; fi
{
  echo "machine: $CORES cores; $("$PY" --version); wrk: $(command -v wrk || echo none)"
  "$PY" -c "import modelport.serving.app, modelport.serving.server, uvicorn, fastapi, onnxruntime, orjson; print('imports ok')"
} 2>&1 | tee "$OUT/env.txt"
GEN=""
if ! wrk --version 2>&1 | grep -q "^wrk"; then
  echo "wrk does not run here: the Python load generator is used" | tee -a "$OUT/env.txt"
  GEN="--generator python"
fi
RT="$PY benchmarks/realtime.py --work $WORK --only a,c --duration $DURATION $GEN"
LAST=$((CORES - 1))

echo "== 1. protocols, one worker, wrk" | tee "$OUT/protocols.txt"
$RT --workers 1 --concurrency 1,64 --server-cpus 0 --load-cpus "$LAST" --cold-start 5 \
  --cli-startup 3 --json "$OUT/protocols.json" 2>&1 | tee -a "$OUT/protocols.txt"

echo "== 2. one worker, Python load generator (2 x 32 connections)" | tee "$OUT/python.txt"
$RT --workers 1 --generator python --loaders 2 --concurrency 32 --protocols simple \
  --server-cpus 0 --load-cpus "$((LAST - 1)),$LAST" --cold-start 0 --cli-startup 0 \
  --json "$OUT/python.json" 2>&1 | tee -a "$OUT/python.txt"

if [ "$CORES" -ge 16 ]; then
  SERVER="0-11"; LOAD="12-15"; WORKERS="1,2,4,8,12"
else
  SERVER="0-$((CORES / 2 - 1))"; LOAD="$((CORES / 2))-$LAST"; WORKERS="1,2"
fi
echo "== 3. scaling: workers $WORKERS on CPUs $SERVER, 4 wrk loaders on CPUs $LOAD" \
  | tee "$OUT/scaling.txt"
$RT --workers "$WORKERS" --accept both --loaders 4 --concurrency 4,64 --protocols simple \
  --server-cpus "$SERVER" --load-cpus "$LOAD" --cold-start 0 --cli-startup 0 \
  --json "$OUT/scaling.json" 2>&1 | tee -a "$OUT/scaling.txt"
