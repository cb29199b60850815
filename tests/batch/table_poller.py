"""Reads a PostgreSQL table over and over (another process, as a user's reader would) and logs
what it saw, one JSON line per read: ``{"rows": n, "runs": [...]}`` or ``{"error": "..."}``.
Stops when the file named by its third argument exists."""

from __future__ import annotations

import json
import os
import sys
import time

import sqlalchemy as sa

url, table, stop_file, log_file = sys.argv[1:5]
engine = sa.create_engine(url)
with open(log_file, "w") as log:
    while not os.path.exists(stop_file):
        try:
            with engine.connect() as conn:
                rows, runs = conn.execute(sa.text(
                    "SELECT count(*), array_agg(DISTINCT regexp_replace(prediction_id, "
                    f"'-[0-9]+$', '')) FROM \"{table}\"")).one()
            seen = {"rows": rows, "runs": sorted(runs or [])}
        except Exception as exc:
            seen = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        log.write(json.dumps(seen) + "\n")
        log.flush()
        time.sleep(0.01)
engine.dispose()
