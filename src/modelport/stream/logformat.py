"""The stream worker's log lines: the one format of :mod:`modelport.logformat`."""

from __future__ import annotations

from modelport.logformat import JsonFormatter, PlainFormatter

__all__ = ["JsonFormatter", "PlainFormatter"]
