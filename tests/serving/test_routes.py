"""The route table: every route the server answers declares the scope it needs.

A route the OpenAPI document describes, a mounted sub-application or a gRPC method without an
entry in ``serving/routes.py`` fails here. Then every entry is driven through the app (with
authentication on): no token → 401, a key without the scope → 403, a key with it → neither;
and a path nobody declared is refused to every key but an admin's (deny by default).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest
import serving_models  # tests/serving/conftest.py puts it on sys.path
from conftest import sum_example

import modelport
from modelport.core.service import InferenceService
from modelport.registry import Registry
from modelport.serving import openapi
from modelport.serving.app import ServingApp, create_app
from modelport.serving.auth import FileKeyStore, new_key
from modelport.serving.auth_config import AuthConfig
from modelport.serving.config import ServeConfig
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.routes import GRPC_SCOPES, KEY_SCOPES, ROUTES, Route, RouteTable

TABLE = RouteTable(ROUTES)
#: paths the app answers that the OpenAPI document does not list
UNDOCUMENTED = [("GET", "/"), ("GET", "/v1/models"), ("GET", "/v2/models/stats"),
                ("GET", "/v2/models/sum/config"), ("GET", "/v2/models/sum/stats"),
                ("GET", "/v2/models/sum/ready"), ("GET", "/docs"), ("GET", "/version"),
                ("GET", "/ping"), ("GET", "/health"), ("POST", "/v2/repository/index"),
                ("GET", "/docs/assets/swagger-ui.css"),
                ("POST", "/v2/repository/models/sum/load"),
                ("POST", "/v2/repository/models/sum/unload")]
#: prefixes where sub-applications are mounted (``ServingApp.mount``)
MOUNTS = ["/lookup", "/feedback"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("routes")
    reg = Registry(f"sqlite:///{tmp / 'registry.db'}", tmp / "artifacts")
    reg.register(modelport.save(serving_models.SumModel(), tmp / "sum", name="sum",
                                example=sum_example()))
    yield reg
    reg.close()


def test_every_documented_path_declares_a_scope(registry: Registry) -> None:
    document = openapi.document({"sum": registry.load("sum")})
    missing = [(method.upper(), path) for path, item in document["paths"].items()
               for method in item if TABLE.lookup(method.upper(), _concrete(path)) is None]
    assert not missing, f"routes without a scope in serving/routes.py: {missing}"
    assert not [r for r in UNDOCUMENTED if TABLE.lookup(*r) is None]
    assert all(TABLE.owner(prefix + "/x") or TABLE.owner(prefix) for prefix in MOUNTS)


def test_every_grpc_method_declares_a_scope() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    missing = [m.name for m in service.methods if m.name not in GRPC_SCOPES]
    assert not missing, f"gRPC methods without a scope in routes.GRPC_SCOPES: {missing}"
    assert set(GRPC_SCOPES.values()) <= {"public", *KEY_SCOPES}


def test_a_route_without_a_known_scope_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        Route("GET", "/x", "everyone")  # type: ignore[arg-type]


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "sum", template)


@pytest.fixture(scope="module")
def app_and_keys(registry: Registry, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[ServingApp, dict[str, str]]:
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    store = FileKeyStore(keys_file)
    keys = {}
    for scope in KEY_SCOPES:
        token, key = new_key(f"only-{scope}", [scope])
        store.add(key)
        keys[scope] = token
    service = InferenceService(registry)
    config = ServeConfig(models=("sum",), poll_interval_s=0, auth=AuthConfig(
        enabled=True, keys_file=str(keys_file), bad_token_burst=10_000))
    app = create_app(service, config)
    app.load_models()
    asyncio.run(app.startup())
    return app, keys


def _call(app: ServingApp, method: str, path: str, token: str | None) -> httpx.Response:
    async def go() -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://modelport") as http:
            return await http.request(method, path, headers=headers, content=b"{}")

    return asyncio.run(go())


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.methods}:{r.template}")
def test_each_route_answers_by_its_scope(app_and_keys: tuple[ServingApp, dict[str, str]],
                                         route: Route) -> None:
    app, keys = app_and_keys
    method = sorted(route.method_set - {"HEAD"})[0]
    path = _concrete(route.template)
    anonymous = _call(app, method, path, None)
    if route.scope == "public":
        assert anonymous.status_code not in (401, 403)
        return
    assert anonymous.status_code == 401 and "www-authenticate" in anonymous.headers
    other = next(s for s in KEY_SCOPES if s not in (route.scope, "admin"))
    assert _call(app, method, path, keys[other]).status_code == 403
    assert _call(app, method, path, keys[route.scope]).status_code not in (401, 403)


def test_an_undeclared_path_is_for_admins_only(
        app_and_keys: tuple[ServingApp, dict[str, str]]) -> None:
    app, keys = app_and_keys
    for scope in ("predict", "read", "feedback"):
        assert _call(app, "GET", "/secret/route", keys[scope]).status_code == 403
    assert _call(app, "GET", "/secret/route", keys["admin"]).status_code == 404


def test_a_known_path_with_another_method_is_405_with_allow(
        app_and_keys: tuple[ServingApp, dict[str, str]]) -> None:
    app, _ = app_and_keys
    for method, path in (("TRACE", "/metrics"), ("TRACE", "/v2/health/ready"),
                         ("DELETE", "/predict/sum"), ("PUT", "/invocations")):
        answer = _call(app, method, path, None)
        assert answer.status_code == 405, (method, path)
        assert answer.headers["allow"], (method, path)
        assert method not in answer.headers["allow"]
    mlflow = _call(app, "GET", "/invocations", None)
    assert mlflow.json()["error_code"] == "BAD_REQUEST"  # not INTERNAL_ERROR (issue 14.6)
