"""How several workers take connections: one shared listening socket, or SO_REUSEPORT sockets.

Both models keep what multi-worker serving guarantees: every request answered, metrics summed
over the workers, and a drain that lets concurrent requests finish.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import Home, StartServer, sum_example, sum_model


def listening_sockets(port: int) -> list[str]:
    """``ss`` lines of the TCP sockets listening on ``port`` (one per socket, with its users)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def infer(url: str, a: float, client: httpx.Client | None = None) -> httpx.Response:
    body = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [a]},
                       {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    return (client or httpx).post(url + "/v2/models/sum/infer", json=body, timeout=30)


@pytest.mark.parametrize("accept, sockets", [("shared", 1), ("reuseport", 2)])
def test_accept_models(home: Home, start_server: StartServer, accept: str,
                       sockets: int) -> None:
    home.register(sum_model(), "sum", sum_example())
    server = start_server(home, "sum", "--workers", "2", "--accept", accept)
    deadline = time.monotonic() + 120  # every worker listens once the supervisor says so
    while "with 2 workers" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    lines = listening_sockets(server.port)
    # shared: one socket whose users are the supervisor and both workers; reuseport: one
    # socket per worker
    assert len(lines) == sockets, lines
    if accept == "shared":
        assert lines[0].count("pid=") == 3, lines

    def session(i: int) -> list[int]:
        with httpx.Client() as client:  # keep-alive: one connection for ten requests
            return [infer(server.url, i * 10 + j, client).status_code for j in range(10)]

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for batch in pool.map(session, range(8)) for s in batch]
    assert statuses == [200] * 80
    text = httpx.get(server.url + "/metrics").text
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("modelport_requests_total{")
                  and 'model="sum"' in line and 'status="200"' in line)
    assert counted == 80
    assert server.stop() == 0
    assert listening_sockets(server.port) == []


def test_an_unknown_accept_model_is_a_usage_error(home: Home, start_server: StartServer
                                                  ) -> None:
    home.register(sum_model(), "sum", sum_example())
    server = start_server(home, "sum", "--workers", "2", "--accept", "roundrobin", ready=False)
    assert server.proc.wait(60) == 2
    assert "invalid choice: 'roundrobin'" in server.output()
