"""schemathesis against a live ``modelport serve --auth`` (issue 14.6), bounded for CI.

The OpenAPI document must describe the server: every request the schemas allow is served
(positive data acceptance), every answer is documented (status, content type, headers, body
schema), no request makes a 5xx, and methods a path does not take get 405 with ``Allow``.
``negative_data_rejection`` is left out on purpose: the server accepts more than the document
promises (FP32 for FP64 columns, ``[n, 1]`` shapes, fields the extra-columns policy ignores).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import Home, StartServer

from modelport.serving.auth import FileKeyStore, new_key


def test_schemathesis_finds_nothing(home: Home, start_server: StartServer, tmp_path: Path
                                    ) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(60, 3)), columns=["f0", "f1", "f2"])
    home.register(LogisticRegression().fit(x, np.where(x.f0 > 0, "yes", "no")), "clf", x[:3])
    token, key = new_key("schemathesis", ["admin"])
    FileKeyStore(tmp_path / "keys.json").add(key)
    server = start_server(home, "clf", "--auth", "--keys-file", str(tmp_path / "keys.json"))
    st = Path(sys.executable).with_name("st")
    out = subprocess.run(
        [str(st), "run", server.url + "/openapi.json", "-H", f"Authorization: Bearer {token}",
         "--max-examples", "10", "--seed", "14", "--exclude-checks",
         "negative_data_rejection", "--max-time", "60", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its reports stay there
    assert out.returncode == 0, out.stdout[-6000:]
    assert "passed" in out.stdout
    assert "Traceback" not in server.output()
