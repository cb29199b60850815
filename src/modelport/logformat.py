"""One log format for every long-running command (``serve``, ``stream run``), chosen by a flag.

``--log-format plain`` (the default) writes one readable line per record::

    2026-12-04 17:03:11,123 INFO modelport.stream: stream worker started model=fraud source=…

``--log-format json`` writes one JSON object per line, with the same keys everywhere::

    {"ts": 1796403791.123456, "level": "info", "logger": "modelport.stream",
     "message": "stream worker started", "pid": 4242, "model": "fraud", "source": "…"}

Fields passed with ``extra=`` (request id, model, version, status, …) become keys of the JSON
object, or ``key=value`` pairs after a plain line's message.

>>> import logging
>>> record = logging.LogRecord("modelport.serving", logging.INFO, "", 0, "ready", None, None)
>>> record.model = "churn"
>>> PlainFormatter().format(record).split(" ", 2)[2]
'INFO modelport.serving: ready model=churn'
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal

import orjson

LogFormat = Literal["plain", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("plain", "json")
DEFAULT_LOG_FORMAT: LogFormat = "plain"

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}  # (uvicorn's ANSI copy of the message)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_") and value is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, ``pid`` and the
    record's ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class PlainFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …`` for a person reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = " ".join(f"{key}={value}" for key, value in _extras(record).items())
        if not pairs:
            return text
        head, sep, tail = text.partition("\n")  # keep a traceback below the line
        return f"{head} {pairs}{sep}{tail}"


def check_log_format(value: str) -> LogFormat:
    """``value`` if it names a log format; a ``ConfigurationError`` saying which exist."""
    if value not in LOG_FORMATS:
        from modelport.errors import ConfigurationError

        raise ConfigurationError(
            f"unknown log format {value!r}; use --log-format plain or --log-format json")
    return "json" if value == "json" else "plain"


def configure(log_format: str = DEFAULT_LOG_FORMAT, level: int = logging.INFO) -> None:
    """Send every log record (modelport's, uvicorn's, librdkafka's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if check_log_format(log_format) == "json"
                         else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


__all__ = ["DEFAULT_LOG_FORMAT", "LOG_FORMATS", "JsonFormatter", "LogFormat", "PlainFormatter",
           "check_log_format", "configure"]
