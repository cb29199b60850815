"""``modelport package --target lambda``: the handler, imported and invoked in-process with the
event payloads of API Gateway (v1, v2), Function URLs and ALB, answers like ``modelport serve``
and keeps the model's own version; the model is loaded once, at import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from export_helpers import MODEL, VERSION, Setup, same_answers

HERE = Path(__file__).resolve().parent

INVOKE = """
import base64, json, sys, time
sys.path.insert(0, sys.argv[1])      # the function's folder, as Lambda's task root
sys.path.insert(0, sys.argv[2])      # lambda_events
import lambda_events
started = time.perf_counter()
import handler
imported = time.perf_counter() - started
loaded_at_import = [r.model.ref for r in handler.app.service.loaded()]
requests = json.loads(sys.stdin.read())
out = {"loaded_at_import": loaded_at_import, "answers": []}
for kind, method, path, body, b64 in requests:
    event = lambda_events.KINDS[kind](method, path, body, base64_body=b64)
    response = handler.handler(event, None)
    text = response.get("body", "")
    if response.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    out["answers"].append({"kind": kind, "path": path, "status": response["statusCode"],
                           "headers": response.get("headers", {}), "body": text})
out["loaded_after"] = [r.model.ref for r in handler.app.service.loaded()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def function(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return setup.package("lambda", tmp_path_factory.mktemp("lambda") / "function")


def _invoke(function: Path, requests: list[list[Any]], setup: Setup) -> dict[str, Any]:
    env = {**setup.env, "MODELPORT_HOME": str(function.parent / "tmp-home")}
    done = subprocess.run([sys.executable, "-W", "error", "-c", INVOKE, str(function), str(HERE)],
                          input=json.dumps(requests), capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_event_type_answers_like_serve(function: Path, setup: Setup, served: Any) -> None:
    rows = setup.rows(400, 20)
    body = json.dumps(rows)
    requests: list[list[Any]] = []
    for kind in ("api-gateway-rest-v1", "api-gateway-http-v2", "function-url", "alb"):
        requests += [[kind, "POST", f"/predict/{MODEL}", body, False],
                     [kind, "POST", f"/predict/{MODEL}", json.dumps(rows[0]), True],
                     [kind, "GET", "/v2/health/ready", None, False],
                     [kind, "POST", f"/predict/{MODEL}", json.dumps([{"mean radius": 1.0}]),
                      False]]
    v2 = {"inputs": [{"name": name, "shape": [2], "datatype": "FP64",
                      "data": [rows[0][name], rows[1][name]]} for name in rows[0]]}
    requests.append(["api-gateway-http-v2", "POST", f"/v2/models/{MODEL}/infer",
                     json.dumps(v2), False])
    result = _invoke(function, requests, setup)
    assert result["loaded_at_import"] == [f"{MODEL}:{VERSION}"]  # before the first event
    assert result["loaded_after"] == result["loaded_at_import"]  # never loaded again

    expected = served.predict(rows)
    bad_served = httpx.post(f"{served.url}/predict/{MODEL}", json=[{"mean radius": 1.0}],
                            timeout=10)
    answers = result["answers"]
    for i in range(4):
        many, one, ready, bad = answers[4 * i:4 * i + 4]
        kind = many["kind"]
        assert many["status"] == 200, kind
        batch = json.loads(many["body"])
        assert batch["model"] == MODEL and batch["version"] == VERSION, kind
        same_answers(expected["predictions"], batch["predictions"])
        single = json.loads(one["body"])
        assert single["version"] == VERSION and "prediction_id" in single, kind
        same_answers(expected["predictions"][:1], [single])
        assert ready["status"] == 200 and json.loads(ready["body"]) == {"ready": True}, kind
        assert bad["status"] == bad_served.status_code == 400, kind
        assert json.loads(bad["body"]).keys() == bad_served.json().keys(), kind
    infer = answers[-1]
    assert infer["status"] == 200
    served_infer = httpx.post(f"{served.url}/v2/models/{MODEL}/infer", json=v2, timeout=10)
    got = {o["name"]: o["data"] for o in json.loads(infer["body"])["outputs"]}
    want = {o["name"]: o["data"] for o in served_infer.json()["outputs"]}
    assert got.keys() == want.keys() and got[next(iter(want))] == want[next(iter(want))]


def test_function_layout(function: Path) -> None:
    names = {p.relative_to(function).as_posix() for p in function.rglob("*") if p.is_file()}
    assert {"handler.py", "requirements.txt", "build_zip.sh", "Dockerfile", "README.md",
            "model/modelport.yaml"} <= names
    assert any(n.startswith("wheels/modelport-") for n in names)
    assert (function / "build_zip.sh").stat().st_mode & 0o111
    requirements = (function / "requirements.txt").read_text()
    assert "\nmangum==" in requirements
    dockerfile = (function / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.11" in dockerfile
    assert 'CMD ["handler.handler"]' in dockerfile
    hadolint = Path(sys.executable).parent / "hadolint"
    lint = subprocess.run([str(hadolint), "--no-color", str(function / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
    for name in ("handler.py", "requirements.txt", "build_zip.sh", "Dockerfile", "README.md"):
        assert f"from model {MODEL} version {VERSION}" in (function / name).read_text()[:600]
