"""``modelport package REF --target docker``: a container build context serving one model.

::

    Dockerfile          slim Python base (the bundle's Python version), non-root user, pinned
                        requirements, the bundle baked in and registered in an embedded registry,
                        HEALTHCHECK on the readiness route, SIGTERM as stop signal, HTTP / gRPC
                        ports (metrics are on the HTTP port at /metrics)
    .dockerignore
    requirements.txt    pinned (see :mod:`modelport.export.requirements`)
    wheels/             modelport itself, as a wheel (no index needed for it)
    model/              the bundle, every file as registered (SHA-256 checked at registration)
    serve.yaml          the server's configuration (:class:`~modelport.export.plan.ServerPlan`)
    README.md           build and run lines

The server drains on SIGTERM (readiness off for ``shutdown_delay_s``, in-flight requests get
``graceful_timeout_s``); ``docker stop --time`` should exceed the sum, the README says so.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelport.export.plan import CONFIG_FILE, HOME_DIR, MODEL_DIR, READY_PATH, UID, ServerPlan
from modelport.export.requirements import pins_for
from modelport.export.selfwheel import modelport_wheel

if TYPE_CHECKING:
    from modelport.export.source import ExportSource

Files = dict[str, str | bytes]


@dataclass(frozen=True)
class DockerOptions:
    """How the image is built."""

    plan: ServerPlan
    #: image repository:tag the README's lines use
    image: str
    #: Python of the base image; default: the one the bundle was saved with (major.minor)
    python: str | None = None


def python_version(source: ExportSource, override: str | None = None) -> str:
    recorded = override or source.model.manifest.libraries.get("python", "3.11")
    return ".".join(recorded.split(".")[:2])


def build_context(source: ExportSource, options: DockerOptions) -> Files:
    """Every file of the build context (relative path → content)."""
    plan = options.plan
    plan.check()
    line = source.provenance.line()
    pins = pins_for(source.model.flavor, source.model.manifest.libraries)
    wheel_name, wheel = modelport_wheel()
    files: Files = {
        "Dockerfile": dockerfile(source, options, wheel_name),
        ".dockerignore": f"# {line}\n**/__pycache__\n**/*.pyc\n.git\nREADME.md\n",
        "requirements.txt": (f"# {line}\n# pinned: this machine's working versions, overridden "
                             "by the versions the bundle recorded\n"
                             + "\n".join(pins.lines()) + "\n"),
        f"wheels/{wheel_name}": wheel,
        "serve.yaml": plan.serve_yaml(line),
        "README.md": readme(source, options),
    }
    for path in sorted(source.bundle_dir.rglob("*")):
        if path.is_file():
            files[f"model/{path.relative_to(source.bundle_dir).as_posix()}"] = path.read_bytes()
    return files


def healthcheck_command(port: int) -> list[str]:
    """Exit 0 when the readiness route answers 200 (python: no curl in slim images)."""
    probe = (f"import sys, urllib.request; sys.exit(0 if urllib.request.urlopen("
             f"'http://127.0.0.1:{port}{READY_PATH}', timeout=2).status == 200 else 1)")
    return ["python", "-c", probe]


def dockerfile(source: ExportSource, options: DockerOptions, wheel_name: str) -> str:
    plan = options.plan
    prov = source.provenance
    python = python_version(source, options.python)
    labels = {
        "org.opencontainers.image.title": f"{prov.model} model server",
        "org.opencontainers.image.version": str(prov.version or 0),
        "org.opencontainers.image.description": prov.line(),
        "io.modelport.model": prov.model,
        "io.modelport.model-version": str(prov.version or 0),
        "io.modelport.version": prov.modelport,
    }
    label_lines = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    return f"""# syntax=docker/dockerfile:1
# {prov.line()}
# Build: docker build -t {options.image} .
FROM python:{python}-slim

LABEL {label_lines}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    OMP_NUM_THREADS=1 \\
    MODELPORT_HOME={HOME_DIR}

RUN groupadd --system --gid {UID} modelport \\
 && useradd --system --uid {UID} --gid {UID} --home-dir /srv --shell /usr/sbin/nologin modelport \\
 && mkdir -p {HOME_DIR} \\
 && chown {UID}:{UID} {HOME_DIR}

WORKDIR /srv
COPY requirements.txt /srv/requirements.txt
COPY wheels/ /srv/wheels/
RUN pip install --no-cache-dir --requirement /srv/requirements.txt \\
 && pip install --no-cache-dir --no-deps /srv/wheels/{wheel_name}

COPY --chown={UID}:{UID} model/ {MODEL_DIR}/
COPY serve.yaml {CONFIG_FILE}

USER {UID}:{UID}
# the bundle becomes {plan.ref} of the image's own registry (the source's version number, so
# the server answers "version": {plan.version}); every file's SHA-256 is checked
RUN {shlex.join(plan.register_command(MODEL_DIR))}

# HTTP (REST, /metrics) and gRPC
EXPOSE {plan.http_port} {plan.grpc_port}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\
  CMD {json.dumps(healthcheck_command(plan.http_port))}
# modelport serve drains on SIGTERM: readiness off for {plan.shutdown_delay_s:g} s, then up to \
{plan.graceful_timeout_s:g} s for in-flight requests
STOPSIGNAL SIGTERM
ENTRYPOINT {json.dumps(plan.command())}
"""


def readme(source: ExportSource, options: DockerOptions) -> str:
    plan = options.plan
    prov = source.provenance
    stop = int(plan.drain_s) + 5
    return f"""# {prov.model} model server image

{prov.line()}.

```bash
docker build -t {options.image} .
docker run --rm -p {plan.http_port}:{plan.http_port} -p {plan.grpc_port}:{plan.grpc_port} \\
    {options.image}
curl -s localhost:{plan.http_port}{READY_PATH}
curl -s -X POST localhost:{plan.http_port}/predict/{prov.model} \\
    -H 'content-type: application/json' -d '{{...}}'
docker stop --time {stop} CONTAINER   # longer than the drain ({plan.drain_s:g} s)
```

Inside, the model is `{plan.ref}` of the image's own registry (built from model
`{prov.ref}`, keeping its version number); ports: HTTP {plan.http_port} (REST, `/metrics`),
gRPC {plan.grpc_port}; the server runs as uid {UID}, reads `{CONFIG_FILE}` (mount your own
to change it), and stops gracefully on SIGTERM.
"""
