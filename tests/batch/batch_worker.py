"""A ``modelport batch run`` process for the crash tests, with two test-only brakes.

``BATCH_CHUNK_DELAY`` (seconds) slows every staged chunk so the parent can kill the run half-way;
``BATCH_PAUSE_BEFORE_SWITCH=1`` prints ``SWITCHING`` and sleeps just before the commit's atomic
switch, so the parent can kill it inside the commit step.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import modelport.batch.parquet_sink as parquet_sink
from modelport.cli.main import main

delay = float(os.environ.get("BATCH_CHUNK_DELAY", "0"))
if delay:
    original_write = parquet_sink.ParquetSink.write

    def slow_write(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(delay)
        original_write(self, *args, **kwargs)

    parquet_sink.ParquetSink.write = slow_write  # type: ignore[method-assign]

if os.environ.get("BATCH_PAUSE_BEFORE_SWITCH"):
    original_replace = os.replace

    def paused_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if ".link-" in str(src):
            print("SWITCHING", flush=True)
            time.sleep(600)
        original_replace(src, dst, *args, **kwargs)

    parquet_sink.os.replace = paused_replace  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
