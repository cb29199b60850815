"""``modelport package --target kubernetes|kserve|knative``: every manifest validates against
the Kubernetes OpenAPI schemas (kubernetes-validate) or the CRD's schema (crd_schemas/), and
the semantics hold against a real server: probe routes answer, the grace period outlasts the
drain, ports and names agree across resources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from export_helpers import MODEL, VERSION, Setup

from modelport.cli.main import main
from modelport.serving.config import ServeConfig

K8S_VERSION = "1.37.0"
SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"
#: the projects' published CRD schemas (YAML, see crd_schemas/README.md), and a subset for KServe
CRDS = {
    "keda.sh/v1alpha1/ScaledObject": "keda.sh_scaledobjects_v1alpha1.yaml",
    "monitoring.coreos.com/v1/ServiceMonitor": "monitoring.coreos.com_servicemonitors_v1.yaml",
    "serving.knative.dev/v1/Service": "serving.knative.dev_services_v1.yaml",
    "serving.kserve.io/v1beta1/InferenceService": "serving.kserve.io_inferenceservice_v1beta1.json",
}


def _strict(schema: Any) -> Any:
    """The schema as the API server applies it with strict field validation (kubectl's default):
    an object schema listing ``properties`` refuses fields it does not list, unless it says
    ``x-kubernetes-preserve-unknown-fields`` or has ``additionalProperties`` of its own."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _crd_schema(kind: str) -> dict[str, Any]:
    path = SCHEMAS / CRDS[kind]
    loaded = yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else \
        json.loads(path.read_text())
    schema: dict[str, Any] = _strict(loaded)
    return schema


def _package(setup: Setup, tmp: Path, target: str, *extra: str) -> dict[str, dict[str, Any]]:
    out = setup.package(target, tmp / target, *extra)
    docs = {}
    for path in sorted(out.glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# made by modelport ") and \
            f"from model {MODEL} version {VERSION}" in text.splitlines()[0]
        docs[path.name] = yaml.safe_load(text)
    return docs


def _validate(doc: dict[str, Any]) -> None:
    kind = f"{doc['apiVersion']}/{doc['kind']}"
    if kind in CRDS:
        jsonschema.validate(doc, _crd_schema(kind))
        for container in _containers(doc):
            _validate_container(container)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert doc["metadata"]["annotations"]["modelport.io/made-by"].endswith("Z")
    assert doc["metadata"]["labels"]["modelport.io/model-version"] == str(VERSION)


def _validate_container(container: dict[str, Any]) -> None:
    """A container inside a custom resource, checked as Kubernetes checks a Pod's."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
           "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "InferenceService":
        return list(spec["predictor"]["containers"])
    if doc["kind"] == "Service" and "template" in spec:
        return list(spec["template"]["spec"]["containers"])
    return []


def test_kubernetes_manifests_validate_and_agree(setup: Setup, tmp_path: Path,
                                                 served: Any) -> None:
    docs = _package(setup, tmp_path, "kubernetes", "--namespace", "ml",
                    "--kafka-bootstrap", "kafka.ml:9092", "--source-topic", "churn-in")
    assert set(docs) == {"configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml",
                         "pdb.yaml", "servicemonitor.yaml", "stream-deployment.yaml",
                         "stream-scaledobject.yaml", "batch-cronjob.yaml"}
    for doc in docs.values():
        _validate(doc)
        assert doc["metadata"]["namespace"] == "ml"

    config = ServeConfig.from_mapping(yaml.safe_load(docs["configmap.yaml"]["data"]["serve.yaml"]))
    deployment = docs["deployment.yaml"]
    pod = deployment["spec"]["template"]
    (server,) = pod["spec"]["containers"]
    drain = config.limits.shutdown_delay_s + config.limits.graceful_timeout_s
    assert pod["spec"]["terminationGracePeriodSeconds"] > drain
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": config.port, "grpc": config.grpc_port}
    assert server["command"] == ["modelport", "serve", "--config", "/etc/modelport/serve.yaml"]
    assert server["resources"]["requests"] and server["resources"]["limits"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["allowPrivilegeEscalation"] is False

    # the probes name routes the real server answers, on the port the config gives it
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = server[probe]["httpGet"]
        assert ports[get["port"]] == config.port
        assert httpx.get(served.url + get["path"], timeout=5).status_code == 200
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    metrics = docs["servicemonitor.yaml"]["spec"]["endpoints"][0]
    scraped = httpx.get(served.url + metrics["path"], timeout=5)
    assert scraped.status_code == 200 and "# TYPE" in scraped.text

    # names and selectors tie the resources together
    labels = pod["metadata"]["labels"]
    service = docs["service.yaml"]["spec"]
    assert all(labels[k] == v for k, v in service["selector"].items())
    assert {p["targetPort"] for p in service["ports"]} == set(ports)
    assert metrics["port"] in {p["name"] for p in service["ports"]}
    monitor_selector = docs["servicemonitor.yaml"]["spec"]["selector"]["matchLabels"]
    assert all(docs["service.yaml"]["metadata"]["labels"][k] == v
               for k, v in monitor_selector.items())
    assert docs["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    pdb = docs["pdb.yaml"]["spec"]["selector"]["matchLabels"]
    assert all(labels[k] == v for k, v in pdb.items())
    volume = pod["spec"]["volumes"][0]["configMap"]["name"]
    assert volume == docs["configmap.yaml"]["metadata"]["name"]

    stream = docs["stream-deployment.yaml"]
    scaled = docs["stream-scaledobject.yaml"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == stream["metadata"]["name"]
    command = stream["spec"]["template"]["spec"]["containers"][0]["command"]
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka"
    assert command[command.index("--group") + 1] == trigger["metadata"]["consumerGroup"]
    assert command[command.index("--source") + 1] == "kafka://kafka.ml:9092/churn-in"
    # the image's registry holds the model under its source version
    assert command[:4] == ["modelport", "stream", "run", f"{MODEL}:{VERSION}"]
    assert trigger["metadata"]["topic"] == "churn-in"
    assert trigger["metadata"]["bootstrapServers"] == "kafka.ml:9092"
    cron = docs["batch-cronjob.yaml"]["spec"]
    assert cron["schedule"] == "0 * * * *" and cron["concurrencyPolicy"] == "Forbid"
    # every command is one the modelport CLI accepts as written
    from modelport.cli.main import build_parser

    batch = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    for argv in (server["command"], command, batch):
        assert argv[0] == "modelport"
        parsed = build_parser().parse_args(argv[1:])
        assert callable(parsed.func)


def test_kserve_and_knative_validate(setup: Setup, tmp_path: Path, served: Any) -> None:
    (isvc,) = _package(setup, tmp_path, "kserve").values()
    _validate(isvc)
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["ports"][0]["containerPort"] == 8000
    assert container["command"][container["command"].index("--port") + 1] == "8000"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert predictor["terminationGracePeriodSeconds"] > 35  # drain: 5 s + 30 s by default
    # KServe's V2 data plane: the server answers it for the model
    meta = httpx.get(f"{served.url}/v2/models/{MODEL}", timeout=5)
    assert meta.status_code == 200 and meta.json()["name"] == MODEL

    (service,) = _package(setup, tmp_path, "knative", "--port", "9000").values()
    _validate(service)
    template = service["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"
    (container,) = template["spec"]["containers"]
    assert container["ports"] == [{"name": "http1", "containerPort": 9000}]
    command = container["command"]
    assert command[command.index("--port") + 1] == "9000"  # flags win over the image's config
    assert container["livenessProbe"]["httpGet"]["port"] == 9000


def test_a_broken_manifest_is_caught(setup: Setup, tmp_path: Path) -> None:
    """The validation can fail: a misspelt field and a wrong type are refused."""
    docs = _package(setup, tmp_path, "kubernetes")
    deployment = docs["deployment.yaml"]
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    for change in ({"minReplicaCount": "one"}, {"minReplicaCounts": 1}):  # type, misspelling
        scaled = docs["stream-scaledobject.yaml"]
        with pytest.raises(jsonschema.ValidationError):
            _validate({**scaled, "spec": {**scaled["spec"], **change}})
    monitor = docs["servicemonitor.yaml"]
    (endpoint,) = monitor["spec"]["endpoints"]
    for bad in ({**endpoint, "scheme": "tcp"}, {**endpoint, "interval": "15 seconds"},
                {**endpoint, "paths": "/metrics"}):
        with pytest.raises(jsonschema.ValidationError):
            _validate({**monitor, "spec": {**monitor["spec"], "endpoints": [bad]}})
    with pytest.raises(jsonschema.ValidationError):  # the selector is required
        _validate({**monitor, "spec": {"endpoints": [endpoint]}})


def test_a_broken_knative_service_is_caught(setup: Setup, tmp_path: Path) -> None:
    service = _package(setup, tmp_path, "knative")["service.yaml"]
    _validate(service)
    template = service["spec"]["template"]
    (container,) = template["spec"]["containers"]
    for spec in ({**template["spec"], "containerConcurency": 0},    # misspelt
                 {**template["spec"], "timeoutSeconds": "300"},      # a string, not an integer
                 {"containerConcurrency": 0},                         # containers are required
                 {**template["spec"], "containers": [{**container, "lifecycle": {}}]}):
        broken = {**service, "spec": {"template": {**template, "spec": spec}}}
        with pytest.raises(jsonschema.ValidationError):  # Knative allows no lifecycle hooks
            jsonschema.validate(broken, _crd_schema("serving.knative.dev/v1/Service"))


@pytest.mark.parametrize(("flag", "value", "rule"), [
    ("--name", "Churn_v2", "only lowercase letters, digits and '-' (found 'C')"),
    ("--name", "9lives", "must start with a lowercase letter"),
    ("--name", "a" * 47, "at most 46 characters"),
    ("--namespace", "team-", "must end with a letter or digit"),
])
def test_invalid_kubernetes_names_name_the_rule(
        setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        flag: str, value: str, rule: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELPORT_HOME", str(setup.home))
        code = main(["package", f"{MODEL}:{VERSION}", "--target", "kubernetes", flag, value,
                     "-o", str(tmp_path / "k")])
    err = capsys.readouterr().err
    assert code == 3 and err.startswith(f"error: {flag} {value!r} is not a valid Kubernetes name")
    assert rule in err and err.count("\n") == 1 and not (tmp_path / "k").exists()


def test_print_writes_every_manifest_to_stdout(setup: Setup,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELPORT_HOME", str(setup.home))
        assert main(["package", f"{MODEL}:{VERSION}", "--target", "kubernetes", "--print"]) == 0
    out = capsys.readouterr().out
    assert out.count("# ---- ") == 9 and "kind: HorizontalPodAutoscaler" in out
