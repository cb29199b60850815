"""``modelport export --format web`` in real headless Chromium, from file://, offline: 100 rows
through the JavaScript API and through the demo form answer like ``modelport serve``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from export_helpers import MODEL, VERSION, Setup, same_answers

from modelport.cli.main import main

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

FORM_ROWS = """async (rows) => {
  const form = document.getElementById("predict-form");
  const result = document.getElementById("result");
  const answers = [];
  for (const row of rows) {
    for (const [name, value] of Object.entries(row)) { form.elements[name].value = String(value); }
    result.dataset.state = "busy";
    document.getElementById("predict-button").click();
    while (result.dataset.state === "busy") { await new Promise(r => setTimeout(r, 1)); }
    if (result.dataset.state !== "done") {
      throw new Error(document.getElementById("error").textContent);
    }
    answers.push(JSON.parse(result.textContent));
  }
  return answers;
}"""


@pytest.fixture(scope="module")
def site(setup: Setup, ortweb_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("web") / "site"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELPORT_HOME", str(setup.home))
        assert main(["export", f"{MODEL}:{VERSION}", "--format", "web", "-o", str(folder),
                     "--onnxruntime-web", str(ortweb_tarball)]) == 0
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM.exists(), "headless tests need Debian's chromium (CI: .ci/run installs it)"
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield instance
        instance.close()


def test_site_predicts_like_the_server(site: Path, browser: Any, setup: Setup,
                                       served: Any) -> None:
    rows = setup.rows(100, 100)
    expected = served.predict(rows)["predictions"]
    page = browser.new_page()
    console: list[tuple[str, str]] = []
    requests: list[str] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    page.on("request", lambda r: requests.append(r.url))
    page.goto((site / "index.html").as_uri())
    page.wait_for_function("document.getElementById('result').dataset.state === 'ready'",
                           timeout=60_000)

    api = page.evaluate("rows => modelport.predict(rows)", rows)
    assert api["model"] == MODEL and api["version"] == VERSION
    same_answers(expected, api["predictions"])
    ids = [p["prediction_id"] for p in api["predictions"]]
    assert ids[0].endswith("-0") and len(set(ids)) == 100 and len(ids[0].split("-")[0]) == 32
    assert all(p["predicted_at"].endswith("Z") for p in api["predictions"])

    one = page.evaluate("row => modelport.predict(row)", rows[0])
    assert list(one) == ["prediction_id", "prediction", "probabilities", "model", "version",
                         "predicted_at"]
    same_answers(expected[:1], [one])

    form = page.evaluate(FORM_ROWS, rows)
    same_answers(expected, form)
    assert all(answer["version"] == VERSION for answer in form)

    site_prefix = site.as_uri() + "/"
    outside = [u for u in requests if not (u.startswith(site_prefix) or u.startswith("blob:"))]
    assert outside == []
    assert any(u.endswith("ort-wasm-binary.js") for u in requests)
    assert [c for c in console if c[0] in ("error", "warning", "pageerror")] == []
    page.close()


def test_rows_are_checked_against_the_signature(site: Path, browser: Any, setup: Setup) -> None:
    page = browser.new_page()
    page.goto((site / "index.html").as_uri())
    page.wait_for_function("document.getElementById('result').dataset.state === 'ready'",
                           timeout=60_000)
    check = """async (row) => {
      try { await modelport.predict([row]); return null; }
      catch (e) { return {name: e.name, field: e.field, message: e.message,
                          typed: e instanceof modelport.ModelportInputError}; }
    }"""
    good = setup.rows(0, 1)[0]
    missing = {k: v for k, v in good.items() if k != "mean radius"}
    refused = page.evaluate(check, missing)
    assert refused == {"name": "ModelportInputError", "field": "mean radius", "typed": True,
                       "message": "row 0: missing column 'mean radius'"}
    text = page.evaluate(check, {**good, "mean area": "big"})
    assert text["field"] == "mean area" and "expected float64" in text["message"]
    extra = page.evaluate(check, {**good, "id": 7})
    assert extra["field"] == "id" and "unexpected column 'id'" in extra["message"]
    assert page.evaluate(check, good) is None
    page.close()


def test_every_file_names_its_maker(site: Path) -> None:
    line = f"from model {MODEL} version {VERSION}"
    for path in site.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                head = handle.read(400).decode("utf-8", "replace")
            assert line in head, path.name
    meta = json.loads((site / "model.js").read_text().split("= ", 1)[1].rstrip(";\n"))["meta"]
    assert meta["parity"]["passed"] and meta["feeds"][0]["columns"][0] == "mean radius"


def test_string_and_integer_columns_in_the_browser(mixed_bundle: Path, ortweb_tarball: Path,
                                                   browser: Any, tmp_path: Path) -> None:
    """One graph input per column (string, int64 fed as float, float) and string labels."""
    import modelport
    from modelport.export.output import write_tree
    from modelport.export.source import ExportSource
    from modelport.export.web import build_site

    built = build_site(ExportSource.open(str(mixed_bundle)), cache_root=tmp_path / "cache",
                       onnxruntime_web=ortweb_tarball)
    model_js = str(built.files["model.js"])
    feeds = json.loads(model_js.split("= ", 1)[1].rstrip(";\n"))["meta"]["feeds"]
    assert [f["type"] for f in feeds] == ["string", "float32", "float32"]
    write_tree(built.files, tmp_path / "site", force=False, command="test")
    rows = json.loads((mixed_bundle.parent / "rows.json").read_text())
    model = modelport.load(str(mixed_bundle))
    native = model.predict_batch(model.coerce(rows)).to_records()
    expected = json.loads(json.dumps(  # as plain JSON values (NumPy strings become str)
        [{"prediction": r["label"] if "label" in r else r["prediction"],
          "probabilities": r["probabilities"]} for r in native]))
    page = browser.new_page()
    page.goto((tmp_path / "site" / "index.html").as_uri())
    page.wait_for_function("document.getElementById('result').dataset.state === 'ready'",
                           timeout=60_000)
    got = page.evaluate("rows => modelport.predict(rows)", rows)["predictions"]
    same_answers(expected, got)
    assert {r["prediction"] for r in got} <= {"yes", "no"}
    page.close()


def test_site_works_from_a_static_http_host(site: Path, browser: Any, setup: Setup,
                                            served: Any) -> None:
    """The same folder behind a plain static file server: nothing outside its origin."""
    import subprocess
    import sys
    import time

    import httpx
    from export_helpers import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(site)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        origin = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(origin + "/index.html", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(origin + "/index.html")
        page.wait_for_function("document.getElementById('result').dataset.state === 'ready'",
                               timeout=60_000)
        rows = setup.rows(250, 10)
        got = page.evaluate("rows => modelport.predict(rows)", rows)["predictions"]
        same_answers(served.predict(rows)["predictions"], got)
        assert [u for u in requests if not (u.startswith(origin + "/") or
                                            u.startswith("blob:"))] == []
        page.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
