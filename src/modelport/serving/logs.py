"""Server logs in the format ``--log-format`` chose (:mod:`modelport.logformat`), with the
request id and the other ``extra=`` fields of a record kept as fields."""

from __future__ import annotations

import logging

from modelport.logformat import DEFAULT_LOG_FORMAT, JsonFormatter
from modelport.logformat import configure as _configure


def configure(level: int = logging.INFO, log_format: str = DEFAULT_LOG_FORMAT) -> None:
    """Send modelport's (and uvicorn's) logs to stderr, one record per line."""
    _configure(log_format, level)


__all__ = ["JsonFormatter", "configure"]
