#!/usr/bin/env bash
# Coverage-guided fuzzing of the stream worker's C reader under AddressSanitizer (issue 14.7).
#
#   scripts/fuzz_fastcodec.sh [RUNS] [WORKDIR]     # default 10000000 runs, /tmp/fuzz-fastcodec
#
# Builds src/modelport/stream/_fastcodec.c with clang -fsanitize=address,fuzzer-no-link into
# WORKDIR, seeds a corpus with valid messages, and runs tests/stream/fuzz_fastcodec.py under
# atheris with the sanitizer preloaded. Needs clang (apt-get install -y clang) and atheris.
set -euo pipefail
RUNS=${1:-10000000}
WORK=${2:-/tmp/fuzz-fastcodec}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$WORK/build" "$WORK/corpus"
INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
clang -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,fuzzer-no-link \
  -I"$INCLUDE" "$ROOT/src/modelport/stream/_fastcodec.c" -o "$WORK/build/_fastcodec$SUFFIX"
"$PY" "$ROOT/tests/stream/fuzz_fastcodec.py" --write-seeds "$WORK/corpus"
ATHERIS=$("$PY" -c 'import atheris; print(atheris.path())')
export FASTCODEC_DIR="$WORK/build"
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" "$PY" "$ROOT/tests/stream/fuzz_fastcodec.py" \
  -runs="$RUNS" -print_final_stats=1 -max_len=512 "$WORK/corpus"
