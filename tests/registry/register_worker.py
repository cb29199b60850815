"""A separate OS process for the registry's concurrency and crash tests (not a test module).

``register URL ARTIFACTS BUNDLE THREADS GO_FILE [VERSION]``: wait for GO_FILE, register BUNDLE
from THREADS threads at once (all as exactly VERSION when given), print the version numbers as
JSON (0 for a registration refused with ConflictError).
``crash URL ARTIFACTS BUNDLE``: die (``os._exit``) inside the registration transaction, after
the artifact upload and the version insert, before the commit.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelport.errors import ConflictError
from modelport.registry import Registry
from modelport.registry.metadata import MetadataStore


def register(url: str, artifacts: str, bundle: str, threads: str, go: str,
             version: str = "") -> None:
    """With ``version``, every thread registers exactly that number; a refused one gives 0."""
    reg = Registry(url, artifacts, cache_dir=Path(artifacts).parent / f"cache-{os.getpid()}")
    count = int(threads)
    start = threading.Barrier(count)
    go_file = Path(go)
    while not go_file.exists():
        time.sleep(0.01)

    def one(_: int) -> int:
        start.wait()
        try:
            return reg.register(bundle, actor=f"worker-{os.getpid()}",
                                version=int(version) if version else None).version
        except ConflictError:
            return 0

    with ThreadPoolExecutor(count) as pool:
        versions = list(pool.map(one, range(count)))
    reg.close()
    print(json.dumps(versions))


def crash(url: str, artifacts: str, bundle: str) -> None:
    def die(*_args: Any, **_kwargs: Any) -> None:
        os._exit(3)

    MetadataStore._record = die  # type: ignore[method-assign]
    Registry(url, artifacts).register(bundle)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"register": register, "crash": crash}[mode](*args)
