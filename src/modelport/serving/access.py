"""``AccessControl``: the one check every request passes before its handler runs.

For an HTTP request (:meth:`AccessControl.http`) or a gRPC call (:meth:`AccessControl.grpc`):

1. find the route in the route table (:mod:`modelport.serving.routes`) and the scope it needs
   (a path known for other methods only → 405 with ``Allow``);
2. without authentication configured: refuse ``admin`` routes unless ``auth.allow_admin_routes``,
   let everything else through;
3. with authentication: public routes pass; otherwise the bearer token (``Authorization: Bearer
   mp_…`` or ``X-API-Key``; a JWT when OIDC is configured) must be valid (401), hold the scope
   (403), and its key must be within its request rate (429). Clients that keep sending bad
   tokens are slowed down (429) before their tokens are even checked.

The principal is left in the ASGI scope (:func:`principal_of`) or, for gRPC, in a context
variable (:func:`current_principal`), for row quotas and the audit log.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelport.errors import (
    AuthenticationError,
    PermissionDeniedError,
)
from modelport.serving.auth import FileKeyStore, KeyStore, KeyTable, Principal, SqlKeyStore
from modelport.serving.auth_config import AuthConfig
from modelport.serving.http_errors import MethodNotAllowed, Protocol
from modelport.serving.limits import (
    BadTokenLimiter,
    CallerLimits,
    LimitTable,
    SqlUsageStore,
    UsageSync,
)
from modelport.serving.routes import GRPC_SCOPES, ROUTES, RouteTable, Scope, grants

if TYPE_CHECKING:
    from modelport.serving.oidc import OidcVerifier

log = logging.getLogger("modelport.serving.auth")

#: where :meth:`AccessControl.http` leaves the principal in the ASGI scope
PRINCIPAL_KEY = "modelport.principal"
_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "modelport_principal", default=None)

_BEARER = b"bearer "


def principal_of(scope: dict[str, Any]) -> Principal | None:
    """The caller of an HTTP request (``None`` when authentication is off)."""
    return scope.get(PRINCIPAL_KEY)


def current_principal() -> Principal | None:
    """The caller of the gRPC call being handled (``None`` when authentication is off)."""
    return _principal.get()


def set_current_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _principal.set(principal)


def actor_of(principal: Principal | None) -> str:
    """The audit log's actor for a request: ``key:<name>`` (``jwt:<sub>``) or anonymous."""
    if principal is None:
        return "anonymous"
    kind = "jwt" if principal.key_id.startswith("jwt:") else "key"
    return f"{kind}:{principal.name}"


