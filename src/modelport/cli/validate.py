"""``modelport validate`` and ``modelport promote``: gates for CI/CD pipelines.

``validate`` exits 0 when the candidate passes, 1 when it does not (with the report), and the
usual error codes for mistakes. ``promote --if-better`` moves an alias only after the same gate.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelport.cli.common import emit, registry_from
from modelport.errors import ConfigurationError

GATE_FAILED = 1


def _gate_options(p: argparse.ArgumentParser) -> None:
    from modelport.rollout.gates import METRICS

    p.add_argument("--data", metavar="FILE", help="hold-out data (Parquet or CSV) with labels")
    p.add_argument("--label", metavar="COLUMN", help="the label column in --data")
    p.add_argument("--metric", default="accuracy", choices=sorted(METRICS),
                   help="metric to compare (default accuracy)")
    p.add_argument("--min-delta", type=float, default=0.0, metavar="D",
                   help="required improvement over the baseline (default 0: not worse)")
    p.add_argument("--max-latency-ratio", type=float, metavar="R",
                   help="the candidate may take at most R times the baseline's time")
    p.add_argument("--trusted", action="store_true",
                   help="allow pickle-based artifacts (only for models you trust)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("validate", help="gate: is CANDIDATE at least as good as a baseline?",
                       description="Score CANDIDATE and the baseline on the same hold-out data; "
                                   "exit 0 if the candidate passes, 1 if not.")
    p.add_argument("candidate", help="NAME:VERSION, NAME@ALIAS or a bundle directory")
    p.add_argument("--against", required=True, metavar="REF", help="the baseline, e.g. "
                   "fraud@production")
    _gate_options(p)
    p.set_defaults(func=_validate)

    p = sub.add_parser("promote", help="move an alias to CANDIDATE (with --if-better: only if "
                                       "it passes the gate)")
    p.add_argument("candidate", help="NAME:VERSION to promote")
    p.add_argument("--to", required=True, metavar="ALIAS", help="alias to move, e.g. production")
    p.add_argument("--if-better", action="store_true",
                   help="validate against the alias's current version first")
    p.add_argument("--against", metavar="REF",
                   help="baseline for --if-better (default: NAME@ALIAS)")
    _gate_options(p)
    p.set_defaults(func=_promote)


def _need_data(args: argparse.Namespace, command: str) -> None:
    if not args.data or not args.label:
        raise ConfigurationError(
            f"'modelport {command}' needs --data FILE and --label COLUMN (hold-out rows with "
            "their true labels)")


def _validate(args: argparse.Namespace) -> int:
    from modelport.rollout.gates import validate

    _need_data(args, "validate")
    with registry_from(args) as registry:
        report = validate(registry, args.candidate, args.against, args.data, label=args.label,
                          metric=args.metric, min_delta=args.min_delta,
                          max_latency_ratio=args.max_latency_ratio, trusted=args.trusted)
    emit(args, report.to_dict(), report.render())
    return 0 if report.passed else GATE_FAILED


def _promote(args: argparse.Namespace) -> int:
    from modelport.registry.refs import parse_ref
    from modelport.rollout.gates import validate

    ref = parse_ref(args.candidate)
    with registry_from(args) as registry:
        target = registry.resolve(args.candidate)
        result: dict[str, Any] = {"candidate": target.ref, "alias": args.to}
        if args.if_better:
            _need_data(args, "promote --if-better")
            against = args.against or f"{ref.name}@{args.to}"
            try:
                registry.resolve(against)
            except Exception:
                if args.against:
                    raise
                against = None  # nothing there yet: the first version passes
            if against is not None:
                report = validate(registry, target.ref, against, args.data, label=args.label,
                                  metric=args.metric, min_delta=args.min_delta,
                                  max_latency_ratio=args.max_latency_ratio,
                                  trusted=args.trusted)
                result["gate"] = report.to_dict()
                if not report.passed:
                    result["promoted"] = False
                    emit(args, result, report.render() + f"\nnot promoted: {args.to} unchanged")
                    return GATE_FAILED
                text = report.render() + "\n"
            else:
                text = f"{ref.name}@{args.to} does not exist yet; nothing to compare against\n"
        else:
            text = ""
        registry.set_alias(target.name, args.to, target.version)
    result["promoted"] = True
    emit(args, result, text + f"{target.name}@{args.to} -> version {target.version}")
    return 0


__all__ = ["GATE_FAILED", "register"]
