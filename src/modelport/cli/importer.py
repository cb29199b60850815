"""``modelport import-mlflow DIR``: turn an MLflow model directory into a modelport bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelport.cli.common import emit, existing_file, registry_from, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("import-mlflow",
                       help="convert an MLflow model directory (sklearn/xgboost/lightgbm/onnx, "
                            "or pyfunc when mlflow is installed)")
    p.add_argument("directory", help="MLflow model directory (contains an MLmodel file)")
    p.add_argument("--name", help="model name (default: the directory's name)")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="where to write the bundle (default: under MODELPORT_HOME/bundles)")
    p.add_argument("--register", action="store_true", help="also register it as a new version")
    p.add_argument("--trusted", action="store_true",
                   help="allow reading pickled (cloudpickle/pickle) models and MLflow pyfunc "
                        "models, which run code when loaded")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the bundle directory if it exists")
    p.add_argument("--nullable", action="append", default=[], metavar="COLUMN",
                   help="declare this input column nullable (repeatable, or A,B); MLflow's "
                        "optional (required: false) columns already are")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    source = existing_file(args.directory, "MLflow model directory")
    from modelport.bundle.mlflow import import_mlflow

    name = args.name or source.resolve().name
    dest = Path(args.output) if args.output else settings_from(args).home / "bundles" / name
    nullable = [c.strip() for text in args.nullable for c in text.split(",") if c.strip()]
    bundle = import_mlflow(source, dest, name=name, trusted=args.trusted,
                           overwrite=args.overwrite, nullable=nullable)
    info: dict[str, Any] = {"bundle": str(bundle), "name": name}
    text = f"wrote bundle {bundle}"
    if args.register:
        version = registry_from(args).register(bundle, name=name)
        info["version"] = version.version
        text += f"\nregistered {version.name} version {version.version}"
    emit(args, info, text)
    return 0