class AccessControl:
    """Route scopes, token checks and per-caller limits for one server process."""

    def __init__(self, config: AuthConfig, *, store: KeyStore | None = None,
                 oidc: OidcVerifier | None = None, routes: RouteTable | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 usage: UsageSync | None = None) -> None:
        self.config = config
        self.enabled = config.is_on
        self.store = store
        self.oidc = oidc
        self.routes = routes or RouteTable(ROUTES)
        self.keys = KeyTable()
        self.limits = CallerLimits(default_requests_per_s=config.default_requests_per_s,
                                   default_rows_per_day=config.default_rows_per_day, clock=clock)
        self.bad_tokens = BadTokenLimiter(burst=config.bad_token_burst,
                                          rate=config.bad_token_per_s, clock=clock)
        #: where daily row counts are summed across servers; ``None``: this process only
        self.usage = usage
        #: whether any request may count against a daily row quota (known at each refresh)
        self.quotas = config.is_on
        #: (Authorization value, scope) → the API key's principal and request rate, once
        #: checked: the next request with it costs one lookup (emptied when keys are re-read).
        #: Keyed by the value itself, as the JWT cache is: a lookup compares bytes only after a
        #: match of the process's randomized 64-bit string hash, which a guesser cannot aim at
        self._granted: dict[tuple[bytes, str], tuple[Principal, float | None]] = {}

    @classmethod
    def from_config(cls, config: AuthConfig, engine: Any = None) -> AccessControl:
        """Keys from ``config.keys_file`` or, without one, the registry database ``engine``;
        daily row counts in that database."""
        store: KeyStore | None = None
        if config.is_on:
            if config.keys_file:
                store = FileKeyStore(config.keys_file)
            elif engine is not None:
                store = SqlKeyStore(engine)
        oidc = None
        if config.is_on and config.oidc:
            from modelport.serving.oidc import OidcVerifier  # joserfc: only when configured

            oidc = OidcVerifier(config)
        usage = SqlUsageStore(engine) if config.is_on and engine is not None else None
        return cls(config, store=store, oidc=oidc, usage=usage)

    def share_limits(self, path: str, *, syncs: bool) -> None:
        """Count rates and quotas in the limits file every worker of one server maps;
        ``syncs``: this worker exchanges the day's row counts with the database."""
        self.limits.table.close()
        self.limits.table = LimitTable(path)
        if not syncs:
            self.usage = None

    def sync_usage(self) -> None:
        """Send this host's new row counts to the database, take every server's (blocking)."""
        if self.usage is not None:
            self.limits.sync(self.usage)

    def refresh(self) -> None:
        """Re-read keys (and the JWKS): revocations and new keys take effect (blocking)."""
        if self.store is not None:
            keys = self.store.load()
            self.keys = KeyTable(keys)
            self._granted = {}  # revoked keys stop working now
            self.quotas = self.limits.default_rows is not None or any(
                k.limits.rows_per_day is not None for k in keys)
        if self.oidc is not None and self.oidc._keys is None:
            self.oidc.load()

    # ------------------------------------------------------------------ HTTP
    def shape_of(self, method: str, path: str) -> Protocol:
        route = self.routes.owner(path)
        return route.protocol if route is not None else "v2"

    def http(self, scope: dict[str, Any]) -> Principal | None:
        """Check one HTTP request; raises the error to answer with."""
        method: str = scope["method"]
        path: str = scope["path"]
        route = self.routes.lookup(method, path)
        if route is None:
            allow = self.routes.allowed_methods(path)
            if allow:
                raise MethodNotAllowed(f"{method} is not allowed on {path}; use "
                                       f"{' or '.join(allow)}", allow)
            needed: Scope = "admin"  # a route nobody declared: only admins (then maybe 404)
        else:
            needed = route.scope
        if not self.enabled:
            if needed == "admin" and route is not None and not self.config.allow_admin_routes:
                raise _admin_off()
            return None
        if needed == "public" or (path == "/metrics" and self.config.public_metrics):
            return None
        authorization = None
        for key, value in scope["headers"]:  # Authorization, or X-API-Key as a bearer
            if key == b"authorization":
                authorization = bytes(value)
                break
            if key == b"x-api-key":
                authorization = b"Bearer " + bytes(value)
                break
        principal = self.check(authorization, needed, path, scope)
        scope[PRINCIPAL_KEY] = principal
        return principal

    # ------------------------------------------------------------------ gRPC
    def grpc(self, method: str, metadata: Any, peer: str) -> Principal | None:
        """Check one gRPC call (``method``: the short RPC name, e.g. ``ModelInfer``)."""
        needed = GRPC_SCOPES.get(method, "admin")
        if not self.enabled:
            if needed == "admin" and method in GRPC_SCOPES and \
                    not self.config.allow_admin_routes:
                raise _admin_off()
            return None
        if needed == "public":
            return None
        token: bytes | None = None
        for key, value in metadata or ():
            if key == "authorization" or key == "x-api-key":
                token = value.encode("latin-1") if isinstance(value, str) else value
                if key == "x-api-key":
                    token = b"Bearer " + token
                break
        return self.check(token, needed, method, _peer_host(peer))

    # ------------------------------------------------------------------ shared
    def check(self, authorization: bytes | None, needed: Scope, what: str,
              client: str | dict[str, Any]) -> Principal:
        """Authenticate and authorize one request (and count it against the key's rate)."""
        granted = None
        if authorization is not None:
            granted = (authorization, needed)
            known = self._granted.get(granted)
            if known is not None:
                if self.bad_tokens.active:  # a client out of bad tries waits even so
                    self.bad_tokens.check(_client(client))
                if known[1] is not None:
                    self.limits.admit(*known)
                return known[0]
        principal = self.authenticate(authorization, client)
        self.authorize(principal, needed, what)
        if granted is not None and not principal.key_id.startswith("jwt:"):  # JWTs expire
            if len(self._granted) >= _GRANTED_MAX:
                self._granted = {}
            self._granted[granted] = (principal, self.limits.rate_of(principal))
        return principal

    def authenticate(self, authorization: bytes | None, client: str | dict[str, Any]
                     ) -> Principal:
        """The principal of ``authorization``; ``client`` (an address, or the ASGI scope to
        read it from only when needed) for the bad-token limit."""
        if self.bad_tokens.active:
            self.bad_tokens.check(_client(client))
        try:
            if authorization is None:
                raise AuthenticationError(
                    "this route needs an API key: send 'Authorization: Bearer <key>' (create "
                    "one with 'modelport auth create-key --scope predict --name NAME')")
            if not authorization.startswith(b"Bearer ") and \
                    authorization[:7].lower() != _BEARER:
                raise AuthenticationError("use 'Authorization: Bearer <key>'")
            token = authorization[7:].strip()
            if self.oidc is not None and token.startswith(b"ey") and token.count(b".") == 2:
                return self.oidc.verify(token.decode("latin-1"))
            return self.keys.verify(token)
        except AuthenticationError:
            if authorization is not None:  # a wrong token, not a missing one: guessing
                self.bad_tokens.failed(_client(client))
            raise

    def authorize(self, principal: Principal, needed: Scope, what: str) -> None:
        scopes = principal.scopes
        if needed not in scopes and "admin" not in scopes and not grants(scopes, needed):
            raise PermissionDeniedError(
                f"{principal.name!r} lacks the {needed!r} scope that {what} needs (it has "
                f"{', '.join(sorted(principal.scopes)) or 'none'}); create a key with "
                f"'modelport auth create-key --scope {needed} --name NAME'")
        self.limits.admit(principal, self.limits.rate_of(principal))

    def charge_rows(self, principal: Principal | None, rows: int) -> None:
        """Count predicted rows against the caller's daily quota (429 when over)."""
        if principal is not None:
            self.limits.charge_rows(principal, rows)


#: checked Authorization values kept (a client cycling through keys only empties the memo)
_GRANTED_MAX = 4096


def _admin_off() -> PermissionDeniedError:
    return PermissionDeniedError(
        "admin routes are off on a server without authentication; start it with --auth and "
        "use a key with the admin scope ('modelport auth create-key --scope admin --name "
        "NAME'), or with --allow-admin-routes")


def _peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` → the address, as HTTP reports it."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    return rest.rsplit(":", 1)[0].strip("[]")


def _client(scope_or_address: str | dict[str, Any]) -> str:
    if isinstance(scope_or_address, str):
        return scope_or_address
    client = scope_or_address.get("client")
    return str(client[0]) if client else "?"


__all__ = [
    "PRINCIPAL_KEY",
    "AccessControl",
    "actor_of",
    "current_principal",
    "principal_of",
    "set_current_principal",
]
