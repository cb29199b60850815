"""A bounded coverage-guided fuzz run of the stream worker's C reader (issue 14.7).

The long run (``scripts/fuzz_fastcodec.sh``: 12 million executions under AddressSanitizer, no
finding) builds the extension with sanitizers; this one fuzzes the installed build for a few
seconds with the same harness, which also checks every batch the reader takes against the
Python reference (``orjson`` + ``Signature.coerce``) and ``fill`` against its Python twin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelport.stream import fastcodec

pytest.importorskip("atheris")
pytestmark = pytest.mark.skipif(not fastcodec.COMPILED,
                                reason="the compiled codec was not built (no C compiler)")

HARNESS = Path(__file__).with_name("fuzz_fastcodec.py")


def test_a_bounded_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, str(HARNESS), "--write-seeds", str(corpus)], check=True,
                   timeout=120)
    out = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=30000", "-seed=14", "-max_len=512",
         "-print_final_stats=1", str(corpus)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Done 30000 runs" in out.stderr
    assert "number_of_executed_units: 30000" in out.stderr
