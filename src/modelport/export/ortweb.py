"""onnxruntime-web's WebAssembly build: the three files a static site needs, from npm.

The browser bundle needs ``ort.wasm.min.js`` (the API, a classic script), the Emscripten glue
``ort-wasm-simd-threaded.mjs`` and the ``ort-wasm-simd-threaded.wasm`` binary (about 15 MB; the
WebGPU build is twice the size and is not used), plus the MIT licence. They are taken
from, in order:

1. ``source`` — a tarball made by ``npm pack onnxruntime-web@VERSION`` or an unpacked package
   folder (for machines without npm or network);
2. the cache ``$MODELPORT_HOME/cache/onnxruntime-web/VERSION``;
3. ``npm pack onnxruntime-web@VERSION`` (npm checks the tarball's integrity against the
   registry), whose files are then cached.

Never a CDN: the exported page loads nothing from outside its own folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelport.errors import ConfigurationError, IntegrityError

#: the onnxruntime-web release the browser bundle is built with
VERSION = "1.31.1"
PACKAGE = "onnxruntime-web"
FILES = ("dist/ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs",
         "dist/ort-wasm-simd-threaded.wasm", "package.json")
#: the npm package declares MIT in package.json and ships no licence file; this is the text of
#: the ONNX Runtime repository's LICENSE, which the site carries next to the copied files
LICENSE_TEXT = """MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


@dataclass(frozen=True)
class OrtWeb:
    """The needed files of one onnxruntime-web release, read from a folder."""

    folder: Path
    version: str
    license: str

    def read(self, name: str) -> bytes:
        """One of :data:`FILES` by its base name (``ort.wasm.min.js``, ...)."""
        for rel in FILES:
            if rel.rsplit("/", 1)[-1] == name:
                return (self.folder / rel).read_bytes()
        raise KeyError(name)


def obtain(cache_root: Path, source: str | Path | None = None, *,
           version: str = VERSION) -> OrtWeb:
    """The files of onnxruntime-web ``version`` (see the module docstring for where from)."""
    cached = cache_root / "onnxruntime-web" / version
    if source is not None:
        return _open(_from_source(Path(source), cached), version)
    if _complete(cached):
        return _open(cached, version)
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigurationError(
            f"the web export needs {PACKAGE} {version} and npm is not installed; install npm, or "
            f"get the tarball elsewhere with 'npm pack {PACKAGE}@{version}' and pass it with "
            "'modelport export REF --format web --onnxruntime-web FILE.tgz'")
    with tempfile.TemporaryDirectory(prefix="modelport-ortweb-") as tmp:
        done = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{version}", "--silent", "--pack-destination", tmp],
            capture_output=True, text=True, timeout=600, check=False)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            detail = (done.stderr.strip().splitlines() or ["no tarball written"])[-1]
            raise ConfigurationError(
                f"could not fetch {PACKAGE} {version} with npm ({detail[:200]}); fetch it with "
                f"'npm pack {PACKAGE}@{version}' and pass it with --onnxruntime-web FILE.tgz")
        return _open(_from_source(tarballs[0], cached), version)


def _complete(folder: Path) -> bool:
    return all((folder / rel).is_file() for rel in FILES)


def _from_source(source: Path, cached: Path) -> Path:
    if source.is_dir():
        root = source / "package" if (source / "package" / "package.json").is_file() else source
        if not _complete(root):
            missing = [rel for rel in FILES if not (root / rel).is_file()]
            raise ConfigurationError(
                f"{str(source)!r} is not an unpacked {PACKAGE} package (missing {missing[0]})")
        return root
    if not source.is_file():
        raise ConfigurationError(f"--onnxruntime-web {str(source)!r} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=".ortweb-", dir=_parent(cached)))
    try:
        with tarfile.open(source, "r:gz") as archive:
            for rel in FILES:
                try:
                    member = archive.getmember(f"package/{rel}")
                except KeyError:
                    raise ConfigurationError(
                        f"{str(source)!r} is not an npm tarball of {PACKAGE} (no {rel})") from None
                data = archive.extractfile(member)
                assert data is not None
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.read())
    except tarfile.TarError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigurationError(f"{str(source)!r} is not a readable tarball: {exc}") from None
    if cached.exists():
        shutil.rmtree(cached, ignore_errors=True)
    staging.rename(cached)
    return cached


def _parent(cached: Path) -> Path:
    cached.parent.mkdir(parents=True, exist_ok=True)
    return cached.parent


def _open(folder: Path, version: str) -> OrtWeb:
    meta = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    if meta.get("name") != PACKAGE or meta.get("version") != version:
        raise IntegrityError(
            f"expected {PACKAGE} {version}, found {meta.get('name')} {meta.get('version')} in "
            f"{folder}; pass the right tarball with --onnxruntime-web")
    licence = str(meta.get("license", ""))
    if licence != "MIT":
        raise IntegrityError(f"{PACKAGE} {version} declares licence {licence!r}, not MIT")
    return OrtWeb(folder, version, licence)
