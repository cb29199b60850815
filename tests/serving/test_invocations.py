"""``POST /invocations`` behaves like MLflow's scoring server: columns the signature does not name
are ignored (MLflow's pyfunc ignores them, whatever ``--extra-columns`` says for other routes), a
CSV written by ``DataFrame.to_csv()`` with its index column works, and with several models the
model is named by ``?model=`` or ``serve --invocations-model`` (without either: 400 naming both).
MLflow's own client against modelport runs in tests/install (it cannot share this environment).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import Home, Server, launch


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cancer: tuple[pd.DataFrame, Any],
           iris: tuple[np.ndarray, np.ndarray, Any]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("invocations")
    home = Home(tmp / "home")
    x, model = cancer
    home.register(model, "cancer", x.iloc[:10])
    ix, _, iris_model = iris
    home.register(iris_model, "iris", ix[:10])
    srv = launch(home, tmp, "cancer", "iris", "--invocations-model", "cancer",
                 "--extra-columns", "refuse")
    yield srv
    assert srv.stop() == 0, srv.output()


def test_columns_the_signature_does_not_name_are_ignored(
        server: Server, cancer: tuple[pd.DataFrame, Any]) -> None:
    x, model = cancer
    rows = x.iloc[:4].assign(customer_id=[7, 8, 9, 10], note="vip")
    expected = list(model.predict(x.iloc[:4]))
    for payload in ({"dataframe_split": rows.to_dict(orient="split")},
                    {"dataframe_records": rows.to_dict(orient="records")},
                    {"inputs": {c: rows[c].tolist() for c in rows.columns}}):
        answer = httpx.post(server.url + "/invocations?model=cancer", json=payload)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}
    # the other routes keep the server's policy (refuse here)
    refused = httpx.post(server.url + "/predict/cancer",
                         json=rows.iloc[0].to_dict())
    assert refused.status_code == 400 and "customer_id" in refused.text


def test_csv_with_the_pandas_index_column(server: Server,
                                          cancer: tuple[pd.DataFrame, Any]) -> None:
    x, model = cancer
    rows = x.iloc[10:15]
    body = rows.to_csv()  # first column: the index, with an empty header
    assert body.startswith(",")
    answer = httpx.post(server.url + "/invocations", content=body.encode(),
                        headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == list(model.predict(rows))


def test_the_default_model_answers_without_the_query_parameter(
        server: Server, iris: tuple[np.ndarray, np.ndarray, Any],
        cancer: tuple[pd.DataFrame, Any]) -> None:
    x, model = cancer
    answer = httpx.post(server.url + "/invocations",
                        json={"dataframe_records": x.iloc[:2].to_dict(orient="records")})
    assert answer.json()["predictions"] == list(model.predict(x.iloc[:2]))
    ix, _, iris_model = iris
    other = httpx.post(server.url + "/invocations?model=iris", json={"inputs": ix[:3].tolist()})
    assert other.json()["predictions"] == iris_model.predict(ix[:3]).tolist()
    missing = httpx.post(server.url + "/invocations?model=nope", json={"inputs": [[1.0]]})
    assert missing.status_code == 404 and "nope" in missing.json()["message"]
