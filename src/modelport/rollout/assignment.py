"""Sticky assignment: a stable hash of (experiment, key) → a point in [0, 1).

The same key always lands on the same point for the same experiment, in every process, on every
machine, after every restart — no stored assignment table, as experimentation platforms do it.
Python's ``hash()`` is salted per process, so a keyed BLAKE2b digest is used instead.

>>> bucket("user-42", "checkout-fraud") == bucket("user-42", "checkout-fraud")
True
>>> 0.0 <= bucket("user-42", "checkout-fraud") < 1.0
True
>>> pick([("blue", 50.0), ("green", 50.0)], 0.75)
'green'
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

_SCALE = float(1 << 64)


def bucket(key: str | bytes, experiment: str) -> float:
    """A uniform point in ``[0, 1)`` fixed by ``key`` and ``experiment``.

    Different experiments give independent points for one key, so a user in the candidate arm
    of one test is not systematically in the candidate arm of the next.
    """
    data = key if isinstance(key, bytes) else key.encode("utf-8", "surrogatepass")
    digest = blake2b(data, digest_size=8, key=experiment.encode("utf-8")[:64]).digest()
    return int.from_bytes(digest, "big") / _SCALE


def pick(weights: Sequence[tuple[str, float]], point: float) -> str:
    """The name whose cumulative share (weights in percent) covers ``point`` in ``[0, 1)``.

    Zero weights are never picked; the last positive weight absorbs rounding at the top.
    """
    target = point * 100.0
    total = 0.0
    last = None
    for name, weight in weights:
        if weight <= 0:
            continue
        total += weight
        last = name
        if target < total:
            return name
    if last is None:
        raise ValueError("no variant has a positive weight")
    return last


__all__ = ["bucket", "pick"]
