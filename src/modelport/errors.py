"""Every error modelport raises on purpose.

One root, no transport imports. Each edge (CLI, HTTP, gRPC, Kafka) maps these classes to its own
codes in a single table of its own; nothing here knows about exit codes or status codes::

    ModelportError
    ├── InvalidInputError          data does not fit the model's signature (names the column)
    ├── InvalidReferenceError      a model name / reference / URI is malformed or unsafe
    ├── ConfigurationError         settings, flags or files given to modelport are wrong
    ├── NotFoundError              no such model, version, alias, endpoint or file
    ├── ConflictError              the request contradicts the current state (archived, exists)
    ├── IntegrityError             an artifact does not match its recorded SHA-256, or is incomplete
    ├── UntrustedArtifactError     a pickle-based artifact without ``trusted=True``
    ├── UnsupportedModelError      no flavor knows this object / a needed extra is not installed
    ├── ModelLoadError             the artifact is intact but the framework failed to load it
    ├── PredictionError            the model raised while predicting
    ├── OverloadedError            the service sheds load; try again later
    │   └── RateLimitedError       this caller went over its rate or quota; try again later
    ├── AuthenticationError        no credentials, or credentials the server does not accept
    ├── PermissionDeniedError      valid credentials without the scope the action needs
    ├── RequestTimeoutError        the prediction did not finish within the request's deadline
    └── StorageError               the registry database or artifact store failed
        └── ...

Messages are written for the person who made the mistake: what was wrong, and what to do next.
They never contain stack traces and never leak server paths over the wire.
"""

from __future__ import annotations


class ModelportError(Exception):
    """Root of every error modelport raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInputError(ModelportError):
    """Input data does not match the model signature.

    ``field`` names the offending column or tensor when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidReferenceError(ModelportError):
    """A model name, reference (``name:3``, ``name@alias``) or URI is malformed or unsafe."""


class ConfigurationError(ModelportError):
    """Settings, command-line flags or configuration files are wrong."""


class NotFoundError(ModelportError):
    """A model, version, alias, endpoint or file does not exist."""


class ConflictError(ModelportError):
    """The request contradicts the current state (e.g. loading an archived version)."""


class IntegrityError(ModelportError):
    """An artifact's bytes do not match the SHA-256 recorded when it was saved."""


class UntrustedArtifactError(ModelportError):
    """An artifact needs pickle-style loading and the caller did not pass ``trusted=True``."""


class UnsupportedModelError(ModelportError):
    """No flavor handles this model object, or the flavor's optional dependency is missing."""


class ModelLoadError(ModelportError):
    """The artifact is intact, but its framework could not load it."""


class PredictionError(ModelportError):
    """The model raised while predicting on valid input."""


class OverloadedError(ModelportError):
    """The service is over capacity; ``retry_after`` seconds is a fair wait before retrying."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(OverloadedError):
    """One caller (an API key, or a client sending bad tokens) went over its request rate or
    quota; ``retry_after`` seconds is when it may try again."""


class AuthenticationError(ModelportError):
    """The request carries no credentials, or credentials the server does not accept."""


class PermissionDeniedError(ModelportError):
    """The credentials are valid but lack the scope the action needs."""


class RequestTimeoutError(ModelportError):
    """A prediction did not finish before its deadline."""


class StorageError(ModelportError):
    """The registry database or the artifact store failed."""


__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "IntegrityError",
    "InvalidInputError",
    "InvalidReferenceError",
    "ModelLoadError",
    "ModelportError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PredictionError",
    "RateLimitedError",
    "RequestTimeoutError",
    "StorageError",
    "UnsupportedModelError",
    "UntrustedArtifactError",
]
