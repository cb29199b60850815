"""Kubernetes names, checked before anything is generated (pure functions, no I/O).

Kubernetes refuses a manifest whose names break its rules only when it is applied; these checks
say which rule a name breaks when the package is made::

    >>> check_label_name("churn-v2", "--name")
    'churn-v2'
    >>> check_label_name("Churn_v2", "--name")
    Traceback (most recent call last):
    ...
    modelport.errors.InvalidReferenceError: --name 'Churn_v2' is not a valid Kubernetes name: \
an RFC 1035 label has only lowercase letters, digits and '-' (found 'C'); rename it, e.g. \
'modelport package REF --target kubernetes --name churn-v2'
"""

from __future__ import annotations

import re

from modelport.errors import InvalidReferenceError

#: RFC 1035 label (Services, and the names every resource here derives from)
LABEL_MAX = 63
_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
#: CronJob names: Kubernetes appends 11 characters to name its Jobs
CRONJOB_MAX = 52
#: label values: 63 characters, alphanumeric at both ends, '-', '_' and '.' inside
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def suggest(text: str) -> str:
    """A valid name close to ``text`` (lowercased, other characters as '-')."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    return name[:LABEL_MAX].rstrip("-")


def label_rule_broken(name: str, max_length: int = LABEL_MAX, *, rfc: int = 1035) -> str:
    """Which RFC 1035 label rule ``name`` breaks, or ``""`` (``rfc=1123``: the label rule of
    namespaces, which may start with a digit)."""
    if not name:
        return "a name cannot be empty"
    if len(name) > max_length:
        return f"it must be at most {max_length} characters (it has {len(name)})"
    bad = next((c for c in name if c not in _LABEL_CHARS), None)
    if bad is not None:
        return f"an RFC {rfc} label has only lowercase letters, digits and '-' (found {bad!r})"
    if rfc == 1035 and not name[0].isalpha():
        return "an RFC 1035 label must start with a lowercase letter"
    if name.startswith("-"):
        return f"an RFC {rfc} label must start with a letter or digit"
    if name.endswith("-"):
        return f"an RFC {rfc} label must end with a letter or digit"
    assert rfc == 1123 or _LABEL.fullmatch(name)
    return ""


def check_label_name(name: str, what: str, *, max_length: int = LABEL_MAX,
                     target: str = "kubernetes", rfc: int = 1035) -> str:
    """``name`` if it is a valid RFC 1035 (or 1123) label, else the rule it breaks (an error)."""
    rule = label_rule_broken(name, max_length, rfc=rfc)
    if rule:
        flag = what if what.startswith("--") else "--name"
        raise InvalidReferenceError(
            f"{what} {name!r} is not a valid Kubernetes name: {rule}; rename it, e.g. "
            f"'modelport package REF --target {target} {flag} {suggest(name)[:max_length]}'")
    return name


def label_value(text: str) -> str:
    """``text`` made a valid label value (used for model names and versions in labels)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    assert _LABEL_VALUE.fullmatch(value)
    return value
