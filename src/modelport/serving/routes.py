"""The route table: every HTTP route and gRPC method the server answers, with the scope it needs.

Authorization is deny-by-default: with authentication on, a request whose route is not in this
table is refused (403, "declares no scope"), and ``tests/serving/test_routes.py`` fails for any
route the server documents or mounts without a scope. To add a route, add one line here::

    Route("POST", "/feedback", "feedback", "simple"),
    Route(("GET", "PUT", "DELETE"), "/endpoints/{name}", "admin"),

Scopes (:data:`Scope`):

========= ================================================================================
public    no token needed (liveness / readiness probes of load balancers)
predict   inference routes of every protocol
feedback  labels and rewards for logged predictions
read      metadata, docs, metrics (unless ``auth.public_metrics``), dashboards
admin     model repository load / unload, endpoint and policy changes, alert rules
========= ================================================================================

A key with ``admin`` may do everything. Templates match one path segment per ``{name}``, and
the rest of the path for a trailing ``{name:path}``; a segment may also end in a literal suffix
after a placeholder (``{model}:predict``). The first matching route wins: list specific
templates before general ones.

>>> table = RouteTable([Route("POST", "/v2/models/{m}/infer", "predict")])
>>> table.lookup("POST", "/v2/models/churn/infer").scope
'predict'
>>> table.lookup("GET", "/v2/models/churn/infer") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

Scope = Literal["public", "predict", "feedback", "read", "admin"]
#: the scopes a key can hold (``public`` is for routes only)
KEY_SCOPES: tuple[str, ...] = ("predict", "feedback", "read", "admin")
#: which error body shape a refusal on this route gets (:mod:`modelport.serving.http_errors`)
ErrorShape = Literal["v2", "v1", "mlflow", "simple"]


@dataclass(frozen=True)
class Route:
    """One HTTP route: method(s), path template, the scope it needs, its error body shape."""

    methods: str | tuple[str, ...]
    template: str
    scope: Scope
    protocol: ErrorShape = "v2"
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scope not in get_args(Scope):
            raise ValueError(f"route {self.template}: unknown scope {self.scope!r}")
        regex = "".join(
            _segment(part) for part in self.template.strip("/").split("/") if part)
        object.__setattr__(self, "_pattern", re.compile(f"{regex}/?$"))

    @property
    def method_set(self) -> frozenset[str]:
        methods = (self.methods,) if isinstance(self.methods, str) else self.methods
        out = set(methods)
        if "GET" in out:
            out.add("HEAD")
        return frozenset(out)

    def matches(self, method: str, path: str) -> bool:
        return method in self.method_set and self._pattern.match(path) is not None

    def matches_path(self, path: str) -> bool:
        return self._pattern.match(path) is not None


def _segment(part: str) -> str:
    out = []
    for piece in re.split(r"(\{[^}]+\})", part):
        if not piece:
            continue
        if piece.startswith("{") and piece.endswith(":path}"):
            out.append(".*")
        elif piece.startswith("{"):
            out.append("[^/]+")
        else:
            out.append(re.escape(piece))
    return "/" + "".join(out)


class RouteTable:
    """Finds the route of a request; answers are cached per (method, path), bounded."""

    def __init__(self, routes: Iterable[Route], *, cache_size: int = 4096) -> None:
        self.routes = tuple(routes)
        self._cache: dict[tuple[str, str], Route | None] = {}
        self._cache_size = cache_size

    def lookup(self, method: str, path: str) -> Route | None:
        key = (method, path)
        try:
            return self._cache[key]
        except KeyError:
            pass
        owner = self.owner(path)
        found = None if owner is None else next(
            (r for r in self.routes if r.template == owner.template and method in r.method_set),
            None)
        if len(self._cache) < self._cache_size:
            self._cache[key] = found
        return found

    def allowed_methods(self, path: str) -> list[str]:
        """The methods the route owning ``path`` accepts (for ``Allow`` on a 405): the first
        route whose template matches decides, so list specific templates first."""
        first = next((r for r in self.routes if r.matches_path(path)), None)
        if first is None:
            return []
        methods: set[str] = set()
        for route in self.routes:
            if route.template == first.template:
                methods |= route.method_set
        return sorted(methods)

    def owner(self, path: str) -> Route | None:
        """The first route whose template matches ``path``, whatever the method."""
        return next((r for r in self.routes if r.matches_path(path)), None)

    def with_routes(self, extra: Iterable[Route]) -> RouteTable:
        return RouteTable((*self.routes, *extra), cache_size=self._cache_size)


_GET = ("GET",)

#: every HTTP route of ``modelport serve`` (``serving/app.py``), with its scope
ROUTES: tuple[Route, ...] = (
    # health: public, load balancers probe them without credentials
    Route(_GET, "/v2/health/live", "public"),
    Route(_GET, "/v2/health/ready", "public"),
    Route(_GET, "/ping", "public", "mlflow"),
    Route(_GET, "/health", "public", "mlflow"),
    # Open Inference Protocol V2
    Route(_GET, "/v2", "read"),
    Route(_GET, "/v2/models/stats", "read"),
    Route(_GET, "/v2/models/{model}/config", "read"),
    Route(_GET, "/v2/models/{model}/stats", "read"),
    Route(_GET, "/v2/models/{model}/versions/{version}/config", "read"),
    Route(_GET, "/v2/models/{model}/versions/{version}/stats", "read"),
    Route(_GET, "/v2/models/{model}", "read"),
    Route(_GET, "/v2/models/{model}/ready", "read"),
    Route(_GET, "/v2/models/{model}/versions/{version}", "read"),
    Route(_GET, "/v2/models/{model}/versions/{version}/ready", "read"),
    Route("POST", "/v2/models/{model}/infer", "predict"),
    Route("POST", "/v2/models/{model}/versions/{version}/infer", "predict"),
    Route("POST", "/v2/repository/index", "read"),
    Route("POST", "/v2/repository/models/{model}/load", "admin"),
    Route("POST", "/v2/repository/models/{model}/unload", "admin"),
    # KServe V1
    Route(_GET, "/", "public", "v1"),
    Route(_GET, "/v1/models", "read", "v1"),
    Route("POST", "/v1/models/{model}:predict", "predict", "v1"),
    Route("POST", "/v1/models/{model}:explain", "predict", "v1"),
    Route(_GET, "/v1/models/{model}", "read", "v1"),
    # MLflow scoring server
    Route(_GET, "/version", "read", "mlflow"),
    Route("POST", "/invocations", "predict", "mlflow"),
    # plain JSON records
    Route("POST", "/predict/{model}", "predict", "simple"),
    # docs and metrics
    Route(_GET, "/docs", "read"),
    Route(_GET, "/docs/assets/{name}", "public"),  # Swagger UI's own files, no data
    # Swagger UI's own files (static, the same for everyone): a browser loads them by <script>
    Route(_GET, "/docs/assets/{name}", "public"),
    Route(_GET, "/openapi.json", "read"),
    Route(_GET, "/metrics", "read"),
    # feedback (issue 12): labels / rewards for logged predictions
    Route("POST", "/feedback", "feedback", "simple"),
    Route("POST", "/feedback/{model}", "feedback", "simple"),
    # offline serving (serving/lookup.py): answers are predictions
    Route(("GET", "POST"), "/lookup/{rest:path}", "predict", "simple"),
    # rollout endpoints (issue 13, serving/endpoints.py): reading them, changing them
    Route(_GET, "/endpoints", "read", "simple"),
    Route(_GET, "/endpoints/{name}", "read", "simple"),
    Route(_GET, "/endpoints/{name}/report", "read", "simple"),
    Route("POST", "/endpoints/{name}/{action}", "admin", "simple"),
    # the dashboard (web/dashboard.py): the page and its assets hold no data; its API does
    Route(_GET, "/dashboard", "public"),
    Route(_GET, "/dashboard/", "public"),
    Route(_GET, "/dashboard/static/{name}", "public"),
    Route(_GET, "/dashboard/api/{name}", "read"),
)

#: gRPC methods of ``inference.GRPCInferenceService`` (and Triton's extensions), with the scope
#: each needs; a method missing here is refused when authentication is on
GRPC_SCOPES: dict[str, Scope] = {
    "ServerLive": "public",
    "ServerReady": "public",
    "ModelReady": "read",
    "ServerMetadata": "read",
    "ModelMetadata": "read",
    "ModelConfig": "read",
    "ModelStatistics": "read",
    "RepositoryIndex": "read",
    "ModelInfer": "predict",
    "ModelStreamInfer": "predict",
    "RepositoryModelLoad": "admin",
    "RepositoryModelUnload": "admin",
    "Feedback": "feedback",
}


def grants(held: frozenset[str], needed: Scope) -> bool:
    """Whether a key holding ``held`` scopes may use a route needing ``needed``."""
    return needed == "public" or needed in held or "admin" in held


__all__ = ["GRPC_SCOPES", "KEY_SCOPES", "ROUTES", "Route", "RouteTable", "Scope", "grants"]
