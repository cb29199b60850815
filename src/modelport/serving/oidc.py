"""OpenID Connect / JWT bearer tokens, checked with ``joserfc`` against the provider's JWKS.

A token is accepted when its signature verifies with a key of the JWKS (asymmetric algorithms
only), ``iss`` and ``aud`` are the configured ones, and ``exp`` (required) / ``nbf`` hold. Its
scopes come from the ``scope`` claim (a space-separated string, or a list; the claim name and a
prefix such as ``modelport:`` are configurable); its name is ``sub`` (or ``client_id`` /
``azp``). The JWKS is read from a file or an URL at start and re-read every ``refresh_s``
seconds and whenever a token names a key id it does not know yet (key rotation).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from modelport.errors import AuthenticationError, ConfigurationError
from modelport.serving.auth import Principal
from modelport.serving.auth_config import AuthConfig
from modelport.serving.routes import KEY_SCOPES

log = logging.getLogger("modelport.serving.auth")

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA"]


class OidcVerifier:
    """Checks JWTs for one issuer and audience; verified tokens are cached until they expire."""

    def __init__(self, config: AuthConfig, *, clock: Callable[[], float] = time.time,
                 refresh_s: float = 300.0) -> None:
        assert config.oidc_issuer and config.oidc_audience and config.oidc_jwks
        self.issuer = config.oidc_issuer
        self.audience = config.oidc_audience
        self.source = config.oidc_jwks
        self.claim = config.oidc_scope_claim
        self.prefix = config.oidc_scope_prefix
        self._clock = clock
        self._refresh_s = refresh_s
        self._keys: KeySet | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal]] = {}

    def load(self) -> None:
        """Read the JWKS (blocking)."""
        try:
            if self.source.startswith(("https://", "http://")):
                with urllib.request.urlopen(self.source, timeout=10) as response:
                    document = json.loads(response.read())
            else:
                with open(self.source) as f:
                    document = json.load(f)
            keys = KeySet.import_key_set(document)
        except (OSError, ValueError, JoseError) as exc:
            raise ConfigurationError(
                f"cannot read the JWKS from {self.source!r} ({exc}); check auth.oidc_jwks"
            ) from None
        with self._lock:
            self._keys = keys
            self._loaded_at = self._clock()
            self._cache.clear()

    def verify(self, token: str) -> Principal:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._keys is None or now - self._loaded_at > self._refresh_s:
            self.load()
        assert self._keys is not None
        try:
            decoded = jwt.decode(token, self._keys, algorithms=ALGORITHMS)
        except JoseError as exc:
            if "kid" in str(exc).lower() or "key" in str(exc).lower():
                self.load()  # a rotated key: read the JWKS once more
                try:
                    decoded = jwt.decode(token, self._keys, algorithms=ALGORITHMS)
                except JoseError as again:
                    raise _invalid(again) from None
            else:
                raise _invalid(exc) from None
        except ValueError as exc:
            raise _invalid(exc) from None
        claims = decoded.claims
        try:
            jwt.JWTClaimsRegistry(
                now=int(now), leeway=30,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
            ).validate(claims)
        except JoseError as exc:
            raise _invalid(exc) from None
        principal = Principal(
            name=str(claims.get("sub") or claims.get("client_id") or claims.get("azp") or "?"),
            scopes=self._scopes(claims.get(self.claim)), key_id="jwt:" + str(claims.get("sub")))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (float(claims["exp"]), principal)
        return principal

    def _scopes(self, value: Any) -> frozenset[str]:
        items = value.split() if isinstance(value, str) else value if isinstance(
            value, list) else []
        out = set()
        for item in items:
            item = str(item)
            if self.prefix:
                if not item.startswith(self.prefix):
                    continue
                item = item[len(self.prefix):]
            if item in KEY_SCOPES:
                out.add(item)
        return frozenset(out)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def _invalid(exc: Exception) -> AuthenticationError:
    return AuthenticationError(f"the bearer token is not valid ({exc})")


__all__ = ["OidcVerifier", "looks_like_jwt"]
