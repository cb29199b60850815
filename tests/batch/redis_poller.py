"""Reads a batch job's Redis output over and over, as the lookup route does (one HMGET of the
published hash), and logs what it saw, one JSON line per read: ``{"run": id, "missing": n,
"runs": [...]}`` (``runs``: the run ids inside the payloads' prediction ids) or ``{"error":
"..."}``. Stops when the file named by its fourth argument exists."""

from __future__ import annotations

import json
import os
import sys
import time

import redis

from modelport.batch.redis_sink import lookup

url, prefix, rows, stop_file, log_file = sys.argv[1:6]
n = int(rows)
keys = sorted({str(i) for i in range(0, n, 37)} | {"0", str(n - 1)})
client = redis.Redis.from_url(url)
with open(log_file, "w") as log:
    while not os.path.exists(stop_file):
        try:
            payloads = lookup(client, prefix, keys)
            runs = sorted({p["prediction_id"].rsplit("-", 1)[0] for p in payloads
                           if p is not None})
            seen = {"run": runs[0] if len(runs) == 1 else None,
                    "missing": sum(p is None for p in payloads), "runs": runs}
        except Exception as exc:
            seen = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        log.write(json.dumps(seen) + "\n")
        log.flush()
        time.sleep(0.01)
client.close()
