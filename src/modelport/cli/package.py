"""``modelport package REF --target python|docker|kubernetes|kserve|knative|lambda``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelport.cli.common import emit, read_registry

TARGETS = ("python", "docker", "kubernetes", "kserve", "knative", "lambda")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "package", help="package a model as a Python wheel, a container build context, "
                        "Kubernetes / KServe / Knative manifests or an AWS Lambda function",
        description="Generate what a platform needs to run a model version. Every generated "
                    "file says which modelport and which model version made it.")
    p.add_argument("ref", help="NAME, NAME:VERSION, NAME@ALIAS or a bundle directory")
    p.add_argument("--target", "-t", required=True, metavar="TARGET",
                   help=f"one of {', '.join(TARGETS)}")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="folder to write (default NAME-VERSION-TARGET)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--print", action="store_true", dest="print_",
                   help="write the text files to stdout instead of a folder")
    p.add_argument("--trusted", action="store_true",
                   help="allow pickle-based artifacts (only for models you trust)")
    g = p.add_argument_group("python")
    g.add_argument("--package-name", metavar="NAME",
                   help="Python package name (default NAME_model)")
    g = p.add_argument_group("server (docker, kubernetes, kserve, knative)")
    g.add_argument("--image", metavar="IMAGE", help="image reference (default modelport-NAME:V)")
    g.add_argument("--port", type=int, default=8000, help="HTTP port (REST, /metrics)")
    g.add_argument("--grpc-port", type=int, default=8001, metavar="PORT", help="gRPC port")
    g.add_argument("--workers", type=int, default=1, metavar="N", help="server processes")
    g.add_argument("--shutdown-delay", type=float, default=5.0, metavar="SECONDS",
                   help="seconds readiness is off after SIGTERM before the listener closes")
    g.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="seconds in-flight requests may take after that")
    g.add_argument("--python", metavar="X.Y",
                   help="base image Python (default: the bundle's recorded Python)")
    g = p.add_argument_group("kubernetes, kserve, knative")
    g.add_argument("--name", help="resource name (default: from the model name)")
    g.add_argument("--namespace", help="namespace to put in the manifests")
    g.add_argument("--replicas", type=int, default=2, help="minimum server replicas")
    g.add_argument("--max-replicas", type=int, default=10, metavar="N")
    g.add_argument("--kafka-bootstrap", default="kafka:9092", metavar="HOST:PORT",
                   help="stream workers' Kafka (kubernetes)")
    g.add_argument("--source-topic", default="requests", metavar="TOPIC")
    g.add_argument("--sink-topic", default="predictions", metavar="TOPIC")
    g.add_argument("--group", metavar="GROUP", help="consumer group (default NAME-stream)")
    g.add_argument("--lag-threshold", type=int, default=1000, metavar="MESSAGES",
                   help="KEDA: consumer lag per replica")
    g.add_argument("--batch-input", default="s3://bucket/input/", metavar="URI")
    g.add_argument("--batch-output", default="s3://bucket/scores/", metavar="URI")
    g.add_argument("--schedule", default="0 * * * *", metavar="CRON",
                   help="batch CronJob schedule (UTC)")
    p.set_defaults(func=_package)


def _package(args: argparse.Namespace) -> int:
    from modelport.errors import ConfigurationError
    from modelport.export.output import check_free, render_stream, write_tree
    from modelport.export.source import ExportSource

    if args.target not in TARGETS:
        raise ConfigurationError(
            f"unknown package target {args.target!r}; use 'modelport package REF --target "
            f"TARGET' with one of {', '.join(TARGETS)} (ONNX and the browser: 'modelport "
            "export')")
    command = f"modelport package {args.ref} --target {args.target}"
    registry = None if (Path(args.ref) / "modelport.yaml").is_file() else read_registry(args)
    source = ExportSource.open(args.ref, registry, trusted=args.trusted)
    stem = f"{source.name}-{source.version}" if source.version is not None else source.name
    folder = Path(args.output or f"{stem}-{args.target}")
    files, executable, summary = _build(args, source, folder)
    if args.print_:
        sys.stdout.write(render_stream(files))
        return 0
    check_free(folder, force=args.force, command=command)
    write_tree(files, folder, force=args.force, command=command, executable=executable)
    emit(args, {"output": str(folder), "target": args.target, "files": sorted(files),
                **summary}, f"wrote {folder}/ ({len(files)} files): {summary['what']}")
    return 0


def _build(args: argparse.Namespace, source: Any, folder: Path
           ) -> tuple[dict[str, str | bytes], frozenset[str], dict[str, Any]]:
    target = args.target
    if target == "python":
        from modelport.export.wheel import build_wheel

        built = build_wheel(source, package=args.package_name)
        return ({built.filename: built.data}, frozenset(),
                {"what": f"pip install {built.filename}; import {built.package}",
                 **built.report()})
    if target == "lambda":
        from modelport.export import serverless

        files = serverless.build_function(source, python=args.python)
        return (files, serverless.EXECUTABLE,
                {"what": "handler.handler (zip: sh build_zip.sh; image: Dockerfile)"})
    from modelport.export.plan import ServerPlan

    plan = ServerPlan(model=source.name, version=source.version or 1, http_port=args.port,
                      grpc_port=args.grpc_port, workers=args.workers,
                      shutdown_delay_s=args.shutdown_delay, graceful_timeout_s=args.drain_timeout)
    plan.check()
    image = args.image or f"modelport-{_image_name(source.name)}:{source.version or 0}"
    if target == "docker":
        from modelport.export.docker import DockerOptions, build_context

        files = build_context(source, DockerOptions(plan, image, args.python))
        return files, frozenset(), {"what": f"docker build -t {image} ."}
    from modelport.export import kubernetes
    from modelport.export.names import suggest

    options = kubernetes.KubernetesOptions(
        plan=plan, name=args.name or suggest(source.name), image=image,
        namespace=args.namespace, replicas=args.replicas, max_replicas=args.max_replicas,
        kafka_bootstrap=args.kafka_bootstrap, source_topic=args.source_topic,
        sink_topic=args.sink_topic, group=args.group, lag_threshold=args.lag_threshold,
        batch_input=args.batch_input, batch_output=args.batch_output, schedule=args.schedule,
        target=target)
    if target == "kubernetes":
        manifests = kubernetes.manifests(source, options)
    elif target == "kserve":
        from modelport.export import kserve

        manifests = kserve.manifests(source, options)
    else:
        from modelport.export import knative

        manifests = knative.manifests(source, options)
    rendered: dict[str, str | bytes] = dict(kubernetes.render_all(manifests,
                                                                  source.provenance))
    return rendered, frozenset(), {"what": f"kubectl apply -f {folder}/",
                                   "image": image}


def _image_name(name: str) -> str:
    from modelport.export.names import suggest

    return suggest(name)
