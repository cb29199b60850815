"""Durations as people write them: ``90s``, ``10m``, ``1.5h``, ``30d``, ``2w``, ``250ms`` or a
plain number of seconds. One parser for every flag, rule file and log setting.

>>> parse_duration("10m"), parse_duration("1.5h"), parse_duration(30)
(600.0, 5400.0, 30.0)
"""

from __future__ import annotations

import re

from modelport.errors import ConfigurationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str | float | int, *, what: str = "duration",
                   positive: bool = False) -> float:
    """Seconds in ``text``; ``positive`` refuses zero. The error names ``what``."""
    if isinstance(text, bool):
        raise ConfigurationError(f"{what} must be a duration such as 10m, not {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise ConfigurationError(
                f"{what} {text!r} is not a duration; write a number with a unit: "
                "ms, s, m, h, d or w (e.g. 10m, 30d)")
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds < 0 or (positive and seconds == 0):
        raise ConfigurationError(f"{what} must be {'above zero' if positive else 'at least 0'}")
    return seconds


__all__ = ["parse_duration"]
