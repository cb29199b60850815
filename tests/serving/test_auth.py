"""Authentication and authorization of a real ``modelport serve --auth`` over real sockets.

One server (API keys in a keys file, OIDC JWTs from a JWKS file the test writes, gRPC on) is
asked by httpx and tritonclient (HTTP and gRPC): the 401 / 403 matrix, per-key rate limits and
row quotas (429 + Retry-After), bad-token slow-down, revocation reaching the running server,
admin actions in the audit log with the key's name, and CORS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from conftest import Home, Server, free_port, launch, sum_example, sum_model
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from tritonclient.utils import InferenceServerException

from modelport.serving.auth import FileKeyStore, KeyLimits, new_key

ISSUER = "https://id.example.test/"
AUDIENCE = "modelport-tests"


@dataclass
class Served:
    server: Server
    grpc_url: str
    keys: dict[str, str]
    keys_file: Path
    signing_key: RSAKey
    home: Home


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("auth")
    home = Home(tmp / "home")
    home.register(sum_model(), "sum", sum_example())
    keys_file = tmp / "keys.json"
    store = FileKeyStore(keys_file)
    keys: dict[str, str] = {}
    for name, scopes, limits in [
        ("predictor", ["predict"], KeyLimits()),
        ("reader", ["read"], KeyLimits()),
        ("labeller", ["feedback"], KeyLimits()),
        ("ops", ["admin"], KeyLimits()),
        ("slow", ["predict"], KeyLimits(requests_per_s=1)),
        ("small", ["predict"], KeyLimits(rows_per_day=3)),
        ("leaving", ["predict"], KeyLimits()),
    ]:
        token, key = new_key(name, scopes, limits=limits)
        store.add(key)
        keys[name] = token
    signing_key = RSAKey.generate_key(2048, private=True)
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps(KeySet([signing_key]).as_dict(private=False)))
    config = tmp / "serve.yaml"
    config.write_text(json.dumps({
        "auth": {"enabled": True, "keys_file": str(keys_file), "refresh_s": 0.3,
                 "bad_token_burst": 12, "bad_token_per_s": 0.1, "oidc_issuer": ISSUER,
                 "oidc_audience": AUDIENCE, "oidc_jwks": str(jwks)},
        "cors": {"allow_origins": ["https://app.example.test"]},
        "poll_interval_s": 0,
    }))
    grpc_port = free_port()
    server = launch(home, tmp, "sum", "--config", str(config), "--grpc-port", str(grpc_port))
    yield Served(server, f"127.0.0.1:{grpc_port}", keys, keys_file, signing_key, home)
    server.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


_V2 = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
                  {"name": "b", "shape": [1], "datatype": "FP64", "data": [2.0]}]}

#: (method, path, body, the scope it needs)
MATRIX: list[tuple[str, str, Any, str]] = [
    ("POST", "/v2/models/sum/infer", _V2, "predict"),
    ("POST", "/predict/sum", {"a": 1.0, "b": 2.0}, "predict"),
    ("POST", "/v1/models/sum:predict", {"instances": [{"a": 1.0, "b": 2.0}]}, "predict"),
    ("POST", "/invocations", {"dataframe_records": [{"a": 1.0, "b": 2.0}]}, "predict"),
    ("GET", "/v2/models/sum", None, "read"),
    ("GET", "/v2", None, "read"),
    ("GET", "/metrics", None, "read"),
    ("GET", "/openapi.json", None, "read"),
    ("POST", "/v2/repository/index", {}, "read"),
]
OTHER = {"predict": "reader", "read": "predictor", "feedback": "predictor", "admin": "reader"}
HOLDER = {"predict": "predictor", "read": "reader", "feedback": "labeller", "admin": "ops"}


@pytest.mark.parametrize(("method", "path", "body", "scope"), MATRIX)
def test_rest_routes_need_their_scope(served: Served, method: str, path: str, body: Any,
                                      scope: str) -> None:
    url = served.server.url + path
    anonymous = httpx.request(method, url, json=body)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.request(method, url, json=body, headers=_bearer(served.keys[OTHER[scope]]))
    assert wrong.status_code == 403, wrong.text
    assert scope in wrong.text and "Traceback" not in wrong.text
    right = httpx.request(method, url, json=body, headers=_bearer(served.keys[HOLDER[scope]]))
    assert right.status_code == 200, right.text
    admin = httpx.request(method, url, json=body, headers=_bearer(served.keys["ops"]))
    assert admin.status_code == 200, admin.text  # admin may do everything


def test_refusals_keep_each_protocols_error_shape(served: Served) -> None:
    mlflow = httpx.post(served.server.url + "/invocations", json={})
    assert mlflow.status_code == 401 and mlflow.json()["error_code"] == "UNAUTHENTICATED"
    simple = httpx.post(served.server.url + "/predict/sum", json={},
                        headers=_bearer(served.keys["reader"]))
    assert simple.status_code == 403 and set(simple.json()) == {"error", "field"}


def test_health_is_public_and_an_api_key_header_works_too(served: Served) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/ping", "/health"):
        assert httpx.get(served.server.url + path).status_code == 200, path
    r = httpx.post(served.server.url + "/predict/sum", json={"a": 1.0, "b": 2.0},
                   headers={"x-api-key": served.keys["predictor"]})
    assert r.status_code == 200 and r.json()["prediction"] == 3.0


def _grpc_client(served: Served) -> triton_grpc.InferenceServerClient:
    return triton_grpc.InferenceServerClient(served.grpc_url)


def _grpc_inputs() -> list[triton_grpc.InferInput]:
    inputs = []
    for name in ("a", "b"):
        tensor = triton_grpc.InferInput(name, [1], "FP64")
        tensor.set_data_from_numpy(np.array([1.5]))
        inputs.append(tensor)
    return inputs


def test_grpc_calls_need_their_scope(served: Served) -> None:
    client = _grpc_client(served)
    assert client.is_server_live()  # public, like the REST health checks
    with pytest.raises(InferenceServerException) as anonymous:
        client.infer("sum", _grpc_inputs())
    assert anonymous.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as wrong:
        client.infer("sum", _grpc_inputs(), headers=_bearer(served.keys["reader"]))
    assert wrong.value.status() == "StatusCode.PERMISSION_DENIED"
    assert "predict" in wrong.value.message()
    result = client.infer("sum", _grpc_inputs(), headers=_bearer(served.keys["predictor"]))
    assert result.as_numpy(result.get_response().outputs[0].name).tolist() == [3.0]
    with pytest.raises(InferenceServerException) as meta:
        client.get_model_metadata("sum", headers=_bearer(served.keys["predictor"]))
    assert meta.value.status() == "StatusCode.PERMISSION_DENIED"
    assert client.get_model_metadata("sum", headers=_bearer(served.keys["reader"])).name == "sum"
    client.close()


def test_a_key_over_its_rate_gets_429_with_retry_after(served: Served) -> None:
    url = served.server.url + "/predict/sum"
    answers = [httpx.post(url, json={"a": 1.0, "b": 1.0}, headers=_bearer(served.keys["slow"]))
               for _ in range(4)]
    codes = [a.status_code for a in answers]
    assert codes[0] == 200 and 429 in codes, codes
    limited = next(a for a in answers if a.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1 and "slow" in limited.text
    other = httpx.post(url, json={"a": 1.0, "b": 1.0}, headers=_bearer(served.keys["predictor"]))
    assert other.status_code == 200  # the limit is per key


def test_a_key_over_its_daily_rows_gets_429_on_rest_and_grpc(served: Served) -> None:
    url = served.server.url + "/predict/sum"
    rows = [{"a": 1.0, "b": 1.0}, {"a": 2.0, "b": 2.0}]
    headers = _bearer(served.keys["small"])
    assert httpx.post(url, json=rows, headers=headers).status_code == 200  # 2 of 3 rows
    over = httpx.post(url, json=rows, headers=headers)
    assert over.status_code == 429 and "3 rows" in over.text
    assert int(over.headers["retry-after"]) >= 1
    client = _grpc_client(served)
    with pytest.raises(InferenceServerException) as grpc_over:
        inputs = []
        for name in ("a", "b"):
            tensor = triton_grpc.InferInput(name, [2], "FP64")
            tensor.set_data_from_numpy(np.array([1.0, 2.0]))
            inputs.append(tensor)
        client.infer("sum", inputs, headers=headers)
    assert grpc_over.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    client.close()


def test_revoking_a_key_reaches_the_running_server(served: Served) -> None:
    url = served.server.url + "/predict/sum"
    headers = _bearer(served.keys["leaving"])
    assert httpx.post(url, json={"a": 1.0, "b": 1.0}, headers=headers).status_code == 200
    FileKeyStore(served.keys_file).revoke("leaving")
    deadline = time.monotonic() + 10
    while httpx.post(url, json={"a": 1.0, "b": 1.0}, headers=headers).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key kept working"
        time.sleep(0.1)
    assert httpx.post(url, json={"a": 1.0, "b": 1.0}, headers=headers).status_code == 401


def _jwt(served: Served, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-recommender", "iat": now,
            "exp": now + 300, "scope": "predict", **claims}
    return jwt.encode({"alg": "RS256", "kid": served.signing_key.kid}, body, served.signing_key)


def test_oidc_tokens_signed_by_the_issuer_are_accepted(served: Served) -> None:
    url = served.server.url + "/predict/sum"
    ok = httpx.post(url, json={"a": 1.0, "b": 2.0}, headers=_bearer(_jwt(served)))
    assert ok.status_code == 200, ok.text
    for bad in (_jwt(served, aud="someone-else"), _jwt(served, iss="https://evil.test/"),
                _jwt(served, exp=int(time.time()) - 3600)):
        refused = httpx.post(url, json={"a": 1.0, "b": 2.0}, headers=_bearer(bad))
        assert refused.status_code == 401, refused.text
    stranger = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": served.signing_key.kid},
                        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x",
                         "exp": int(time.time()) + 300, "scope": "predict"}, stranger)
    assert httpx.post(url, json={"a": 1.0, "b": 2.0},
                      headers=_bearer(forged)).status_code == 401
    reader = httpx.post(url, json={"a": 1.0, "b": 2.0},
                        headers=_bearer(_jwt(served, scope="read")))
    assert reader.status_code == 403
    client = _grpc_client(served)
    result = client.infer("sum", _grpc_inputs(), headers=_bearer(_jwt(served)))
    assert result.as_numpy(result.get_response().outputs[0].name).tolist() == [3.0]
    client.close()


def test_admin_actions_are_audited_with_the_key_name(served: Served) -> None:
    url = served.server.url + "/v2/repository/models/sum:1/load"
    assert httpx.post(url, json={}, headers=_bearer(served.keys["predictor"])).status_code == 403
    loaded = httpx.post(url, json={}, headers=_bearer(served.keys["ops"]))
    assert loaded.status_code == 200, loaded.text
    with served.home.registry() as registry:
        entries = [e for e in registry.audit(limit=20) if e.action == "serve.load"]
    assert entries and entries[0].actor == "key:ops"
    assert entries[0].details["name"] == "sum:1"


def test_cors_preflight_and_responses(served: Served) -> None:
    origin = "https://app.example.test"
    pre = httpx.options(served.server.url + "/predict/sum", headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == origin
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "authorization" in pre.headers["access-control-allow-headers"]
    r = httpx.post(served.server.url + "/predict/sum", json={"a": 1.0, "b": 2.0},
                   headers={"origin": origin, **_bearer(served.keys["predictor"])})
    assert r.headers["access-control-allow-origin"] == origin
    foreign = httpx.options(served.server.url + "/predict/sum", headers={
        "origin": "https://evil.test", "access-control-request-method": "POST"})
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers


def test_grpc_unauthenticated_carries_www_authenticate(served: Served) -> None:
    from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
    from modelport.serving.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    with grpc.insecure_channel(served.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="sum"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dict(err.value.trailing_metadata())["www-authenticate"].startswith("Bearer")


def test_clients_sending_bad_tokens_are_slowed_down(served: Served) -> None:
    """Last in the module: it uses up this client address's bad-token budget."""
    url = served.server.url + "/predict/sum"
    codes = [httpx.post(url, json={"a": 1.0, "b": 1.0},
                        headers=_bearer(f"mp_000000000000_guess{i}")).status_code
             for i in range(16)]
    # earlier tests sent a few wrong tokens too: the 12-try budget ends within these 16
    assert codes[0] == 401 and codes[-1] == 429 and set(codes) == {401, 429}, codes
    # even a valid key from that client waits now: guessing must not be free
    blocked = httpx.post(url, json={"a": 1.0, "b": 1.0}, headers=_bearer(served.keys["predictor"]))
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    client = _grpc_client(served)
    with pytest.raises(InferenceServerException) as grpc_blocked:
        client.infer("sum", _grpc_inputs(), headers=_bearer("mp_000000000000_guess"))
    assert grpc_blocked.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    client.close()


def test_a_checked_key_is_remembered_per_scope_and_forgotten_when_revoked(
        tmp_path: Path) -> None:
    from modelport.errors import AuthenticationError, PermissionDeniedError
    from modelport.serving.access import AccessControl
    from modelport.serving.auth_config import AuthConfig

    store = FileKeyStore(tmp_path / "keys.json")
    token, key = new_key("app", ["predict"])
    store.add(key)
    access = AccessControl(AuthConfig(enabled=True), store=store)
    access.refresh()
    bearer = f"Bearer {token}".encode()
    first = access.check(bearer, "predict", "/predict/m", "127.0.0.1")
    assert access.check(bearer, "predict", "/predict/m", "127.0.0.1") is first  # remembered
    with pytest.raises(PermissionDeniedError):  # remembered for predict, not for admin
        access.check(bearer, "admin", "/v2/repository/models/m/load", "127.0.0.1")
    with pytest.raises(PermissionDeniedError):  # and refused again, not let in by the memo
        access.check(bearer, "admin", "/v2/repository/models/m/load", "127.0.0.1")
    store.revoke("app")
    access.refresh()
    with pytest.raises(AuthenticationError):
        access.check(bearer, "predict", "/predict/m", "127.0.0.1")
