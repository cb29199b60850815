"""``modelport package REF --target kserve``: an InferenceService with modelport as predictor.

modelport already speaks the Open Inference Protocol V2 that KServe's data plane uses
(``/v2/models/{name}/infer``, ``/v2/health/ready``), so the image ``--target docker`` builds
runs as a custom predictor container; KServe routes, scales and revisions it::

    inferenceservice.yaml   serving.kserve.io/v1beta1 InferenceService
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.export.kubernetes import (
    KubernetesOptions,
    Manifest,
    container_security,
    metadata,
    server_probes,
)

if TYPE_CHECKING:
    from modelport.export.source import ExportSource


def manifests(source: ExportSource, options: KubernetesOptions) -> dict[str, Manifest]:
    options.check()
    prov = source.provenance
    plan = options.plan
    meta = metadata(prov, options, options.name, "server")
    meta["annotations"]["serving.kserve.io/enable-prometheus-scraping"] = "true"
    meta["annotations"]["prometheus.kserve.io/port"] = str(plan.http_port)
    meta["annotations"]["prometheus.kserve.io/path"] = "/metrics"
    # KServe gives the predictor container one port; gRPC needs an InferenceService of its own
    container: dict[str, Any] = {
        "name": "kserve-container", "image": options.image, "command": plan.command_with_flags(),
        "ports": [{"containerPort": plan.http_port, "protocol": "TCP"}],
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        **{k: v for k, v in server_probes(plan, plan.http_port).items()},
        "resources": options.resources.to_dict(),
        "securityContext": container_security(),
    }
    return {"inferenceservice.yaml": {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": {
            "minReplicas": options.replicas, "maxReplicas": options.max_replicas,
            "scaleMetric": "cpu", "scaleTarget": options.cpu_target_percent,
            "timeout": 60,
            "terminationGracePeriodSeconds": plan.termination_grace_s,
            "containers": [container],
        }},
    }}
