"""``/docs`` works offline: Swagger UI comes from the package, and each model's example rows are
request examples in ``/openapi.json``. A headless Chromium that may reach nothing but the server
renders the page."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest
from conftest import Home, Server, launch


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           cancer: tuple[pd.DataFrame, Any]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("docs")
    x, model = cancer
    home = Home(tmp / "home")
    home.register(model, "cancer", x.iloc[:10])
    srv = launch(home, tmp, "cancer")
    yield srv
    assert srv.stop() == 0, srv.output()


def _references(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_docs_page_loads_only_assets_the_server_serves(server: Server) -> None:
    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200
    refs = _references(page.text)
    assert refs, page.text
    for ref in refs:
        assert not urlsplit(ref).netloc, f"{ref} is not on this server"
    scripts = [r for r in refs if r.endswith(".js")]
    assert scripts == ["/docs/assets/swagger-ui-bundle.js"]
    package = resources.files("modelport") / "web" / "static" / "swagger"
    for ref, content_type in [("/docs/assets/swagger-ui-bundle.js", "application/javascript"),
                              ("/docs/assets/swagger-ui.css", "text/css"),
                              ("/docs/assets/favicon-32x32.png", "image/png")]:
        asset = httpx.get(server.url + ref)
        assert asset.status_code == 200, ref
        assert asset.headers["content-type"].startswith(content_type)
        assert asset.content == (package / ref.rsplit("/", 1)[1]).read_bytes()
    assert httpx.get(server.url + "/docs/assets/../../etc/passwd").status_code == 404
    assert httpx.get(server.url + "/docs/assets/LICENSE.js").status_code == 404


def test_openapi_carries_each_models_example_rows(server: Server,
                                                  cancer: tuple[pd.DataFrame, Any]) -> None:
    x, _ = cancer
    doc = httpx.get(server.url + "/openapi.json").json()
    first = {k: float(v) for k, v in x.iloc[0].items()}
    simple = doc["paths"]["/predict/cancer"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    assert simple[0] == pytest.approx(first)
    v1 = doc["paths"]["/v1/models/cancer:predict"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    assert v1["instances"][0] == pytest.approx(first)
    v2 = doc["paths"]["/v2/models/cancer/infer"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    tensors = {t["name"]: t for t in v2["inputs"]}
    assert set(tensors) == set(x.columns)
    assert tensors[x.columns[0]]["shape"] == [2] and tensors[x.columns[0]]["datatype"] == "FP64"
    mlflow = doc["paths"]["/invocations"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]["cancer"]["value"]
    assert mlflow["dataframe_split"]["columns"] == list(x.columns)
    # every example is a request the server answers
    for path, body in [("/predict/cancer", simple), ("/v1/models/cancer:predict", v1),
                       ("/v2/models/cancer/infer", v2), ("/invocations?model=cancer", mlflow)]:
        answer = httpx.post(server.url + path, json=body)
        assert answer.status_code == 200, (path, answer.text)


def test_swagger_ui_renders_in_chromium_without_the_internet(server: Server) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()

            def route(r: Any) -> None:
                requested.append(r.request.url)
                if r.request.url.startswith(server.url):
                    r.continue_()
                else:
                    r.abort()  # offline: nothing else can be reached

            page.route("**/*", route)
            page.goto(server.url + "/docs")
            page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
            summaries = page.locator(".opblock-summary-path").all_inner_texts()
            title = page.locator(".swagger-ui .info .title").inner_text()
        finally:
            browser.close()
    assert any("/predict/cancer" in s for s in summaries), summaries
    assert "modelport" in title
    outside = [u for u in requested if not u.startswith(server.url)]
    assert outside == []


def test_page_under_a_root_path_references_assets_under_it() -> None:
    from modelport.serving import openapi

    page = openapi.page(openapi.document({}), "/prefix/")
    assert set(_references(page)) == {
        "/prefix/docs/assets/favicon-32x32.png", "/prefix/docs/assets/swagger-ui.css",
        "/prefix/openapi.json", "/prefix/docs/assets/swagger-ui-bundle.js"}
