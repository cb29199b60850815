"""A wheel of the running modelport, for build contexts that must not reach a package index.

A container image installs modelport from this wheel, built from the files of the installed
package (a regular or an editable install): every module, the typed marker and the data files,
without compiled extensions (they are optional and platform-specific; the pure-Python paths give
the same results) and without caches.
"""

from __future__ import annotations

import tempfile
from importlib.metadata import distribution
from pathlib import Path

_SKIP_SUFFIXES = (".so", ".pyd", ".pyc", ".c")


def modelport_wheel() -> tuple[str, bytes]:
    """``(file name, bytes)`` of a ``py3-none-any`` wheel of the installed modelport."""
    from wheel.wheelfile import WheelFile

    import modelport

    dist = distribution("modelport")
    version = dist.version
    root = Path(modelport.__file__).resolve().parent
    name = f"modelport-{version}-py3-none-any.whl"
    info = f"modelport-{version}.dist-info"
    with tempfile.TemporaryDirectory(prefix="modelport-selfwheel-") as tmp:
        with WheelFile(Path(tmp) / name, "w") as wheel:
            for path in sorted(root.rglob("*")):
                if not path.is_file() or "__pycache__" in path.parts or \
                        path.suffix in _SKIP_SUFFIXES:
                    continue
                wheel.writestr(f"modelport/{path.relative_to(root).as_posix()}",
                               path.read_bytes())
            wheel.writestr(f"{info}/METADATA", dist.read_text("METADATA") or "")
            wheel.writestr(f"{info}/entry_points.txt", dist.read_text("entry_points.txt") or "")
            wheel.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: modelport "
                                            f"{version}\nRoot-Is-Purelib: true\n"
                                            "Tag: py3-none-any\n")
        return name, (Path(tmp) / name).read_bytes()
