"""``Progress``: a bar with rows/s and ETA on a terminal, a log line now and then elsewhere.

>>> import io
>>> out, now = io.StringIO(), iter([0.0, 20.0]).__next__
>>> p = Progress(total=1000, stream=out, tty=False, interval=10.0, clock=now)
>>> p.advance(500, 2)
>>> print(out.getvalue().strip())
batch: 500/1,000 rows (50%), 25 rows/s, ETA 0:00:20, 2 rejected
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(self, total: int | None = None, *, stream: TextIO | None = None,
                 tty: bool | None = None, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, enabled: bool = True) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = 0.2 if self.tty else interval
        self.clock = clock
        self.enabled = enabled
        self.rows = 0
        self.skipped = 0
        self.rejected = 0
        self._start = clock()
        self._last = self._start
        self._lock = threading.Lock()

    def skip(self, rows: int) -> None:
        """Rows a resumed run had already scored: counted, but not in the rate."""
        with self._lock:
            self.skipped += rows

    def advance(self, rows: int, rejected: int = 0) -> None:
        with self._lock:
            self.rows += rows
            self.rejected += rejected
            now = self.clock()
            if self.enabled and now - self._last >= self.interval:
                self._last = now
                self._draw(now)

    def finish(self) -> None:
        if self.enabled and self.tty:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.rows / elapsed
        done = self.rows + self.skipped
        eta = ""
        share = ""
        if self.total:
            left = max(self.total - done, 0)
            eta = f", ETA {_clock(left / rate) if rate > 0 else '?'}"
            share = f" ({100 * done // self.total}%)"
        of = f"/{self.total:,}" if self.total else ""
        rejected = f", {self.rejected:,} rejected" if self.rejected else ""
        text = f"{done:,}{of} rows{share}, {rate:,.0f} rows/s{eta}{rejected}"
        if self.tty:
            bar = ""
            if self.total:
                filled = int(30 * min(done / self.total, 1.0))
                bar = "[" + "#" * filled + "-" * (30 - filled) + "] "
            self.stream.write(f"\r{bar}{text}\x1b[K")
        else:
            self.stream.write(f"batch: {text}\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
