"""``modelport package REF --target kubernetes``: manifests for serving, streaming and batch.

One file per resource, each starting with a comment saying what made it::

    configmap.yaml          serve.yaml for the server (the ServerPlan's ports and drain timing)
    deployment.yaml         the server: readiness / liveness / startup probes on the server's own
                            routes, terminationGracePeriodSeconds > the drain, resource requests
                            and limits, non-root security context without capabilities
    service.yaml            HTTP (REST + /metrics) and gRPC ports
    hpa.yaml                autoscaling/v2 on CPU
    pdb.yaml                keeps at least one server during voluntary disruptions
    servicemonitor.yaml     Prometheus operator scrape of /metrics
    stream-deployment.yaml  ``modelport stream run`` workers (Kafka in, Kafka out); the worker's
                            metrics listen on 127.0.0.1 only, so its probe runs inside the pod
    stream-scaledobject.yaml  KEDA ScaledObject on the consumer group's lag
    batch-cronjob.yaml      a scheduled ``modelport batch run``

The image is the one ``--target docker`` builds (the bundle is at /srv/model, the server's
configuration at /etc/modelport/serve.yaml, replaced here by the ConfigMap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from modelport.export.names import CRONJOB_MAX, check_label_name, label_value
from modelport.export.plan import (
    CONFIG_DIR,
    LIVE_PATH,
    METRICS_PATH,
    READY_PATH,
    UID,
    ServerPlan,
)

if TYPE_CHECKING:
    from modelport.export.source import ExportSource, Provenance

Manifest = dict[str, Any]
#: port of the stream worker's Prometheus endpoint
STREAM_METRICS_PORT = 9100


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "500m"
    memory_request: str = "512Mi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"

    def to_dict(self) -> dict[str, Any]:
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory_request},
                "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit}}


@dataclass(frozen=True)
class KubernetesOptions:
    """Everything the manifests are parameterised by (defaults are placeholders to edit)."""

    plan: ServerPlan
    name: str
    image: str
    namespace: str | None = None
    replicas: int = 2
    max_replicas: int = 10
    cpu_target_percent: int = 70
    resources: Resources = Resources()
    kafka_bootstrap: str = "kafka:9092"
    source_topic: str = "requests"
    sink_topic: str = "predictions"
    group: str | None = None
    lag_threshold: int = 1000
    max_stream_replicas: int = 12
    batch_input: str = "s3://bucket/input/"
    batch_output: str = "s3://bucket/scores/"
    schedule: str = "0 * * * *"
    #: the ``--target`` named in error messages
    target: str = "kubernetes"

    def check(self) -> None:
        self.plan.check()
        check_label_name(self.name, "--name", max_length=CRONJOB_MAX - len("-batch"),
                         target=self.target)
        if self.namespace is not None:
            check_label_name(self.namespace, "--namespace", target=self.target, rfc=1123)
        if not 1 <= self.replicas <= self.max_replicas:
            from modelport.errors import ConfigurationError

            raise ConfigurationError(
                f"--replicas must be between 1 and --max-replicas ({self.max_replicas}), got "
                f"{self.replicas}")


def manifests(source: ExportSource, options: KubernetesOptions) -> dict[str, Manifest]:
    """Every resource, by file name."""
    options.check()
    prov = source.provenance
    name = options.name
    config = f"{name}-config"
    return {
        "configmap.yaml": _configmap(prov, options, config),
        "deployment.yaml": _server_deployment(prov, options, config),
        "service.yaml": _service(prov, options),
        "hpa.yaml": _hpa(prov, options),
        "pdb.yaml": _pdb(prov, options),
        "servicemonitor.yaml": _service_monitor(prov, options),
        "stream-deployment.yaml": _stream_deployment(prov, options),
        "stream-scaledobject.yaml": _scaled_object(prov, options),
        "batch-cronjob.yaml": _cronjob(prov, options),
    }


def render(manifest: Manifest, prov: Provenance) -> str:
    """One manifest as YAML under a comment saying what made it."""
    return f"# {prov.line()}\n" + yaml.safe_dump(manifest, sort_keys=False)


def render_all(files: dict[str, Manifest], prov: Provenance) -> dict[str, str]:
    return {rel: render(m, prov) for rel, m in files.items()}


# ---------------------------------------------------------------------------- building blocks
def labels(prov: Provenance, component: str, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/version": label_value(str(prov.version or 0)),
            "app.kubernetes.io/managed-by": "modelport",
            "modelport.io/model": label_value(prov.model),
            "modelport.io/model-version": label_value(str(prov.version or 0))}


def selector(component: str, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def metadata(prov: Provenance, options: KubernetesOptions, name: str,
             component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if options.namespace:
        meta["namespace"] = options.namespace
    meta["labels"] = labels(prov, component, options.name)
    meta["annotations"] = {"modelport.io/made-by": prov.line()}
    return meta


def pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict[str, Any]:
    # the root filesystem stays writable: the image's embedded registry (SQLite) records
    # endpoint traffic and caches; everything else is locked down
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
            "runAsNonRoot": True, "runAsUser": UID, "capabilities": {"drop": ["ALL"]}}


def server_probes(plan: ServerPlan, port: Any = "http") -> dict[str, Any]:
    return {
        "startupProbe": {"httpGet": {"path": LIVE_PATH, "port": port}, "periodSeconds": 2,
                         "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": port}, "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": LIVE_PATH, "port": port}, "periodSeconds": 10,
                          "failureThreshold": 3},
    }


def _configmap(prov: Provenance, options: KubernetesOptions, name: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(prov, options, name, "server"),
            "data": {"serve.yaml": options.plan.serve_yaml(prov.line())}}


def _server_deployment(prov: Provenance, options: KubernetesOptions, config: str) -> Manifest:
    plan = options.plan
    volumes = [{"name": "config", "configMap": {"name": config}}]
    mounts = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    container = {
        "name": "server", "image": options.image, "imagePullPolicy": "IfNotPresent",
        "command": plan.command(),
        "ports": [{"name": "http", "containerPort": plan.http_port, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": plan.grpc_port, "protocol": "TCP"}],
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        **server_probes(plan),
        "resources": options.resources.to_dict(),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(prov, options, options.name, "server"),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": selector("server", options.name)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(prov, "server", options.name),
                             "annotations": {"modelport.io/made-by": prov.line()}},
                "spec": {
                    # longer than the server's drain: readiness off, then in-flight requests
                    "terminationGracePeriodSeconds": plan.termination_grace_s,
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _service(prov: Provenance, options: KubernetesOptions) -> Manifest:
    plan = options.plan
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(prov, options, options.name, "server"),
            "spec": {"type": "ClusterIP", "selector": selector("server", options.name),
                     "ports": [{"name": "http", "port": plan.http_port, "targetPort": "http",
                                "protocol": "TCP"},
                               {"name": "grpc", "port": plan.grpc_port, "targetPort": "grpc",
                                "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}}


def _hpa(prov: Provenance, options: KubernetesOptions) -> Manifest:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(prov, options, options.name, "server"),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": options.name},
                     "minReplicas": options.replicas, "maxReplicas": options.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization",
                                                   "averageUtilization":
                                                       options.cpu_target_percent}}}]}}


def _pdb(prov: Provenance, options: KubernetesOptions) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(prov, options, options.name, "server"),
            "spec": {"minAvailable": 1,
                     "selector": {"matchLabels": selector("server", options.name)}}}


def _service_monitor(prov: Provenance, options: KubernetesOptions) -> Manifest:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": metadata(prov, options, options.name, "server"),
            "spec": {"selector": {"matchLabels": selector("server", options.name)},
                     "endpoints": [{"port": "http", "path": METRICS_PATH, "interval": "15s",
                                    "scheme": "http"}]}}


def _stream_deployment(prov: Provenance, options: KubernetesOptions) -> Manifest:
    name = f"{options.name}-stream"
    group = options.group or name
    kafka = options.kafka_bootstrap
    # the worker's metrics endpoint listens on 127.0.0.1 inside the pod: probe it from within
    probe = {"exec": {"command": ["python", "-c", (
        "import urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:{STREAM_METRICS_PORT}{METRICS_PATH}', timeout=2)")]},
        "periodSeconds": 15, "failureThreshold": 4}
    container = {
        "name": "stream", "image": options.image, "imagePullPolicy": "IfNotPresent",
        # the model as the image's registry holds it: the same version the server answers with
        "command": ["modelport", "stream", "run", options.plan.ref,
                    "--source", f"kafka://{kafka}/{options.source_topic}",
                    "--sink", f"kafka://{kafka}/{options.sink_topic}",
                    "--dead-letter", f"kafka://{kafka}/{options.source_topic}-dead",
                    "--group", group, "--metrics-port", str(STREAM_METRICS_PORT)],
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": probe,
        "resources": options.resources.to_dict(),
        "securityContext": container_security(),
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(prov, options, name, "stream"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector("stream", options.name)},
            "template": {
                "metadata": {"labels": labels(prov, "stream", options.name),
                             "annotations": {"modelport.io/made-by": prov.line()}},
                "spec": {"terminationGracePeriodSeconds": 60,
                         "securityContext": pod_security(), "containers": [container]},
            },
        },
    }


def _scaled_object(prov: Provenance, options: KubernetesOptions) -> Manifest:
    name = f"{options.name}-stream"
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": metadata(prov, options, name, "stream"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "pollingInterval": 15, "cooldownPeriod": 300,
            "minReplicaCount": 1,
            # more consumers than partitions sit idle: keep this at most the partition count
            "maxReplicaCount": options.max_stream_replicas,
            "triggers": [{"type": "kafka", "metadata": {
                "bootstrapServers": options.kafka_bootstrap,
                "consumerGroup": options.group or name,
                "topic": options.source_topic,
                "lagThreshold": str(options.lag_threshold),
                "offsetResetPolicy": "latest"}}],
        },
    }


def _cronjob(prov: Provenance, options: KubernetesOptions) -> Manifest:
    name = f"{options.name}-batch"
    container = {
        "name": "batch", "image": options.image, "imagePullPolicy": "IfNotPresent",
        "command": ["modelport", "batch", "run", options.plan.ref, "--input", options.batch_input,
                    "--output", options.batch_output, "--no-progress"],
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "resources": options.resources.to_dict(),
        "securityContext": container_security(),
    }
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": metadata(prov, options, name, "batch"),
        "spec": {
            "schedule": options.schedule, "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 2, "template": {
                "metadata": {"labels": labels(prov, "batch", options.name)},
                "spec": {"restartPolicy": "Never", "securityContext": pod_security(),
                         "containers": [container]}}}},
        },
    }
