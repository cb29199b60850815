"""Model references: ``name`` (the latest version), ``name:3`` and ``name@production``.

>>> parse_ref("churn:3")
Ref(name='churn', version=3, alias=None)
>>> str(parse_ref("churn@production"))
'churn@production'
>>> parse_ref("churn").alias
'latest'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelport.bundle.save import validate_name
from modelport.errors import InvalidReferenceError

#: The alias every model has: its highest non-archived version. It cannot be set or deleted.
LATEST = "latest"
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_TAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
MAX_TAG_VALUE = 4096


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version is not None else (
            f"{self.name}@{self.alias}")


def check_name(name: str) -> str:
    """A model name that is safe as a path segment, a URL segment and a database key."""
    # validate_name's regex ends in "$", which also matches before a trailing newline.
    if isinstance(name, str) and ("\n" in name or "\x00" in name):
        raise InvalidReferenceError(f"invalid model name {name!r}: it contains a control character")
    return validate_name(name)


def check_alias(alias: str, *, settable: bool = False) -> str:
    """Alias names start with a letter (so ``3`` is never mistaken for a version)."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidReferenceError(
            f"invalid alias {alias!r}: use 1-64 letters, digits, '_' or '-', starting with a letter"
        )
    if settable and alias == LATEST:
        raise InvalidReferenceError(
            f"the alias {LATEST!r} is reserved: it always means the highest non-archived version"
        )
    return alias


def check_tag(key: str, value: str | None = None) -> str:
    if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
        raise InvalidReferenceError(
            f"invalid tag key {key!r}: use 1-128 letters, digits, '.', '_', ':', '/' or '-'"
        )
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TAG_VALUE):
        raise InvalidReferenceError(
            f"tag {key!r}: the value must be a string of at most {MAX_TAG_VALUE} characters"
        )
    return key


#: the highest version number the registry stores (its version column is a 32-bit INTEGER)
MAX_VERSION = 2**31 - 1


def check_version_number(version: object) -> int:
    """``version`` when it is a whole number from 1 to :data:`MAX_VERSION`."""
    if (not isinstance(version, int) or isinstance(version, bool)
            or not 1 <= version <= MAX_VERSION):
        raise InvalidReferenceError(
            f"version must be a positive integer up to {MAX_VERSION}, not {version!r}")
    return version


def parse_ref(text: str | Ref) -> Ref:
    """Parse ``name``, ``name:<version>`` or ``name@<alias>``; a bare name means ``@latest``."""
    if isinstance(text, Ref):
        return text
    if not isinstance(text, str):
        raise InvalidReferenceError(
            f"a model reference must be a string, not {type(text).__name__}")
    if "@" in text:
        name, _, alias = text.rpartition("@")
        return Ref(check_name(name), alias=check_alias(alias))
    if ":" in text:
        name, _, number = text.rpartition(":")
        if (not number.isascii() or not number.isdigit() or len(number) > 10
                or not 1 <= int(number) <= MAX_VERSION):
            raise InvalidReferenceError(
                f"invalid model reference {text[:80]!r}: the version after ':' must be a "
                f"positive integer up to {MAX_VERSION}, as in churn:3"
            )
        return Ref(check_name(name), version=int(number))
    return Ref(check_name(text), alias=LATEST)


__all__ = ["LATEST", "MAX_VERSION", "Ref", "check_alias", "check_name", "check_tag",
           "check_version_number", "parse_ref"]
