"""``CrashAt``: a fault-injection aid for crash tests, off unless asked for.

``MODELPORT_STREAM_FAILPOINT=written:3`` makes ``modelport stream run`` SIGKILL itself the third
time a batch's outputs are durable but not yet committed, which is the window at-least-once
delivery has to survive. Random kills from outside rarely land exactly there.
"""

from __future__ import annotations

import os
import signal

from modelport.errors import ConfigurationError

ENV = "MODELPORT_STREAM_FAILPOINT"


class CrashAt:
    def __init__(self, point: str, nth: int) -> None:
        self.point = point
        self.nth = nth
        self.seen = 0

    @classmethod
    def from_env(cls, value: str | None) -> CrashAt | None:
        if not value:
            return None
        point, _, nth = value.partition(":")
        if not nth.isdigit() or int(nth) < 1:
            raise ConfigurationError(f"{ENV}={value!r}: write POINT:N, e.g. written:3")
        return cls(point, int(nth))

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        self.seen += 1
        if self.seen == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)
