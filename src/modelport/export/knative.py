"""``modelport package REF --target knative``: a Knative Service that scales to zero.

::

    service.yaml    serving.knative.dev/v1 Service; min-scale 0 (no pods while idle), the
                    container's port, probes on the server's own routes

Knative routes HTTP/1 to one container port; gRPC (h2c) needs a Service of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.export.kubernetes import (
    KubernetesOptions,
    Manifest,
    container_security,
    metadata,
)
from modelport.export.plan import LIVE_PATH, READY_PATH

if TYPE_CHECKING:
    from modelport.export.source import ExportSource

#: requests one pod takes at once before Knative adds another
TARGET_CONCURRENCY = 50


def manifests(source: ExportSource, options: KubernetesOptions) -> dict[str, Manifest]:
    options.check()
    prov = source.provenance
    plan = options.plan
    container: dict[str, Any] = {
        "name": "server", "image": options.image, "command": plan.command_with_flags(),
        "ports": [{"name": "http1", "containerPort": plan.http_port}],
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": plan.http_port},
                           "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": LIVE_PATH, "port": plan.http_port},
                          "periodSeconds": 10},
        "resources": options.resources.to_dict(),
        "securityContext": container_security(),
    }
    template_meta = {
        "labels": {k: v for k, v in metadata(prov, options, options.name, "server")
                   ["labels"].items()},
        "annotations": {
            "modelport.io/made-by": prov.line(),
            "autoscaling.knative.dev/min-scale": "0",       # scale to zero when idle
            "autoscaling.knative.dev/max-scale": str(options.max_replicas),
            "autoscaling.knative.dev/metric": "concurrency",
            "autoscaling.knative.dev/target": str(TARGET_CONCURRENCY),
            "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "5m",
        },
    }
    return {"service.yaml": {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": metadata(prov, options, options.name, "server"),
        "spec": {"template": {
            "metadata": template_meta,
            "spec": {
                "containerConcurrency": 0,
                "timeoutSeconds": 300,
                "containers": [container],
            },
        }},
    }}
