"""Reads a Parquet output over and over (another process, as a user's reader would) and logs what
it saw, one JSON line per read: ``{"rows": n, "runs": [...], "ids_ok": bool}`` or ``{"retry": ...}``
or ``{"error": "..."}``. Stops when the file named by its second argument exists. With storage
options (JSON) as a fourth argument the output is on an object store and is read through
``modelport.batch.read_output``, as users of such outputs read it."""

from __future__ import annotations

import json
import os
import sys
import time

import pyarrow.parquet as pq

from modelport.batch import read_output

output, stop_file, log_file = sys.argv[1:4]
options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
with open(log_file, "w") as log:
    while not os.path.exists(stop_file):
        try:
            table = pq.read_table(output) if options is None else read_output(
                output, storage_options=options)
            ids = table["id"].to_pylist()
            runs = {p.rsplit("-", 1)[0] for p in table["prediction_id"].to_pylist()}
            seen = {"rows": table.num_rows, "runs": sorted(runs),
                    "ids_ok": ids == list(range(len(ids)))}
        except FileNotFoundError as exc:
            # listed the old version, then the switch happened: a failed read, retried; never a
            # mix of versions (file names are per run)
            seen = {"retry": str(exc)[:200]}
        except Exception as exc:
            seen = {"error": f"{type(exc).__name__}: {exc}"}
        log.write(json.dumps(seen) + "\n")
        log.flush()
        time.sleep(0.005)
