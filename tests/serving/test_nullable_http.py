"""Missing values over HTTP: a null reaches a model that handles them as NaN, on every REST
protocol, and a model that does not refuses it with a 400 that says how to declare it."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd
from conftest import Home, StartServer


def test_null_is_nan_for_models_that_handle_it_and_a_400_naming_the_cli_otherwise(
    home: Home, start_server: StartServer, cancer: tuple[pd.DataFrame, Any]
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, linear = cancer
    labels = linear.predict(x)
    trees = HistGradientBoostingClassifier(max_iter=20).fit(x, labels)
    home.register(trees, "trees", x.head(20))
    home.register(linear, "linear", x.head(20))
    server = start_server(home)

    row: dict[str, Any] = {**x.iloc[0].to_dict(), "mean_texture": None}
    as_nan = x.head(1).astype("float64")
    as_nan.loc[as_nan.index[0], "mean_texture"] = np.nan
    expected = trees.predict(as_nan)[0]

    simple = httpx.post(f"{server.url}/predict/trees", json=row, timeout=30)
    assert simple.status_code == 200, simple.text
    assert simple.json()["prediction"] == expected
    names = list(x.columns)
    v2 = httpx.post(f"{server.url}/v2/models/trees/infer", timeout=30, json={"inputs": [
        {"name": n, "datatype": "FP64", "shape": [1], "data": [row[n]]} for n in names]})
    assert v2.status_code == 200, v2.text
    mlflow = httpx.post(f"{server.url}/invocations?model=trees", timeout=30,
                        json={"dataframe_records": [row]})
    assert mlflow.status_code == 200, mlflow.text

    refused = httpx.post(f"{server.url}/predict/linear", json=row, timeout=30)
    assert refused.status_code == 400
    message = refused.text
    assert "mean_texture" in message
    assert "modelport models register BUNDLE_DIR --nullable mean_texture" in message
