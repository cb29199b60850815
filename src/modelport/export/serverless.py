"""``modelport package REF --target lambda``: an AWS Lambda function, as a zip and as an image.

::

    handler.py          handler = Mangum(app): API Gateway REST (v1) and HTTP (v2) APIs,
                        Function URLs and ALB target groups; the model loads at import
    model/              the bundle (SHA-256 of every file checked when it loads)
    requirements.txt    pinned, as for the container image, plus mangum
    wheels/             modelport itself, as a wheel
    build_zip.sh        installs the requirements for Lambda's platform into build/ and zips
                        it with handler.py and model/ as function.zip
    Dockerfile          the container-image form (AWS's Lambda Python base image)
    README.md

The function answers the same protocols as ``modelport serve`` (it is the same app, see
:mod:`modelport.export.lambda_runtime`), under the model's own name and version.
"""

from __future__ import annotations

from importlib.metadata import version as installed_version
from typing import TYPE_CHECKING

from modelport.export.docker import python_version
from modelport.export.requirements import pins_for
from modelport.export.selfwheel import modelport_wheel

if TYPE_CHECKING:
    from modelport.export.source import ExportSource

Files = dict[str, str | bytes]
#: the adapter from Lambda events to ASGI
MANGUM = "mangum"


def build_function(source: ExportSource, *, python: str | None = None) -> Files:
    prov = source.provenance
    line = prov.line()
    py = python_version(source, python)
    pins = pins_for(source.model.flavor, source.model.manifest.libraries)
    pins.versions[MANGUM] = installed_version(MANGUM)
    wheel_name, wheel = modelport_wheel()
    # an unregistered bundle directory is served as version 1
    version = prov.version if prov.version is not None else 1
    files: Files = {
        "handler.py": f'''"""AWS Lambda handler serving {prov.model} version {version}.

{line}. API Gateway REST (v1) and HTTP (v2) APIs, Function URLs and ALB events reach the same
app as `modelport serve`; the model loads when this module is imported (once per execution
environment), so warm invocations pay nothing.
"""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MODELPORT_HOME", "/tmp/modelport")  # the only writable place

from mangum import Mangum  # noqa: E402

from modelport.export.lambda_runtime import load_app  # noqa: E402

app = load_app(Path(__file__).resolve().parent / "model", name={prov.model!r}, version={version})
handler = Mangum(app, lifespan="off")
''',
        "requirements.txt": (f"# {line}\n" + "\n".join(pins.lines()) + "\n"),
        f"wheels/{wheel_name}": wheel,
        "build_zip.sh": f"""#!/bin/sh
# {line}
# Builds function.zip for the python{py} x86_64 Lambda runtime (handler: handler.handler).
set -eu
cd "$(dirname "$0")"
rm -rf build function.zip
python{py} -m pip install --quiet --target build --platform manylinux2014_x86_64 \\
    --implementation cp --python-version {py} --only-binary=:all: \\
    --requirement requirements.txt wheels/{wheel_name}
cp handler.py build/
cp -r model build/model
size=$(du -sm build | cut -f1)
if [ "$size" -gt 250 ]; then
  echo "build/ is $size MB unzipped, over Lambda's 250 MB limit for zip functions:" >&2
  echo "deploy the container image (Dockerfile) instead" >&2
  exit 1
fi
(cd build && python{py} -m zipfile -c ../function.zip .)
echo "function.zip: handler handler.handler, runtime python{py}"
""",
        "Dockerfile": f"""# {line}
# docker build -t {prov.model}-lambda . ; push to ECR; create the function from the image
FROM public.ecr.aws/lambda/python:{py}
COPY requirements.txt ${{LAMBDA_TASK_ROOT}}/requirements.txt
COPY wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --requirement "${{LAMBDA_TASK_ROOT}}/requirements.txt" \\
 && pip install --no-cache-dir --no-deps /tmp/wheels/{wheel_name} \\
 && rm -rf /tmp/wheels
COPY handler.py ${{LAMBDA_TASK_ROOT}}/
COPY model/ ${{LAMBDA_TASK_ROOT}}/model/
CMD ["handler.handler"]
""",
        "README.md": f"""# {prov.model} on AWS Lambda

{line}.

Zip: `sh build_zip.sh` (needs python{py} and pip; downloads wheels for Lambda's platform), then
create the function with runtime `python{py}`, handler `handler.handler`, at least 1024 MB of
memory, and `function.zip`. Container image: `docker build -t {prov.model}-lambda .`, push it
to ECR and create the function from it.

Put it behind API Gateway (REST or HTTP API), a Function URL or an ALB target group; every
event type reaches the same routes as `modelport serve`:
`POST /predict/{prov.model}`, `POST /v2/models/{prov.model}/infer`,
`POST /v1/models/{prov.model}:predict`, `POST /invocations`, `GET /v2/health/ready`.
""",
    }
    for path in sorted(source.bundle_dir.rglob("*")):
        if path.is_file():
            files[f"model/{path.relative_to(source.bundle_dir).as_posix()}"] = path.read_bytes()
    return files


EXECUTABLE = frozenset({"build_zip.sh"})
