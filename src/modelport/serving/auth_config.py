"""The security parts of ``ServeConfig``: authentication, TLS, CORS, model-attack defences.

In a serve YAML file::

    auth:
      enabled: true                  # every route but health needs a key (or a JWT)
      keys_file: /etc/modelport/keys.json   # default: keys in the registry database
      default_requests_per_s: 50     # per key, unless the key sets its own
      default_rows_per_day: 1000000
      oidc_issuer: https://id.example.com/
      oidc_audience: modelport
      oidc_jwks: https://id.example.com/.well-known/jwks.json   # or a file path
    tls: {cert: server.pem, key: server.key, client_ca: clients-ca.pem}   # client_ca: mTLS
    cors: {allow_origins: ["https://app.example.com"]}
    defences: {round_probabilities: 2, out_of_distribution: flag}

>>> AuthConfig(enabled=True).is_on, AuthConfig().is_on
(True, False)
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelport.errors import ConfigurationError

OodAction = Literal["off", "flag", "refuse"]


@dataclass(frozen=True)
class AuthConfig:
    """Who may call the server. Off by default: then the server only listens on loopback."""

    enabled: bool = False
    #: a JSON file of hashed keys (``modelport auth create-key --keys-file``); unset: the
    #: registry database
    keys_file: str | None = None
    #: seconds between re-reads of the keys (revocations reach running servers this fast)
    refresh_s: float = 5.0
    #: ``/metrics`` without a token (Prometheus scrapers); otherwise it needs ``read``
    public_metrics: bool = False
    #: admin routes (model repository load / unload, endpoint changes) without authentication
    allow_admin_routes: bool = False
    #: listen on a non-loopback address without authentication
    insecure: bool = False
    #: limits for keys that set none (None: unlimited)
    default_requests_per_s: float | None = None
    default_rows_per_day: int | None = None
    #: bad or missing tokens one client may send in a burst, then per second, before 429
    bad_token_burst: int = 20
    bad_token_per_s: float = 1.0
    #: OpenID Connect / JWT bearer tokens (RS256/ES256...): all three or none
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    #: a JWKS document: a file path or an https:// URL
    oidc_jwks: str | None = None
    #: claim holding the token's scopes (space-separated string or list)
    oidc_scope_claim: str = "scope"
    #: prefix of modelport scopes inside that claim (``modelport:predict``)
    oidc_scope_prefix: str = ""

    @property
    def is_on(self) -> bool:
        return self.enabled

    @property
    def oidc(self) -> bool:
        return self.oidc_issuer is not None

    def check(self) -> None:
        oidc = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks)
        if any(oidc) and not all(oidc):
            raise ConfigurationError(
                "OIDC needs auth.oidc_issuer, auth.oidc_audience and auth.oidc_jwks together")
        if self.refresh_s <= 0 or self.bad_token_per_s <= 0 or self.bad_token_burst < 1:
            raise ConfigurationError(
                "auth.refresh_s, auth.bad_token_per_s and auth.bad_token_burst must be positive")
        for name, value in (("default_requests_per_s", self.default_requests_per_s),
                            ("default_rows_per_day", self.default_rows_per_day)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"auth.{name} must be positive, got {value}")


@dataclass(frozen=True)
class TlsConfig:
    """TLS for HTTP and gRPC; ``client_ca`` turns on mutual TLS (clients need a certificate
    signed by it)."""

    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None

    @property
    def is_on(self) -> bool:
        return self.cert is not None

    def check(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
        if self.client_ca is not None and self.cert is None:
            raise ConfigurationError("--tls-client-ca (mutual TLS) needs --tls-cert and "
                                     "--tls-key too")
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key),
                           ("--tls-client-ca", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise ConfigurationError(f"{flag} {path!r}: no such file")


@dataclass(frozen=True)
class CorsConfig:
    """Cross-origin requests from browsers (e.g. the web export calling the server)."""

    allow_origins: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ("authorization", "content-type", "x-request-id",
                                      "inference-header-content-length")
    max_age_s: int = 600

    @property
    def is_on(self) -> bool:
        return bool(self.allow_origins)


@dataclass(frozen=True)
class DefenceConfig:
    """Defences against model extraction and evasion (issue 14)."""

    #: round returned probabilities to this many decimals (None: as computed)
    round_probabilities: int | None = None
    #: answer labels only (no probabilities) on every protocol
    labels_only: bool = False
    #: check each request against the bundle's reference profile: off, flag (count, log, header)
    #: or refuse (400)
    out_of_distribution: OodAction = "off"
    #: a value further than this many spreads (IQR) outside the training range is "far"
    ood_tolerance: float = 3.0
    #: watch each key's (or client's) recent inputs for sweeps (metric + warning log)
    sweep_detection: bool = False
    #: rows per caller looked at together, and the share of repeats or one-column variations
    #: of earlier rows from which they count as a sweep
    sweep_window: int = 200
    sweep_threshold: float = 0.5
    #: overrides by served model name, e.g. {churn: {labels_only: true}}
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check(self) -> None:
        for name, override in self.per_model.items():
            unknown = sorted(set(override) - set(self.__dataclass_fields__) - {"per_model"}
                             ) if isinstance(override, dict) else ["(not a mapping)"]
            if unknown or "per_model" in override:
                raise ConfigurationError(
                    f"defences.per_model.{name}: unknown setting(s) {unknown}")
            dataclasses.replace(self, per_model={}, **override).check()
        if self.sweep_window < 2 or not 0 < self.sweep_threshold <= 1:
            raise ConfigurationError(
                "defences.sweep_window must be at least 2 and sweep_threshold in (0, 1]")
        if self.round_probabilities is not None and not 0 <= self.round_probabilities <= 15:
            raise ConfigurationError("defences.round_probabilities must be 0-15 decimals")
        if self.out_of_distribution not in ("off", "flag", "refuse"):
            raise ConfigurationError(
                "defences.out_of_distribution must be off, flag or refuse, got "
                f"{self.out_of_distribution!r}")


@dataclass(frozen=True)
class SignatureConfig:
    """Artifact signatures checked before a version loads (registry/signing.py)."""

    #: trusted Ed25519 public keys (PEM files)
    public_keys: tuple[str, ...] = ()
    #: refuse unsigned versions too (strict mode)
    required: bool = False

    def check(self) -> None:
        if self.required and not self.public_keys:
            raise ConfigurationError("--require-signatures needs at least one --verify-key")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth: AuthConfig) -> None:
    """Refuse a non-loopback address without authentication unless ``auth.insecure``."""
    if auth.is_on or auth.insecure or is_loopback(host):
        return
    raise ConfigurationError(
        f"refusing to listen on {host} without authentication: anyone who reaches the port "
        "could call every model. Create a key with 'modelport auth create-key --scope predict "
        "--name NAME' and serve with --auth, or pass --insecure to listen anyway")


__all__ = ["AuthConfig", "CorsConfig", "DefenceConfig", "OodAction", "SignatureConfig",
           "TlsConfig",
           "check_exposure", "is_loopback"]
