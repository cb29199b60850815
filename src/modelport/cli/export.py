"""``modelport export REF --format onnx|web``: the model as an ONNX file or a browser bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelport.cli.common import emit, read_registry, settings_from

FORMATS = ("onnx", "web")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "export", help="export a model as a standalone ONNX file or a static web bundle",
        description="Export a model version to ONNX (signature in the metadata, checked against "
                    "the native model on the bundle's example rows) or to a static folder that "
                    "predicts in the browser with onnxruntime-web, offline.")
    p.add_argument("ref", help="NAME, NAME:VERSION, NAME@ALIAS or a bundle directory")
    p.add_argument("--format", "-f", required=True, metavar="FORMAT", dest="format",
                   help="onnx (one .onnx file) or web (a static folder)")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="file (onnx) or folder (web) to write; default NAME-VERSION.onnx / "
                        "NAME-VERSION-web")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX default-domain opset (default: the converter's)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="element type of floating inputs (float64: scikit-learn models only)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="fix the batch dimension to N rows (default: dynamic)")
    p.add_argument("--onnxruntime-web", metavar="TGZ_OR_DIR",
                   help="web: onnxruntime-web from this npm tarball or folder instead of npm")
    p.add_argument("--trusted", action="store_true",
                   help="allow pickle-based artifacts (only for models you trust)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from modelport.errors import ConfigurationError
    from modelport.export.onnx_file import OnnxOptions, export_onnx
    from modelport.export.output import check_free, write_file, write_tree
    from modelport.export.source import ExportSource

    if args.format not in FORMATS:
        raise ConfigurationError(
            f"unknown export format {args.format!r}; use 'modelport export REF --format onnx' "
            "or '--format web' (containers and platforms: 'modelport package')")
    options = OnnxOptions(opset=args.opset, dtype=args.dtype, batch_size=args.batch_size)
    options.check()
    command = f"modelport export {args.ref} --format {args.format}"
    source = ExportSource.open(args.ref, _registry(args), trusted=args.trusted)
    stem = f"{source.name}-{source.version}" if source.version is not None else source.name
    if args.format == "onnx":
        target = Path(args.output or f"{stem}.onnx")
        check_free(target, force=args.force, command=command)
        exported = export_onnx(source, options)
        write_file(exported.onnx_bytes, target, force=args.force, command=command)
        report = {"output": str(target), **exported.report()}
        emit(args, report, _onnx_text(target, report))
        return 0
    from modelport.export.web import build_site

    folder = Path(args.output or f"{stem}-web")
    check_free(folder, force=args.force, command=command)
    site = build_site(source, cache_root=settings_from(args).cache_dir,
                      onnxruntime_web=args.onnxruntime_web, options=options)
    write_tree(site.files, folder, force=args.force, command=command)
    report = {"output": str(folder), **site.report()}
    emit(args, report, _onnx_text(folder, {"output": str(folder), **report["onnx"]})
         + f"\nsite: {len(site.files)} files, {report['total_bytes'] / 1e6:.1f} MB; open "
           f"{folder / 'index.html'}")
    return 0


def _registry(args: argparse.Namespace) -> Any:
    if (Path(args.ref) / "modelport.yaml").is_file():
        return None
    return read_registry(args)


def _onnx_text(target: Path, report: dict[str, Any]) -> str:
    parity = report["parity"]
    checks = [f"labels equal on {parity['rows']} example rows"
              if parity["labels_equal"] else "labels differ"]
    if parity["max_probability_diff"] is not None:
        checks.append(f"probabilities within {parity['max_probability_diff']:.1e} "
                      f"(allowed {parity['probability_tolerance']:.0e})")
    if parity["max_value_rel_diff"] is not None:
        checks.append(f"values within {parity['max_value_rel_diff']:.1e} relative "
                      f"(allowed {parity['value_tolerance']:.0e})")
    batch = report["batch_size"] or "dynamic"
    return (f"wrote {target} ({report['origin']}; opset {report['opset']}, {report['dtype']} "
            f"inputs, batch {batch})\nparity with the native model: {', '.join(checks)}")
