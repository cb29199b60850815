"""``modelport endpoint …``: endpoints and their traffic policies from the command line.

Every mutating command takes ``--dry-run`` (print the resulting policy, change nothing) and
``--if-revision N`` (refuse with a conflict when someone changed the endpoint since revision N).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.cli.common import emit, read_registry, registry_from, table
from modelport.errors import ConfigurationError

if TYPE_CHECKING:
    from modelport.rollout.spec import Endpoint
    from modelport.rollout.store import EndpointStore

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
POLICY_CHOICES = ("single", "bluegreen", "canary", "shadow", "split", "bandit")


def duration(text: str) -> float:
    """``90``, ``30s``, ``2m``, ``1h`` → seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}; use e.g. 30s, 2m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _policy_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    p.add_argument("--variant", action="append", default=[], metavar="NAME=MODEL_REF",
                   help="a variant and the model it serves (repeatable): blue=fraud@production")
    p.add_argument("--policy", choices=POLICY_CHOICES,
                   help="traffic policy" + (" (default single)" if creating else ""))
    p.add_argument("--primary", metavar="VARIANT",
                   help="the stable variant (blue/green start colour, canary baseline, shadow "
                        "primary; default: the first variant)")
    p.add_argument("--candidate", metavar="VARIANT", help="the canary's candidate variant")
    p.add_argument("--weight", action="append", default=[], metavar="VARIANT=PERCENT",
                   help="split weights, summing to 100 (repeatable)")
    p.add_argument("--shadow", action="append", default=[], metavar="VARIANT",
                   help="send copies of the traffic to this variant (repeatable)")
    p.add_argument("--key", metavar="NAME",
                   help="where the sticky routing key comes from: a request header (default "
                        "x-modelport-key), a batch column; streams use the message key")
    p.add_argument("--experiment", metavar="NAME",
                   help="salt of the sticky hash (default: the endpoint name)")
    g = p.add_argument_group("canary")
    g.add_argument("--steps", metavar="P1,P2,...", help="candidate shares in percent: 5,25,100")
    g.add_argument("--interval", type=duration, metavar="DURATION",
                   help="time per step, each ending with an analysis check (e.g. 2m)")
    g.add_argument("--max-error-rate", type=float, metavar="FRACTION")
    g.add_argument("--max-p99-ms", type=float, metavar="MS")
    g.add_argument("--min-requests", type=int, metavar="N",
                   help="candidate requests a check needs; fewer fails the check")
    g.add_argument("--max-failed-checks", type=int, metavar="N",
                   help="failed checks that roll the canary back")
    g.add_argument("--quality-metric", metavar="NAME", help="feedback metric for a check")
    g.add_argument("--min-quality", type=float, metavar="VALUE")
    g.add_argument("--no-promote", action="store_true", default=None,
                   help="do not move the primary's alias when the canary finishes")
    g = p.add_argument_group("bandit")
    g.add_argument("--algorithm", choices=("thompson", "ucb1", "epsilon_greedy"))
    g.add_argument("--floor", type=float, metavar="SHARE",
                   help="minimum traffic share of every arm (default 0.05)")
    g.add_argument("--epsilon", type=float, metavar="P")
    g.add_argument("--reward-range", metavar="LOW,HIGH", help="declared reward range")


def _mutating(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="print the resulting policy and change nothing")
    p.add_argument("--if-revision", type=int, metavar="N",
                   help="only if the endpoint is still at revision N (else a conflict, exit 5)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    ep = sub.add_parser(
        "endpoint", help="endpoints with traffic policies (blue/green, canary, shadow, A/B, "
                         "bandit)",
        description="Endpoints are names clients call, with a traffic policy over variants "
                    "(model versions or aliases). Changes reach every server within a second.")
    esub = ep.add_subparsers(dest="endpoint_command", metavar="ACTION", required=True)

    p = esub.add_parser("create", help="create an endpoint")
    p.add_argument("name")
    _policy_options(p, creating=True)
    p.add_argument("--description", default="")
    p.add_argument("--replace", action="store_true", help="replace an existing endpoint")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resulting policy and change nothing")
    p.set_defaults(func=_create)

    p = esub.add_parser("list", help="list endpoints")
    p.set_defaults(func=_list)

    p = esub.add_parser("show", help="an endpoint's policy, state, shares and history")
    p.add_argument("name")
    p.set_defaults(func=_show)

    p = esub.add_parser("set", help="change an endpoint's policy")
    p.add_argument("name")
    _policy_options(p, creating=False)
    _mutating(p)
    p.set_defaults(func=_set)

    p = esub.add_parser("switch", help="blue/green: send all traffic to VARIANT")
    p.add_argument("name")
    p.add_argument("variant")
    _mutating(p)
    p.set_defaults(func=_simple, op="switch")

    p = esub.add_parser("promote", help="finish a rollout: move the primary's alias to VARIANT "
                                        "(default: the candidate / active colour)")
    p.add_argument("name")
    p.add_argument("variant", nargs="?")
    _mutating(p)
    p.set_defaults(func=_simple, op="promote")

    p = esub.add_parser("rollback", help="back to the previous colour / all traffic to the "
                                         "primary")
    p.add_argument("name")
    _mutating(p)
    p.set_defaults(func=_simple, op="rollback")

    p = esub.add_parser("pause", help="stop automatic changes (canary steps, bandit learning)")
    p.add_argument("name")
    p.add_argument("--resume", action="store_true", help="resume them instead")
    _mutating(p)
    p.set_defaults(func=_simple, op="pause")

    p = esub.add_parser("delete", help="delete an endpoint")
    p.add_argument("name")
    _mutating(p)
    p.set_defaults(func=_delete)

    p = esub.add_parser("report", help="compare the variants: counts, means, a confidence "
                                       "interval and an always-valid significance test")
    p.add_argument("name")
    p.add_argument("--metric", default="latency_ms",
                   help="latency_ms (default), error_rate, reward, or a feedback metric")
    p.add_argument("--control", metavar="VARIANT", help="baseline (default: the primary)")
    p.add_argument("--since", type=duration, metavar="DURATION",
                   help="only traffic of the last DURATION (default: all)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.set_defaults(func=_report)

    p = esub.add_parser("reward", help="record bandit rewards: VARIANT=VALUE ...")
    p.add_argument("name")
    p.add_argument("rewards", nargs="+", metavar="VARIANT=VALUE")
    p.set_defaults(func=_reward)

    p = esub.add_parser("apply", help="create or replace endpoints from a YAML file (GitOps)")
    p.add_argument("file", help="YAML: one endpoint mapping, a list, or {endpoints: [...]}")
    p.add_argument("--dry-run", action="store_true", help="say what would change")
    p.set_defaults(func=_apply)


# ---------------------------------------------------------------------- helpers
def _store(args: argparse.Namespace, *, read: bool = False) -> EndpointStore:
    from modelport.rollout.store import EndpointStore

    return EndpointStore(read_registry(args) if read else registry_from(args))


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise ConfigurationError(f"{flag} takes NAME=VALUE, not {value!r}")
        out[name.strip()] = rest.strip()
    return out


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """Spec fields given on the command line (only those given)."""
    out: dict[str, Any] = {}
    if args.variant:
        out["variants"] = _pairs(args.variant, "--variant")
    for flag in ("policy", "primary", "candidate", "key", "experiment"):
        if getattr(args, flag) is not None:
            out[flag] = getattr(args, flag)
    if args.weight:
        try:
            out["weights"] = {k: float(v) for k, v in _pairs(args.weight, "--weight").items()}
        except ValueError:
            raise ConfigurationError("--weight takes VARIANT=PERCENT, e.g. --weight a=90") from None
    if args.shadow:
        out["shadows"] = list(args.shadow)
    canary: dict[str, Any] = {}
    if args.steps:
        try:
            canary["steps"] = [float(s) for s in args.steps.split(",") if s.strip()]
        except ValueError:
            raise ConfigurationError("--steps takes percentages such as 5,25,50,100") from None
    for flag, key in (("interval", "interval_s"), ("max_error_rate", "max_error_rate"),
                      ("max_p99_ms", "max_p99_ms"), ("min_requests", "min_requests"),
                      ("max_failed_checks", "max_failed_checks"),
                      ("quality_metric", "quality_metric"), ("min_quality", "min_quality")):
        if getattr(args, flag) is not None:
            canary[key] = getattr(args, flag)
    if args.no_promote:
        canary["promote"] = False
    if canary:
        out["canary"] = canary
    bandit: dict[str, Any] = {}
    for flag in ("algorithm", "floor", "epsilon"):
        if getattr(args, flag) is not None:
            bandit[flag] = getattr(args, flag)
    if args.reward_range:
        low, sep, high = args.reward_range.partition(",")
        try:
            bandit["reward_min"], bandit["reward_max"] = float(low), float(high)
        except ValueError:
            raise ConfigurationError("--reward-range takes LOW,HIGH, e.g. 0,1") from None
        if not sep:
            raise ConfigurationError("--reward-range takes LOW,HIGH, e.g. 0,1")
    if bandit:
        out["bandit"] = bandit
    return out


def _describe(endpoint: Endpoint) -> str:
    from modelport.rollout.policy import shares

    spec, state = endpoint.spec, endpoint.state
    lines = [f"endpoint {spec.name}: {spec.policy}, revision {endpoint.revision}"
             + (" (paused)" if state.paused else "")]
    share = shares(spec, state)
    for variant, ref in spec.variants.items():
        role = []
        if variant == spec.stable:
            role.append("primary")
        if variant == spec.candidate:
            role.append("candidate")
        if variant in spec.shadows:
            role.append("shadow")
        if spec.policy == "bluegreen" and variant == (state.active or spec.stable):
            role.append("active")
        pct = f"{share[variant]:g}%" if variant in share else ""
        lines.append(f"  {variant:<12} {ref:<28} {pct:>6}  {' '.join(role)}")
    if spec.policy == "canary":
        c = spec.canary
        lines.append(f"  canary: step {state.step + 1}/{len(c.steps)} at {state.weight:g}%, "
                     f"{state.status}, {state.failed_checks} failed check(s) of "
                     f"{c.max_failed_checks}, every {c.interval_s:g} s"
                     + (f" ({state.reason})" if state.reason else ""))
    if spec.policy == "bandit":
        b = spec.bandit
        lines.append(f"  bandit: {b.algorithm}, floor {b.floor:g}, rewards in "
                     f"[{b.reward_min:g}, {b.reward_max:g}]")
    if spec.policy not in ("bluegreen", "canary", "single", "bandit") or spec.key:
        lines.append(f"  sticky key: {spec.key or 'x-modelport-key'}, experiment {spec.salt}")
    return "\n".join(lines)


def _show_result(args: argparse.Namespace, endpoint: Endpoint, verb: str) -> int:
    data = endpoint.to_dict()
    if getattr(args, "dry_run", False):
        data["dry_run"] = True
        emit(args, data, "dry run, nothing changed; the result would be:\n" + _describe(endpoint))
    else:
        emit(args, data, f"{verb}\n" + _describe(endpoint))
    return 0


# ---------------------------------------------------------------------- commands
def _create(args: argparse.Namespace) -> int:
    from modelport.rollout.spec import EndpointSpec

    data = {"name": args.name, "policy": args.policy or "single", "variants": {},
            "description": args.description, **_changes(args)}
    if not data["variants"]:
        raise ConfigurationError(
            f"'modelport endpoint create {args.name}' needs at least one --variant "
            "NAME=MODEL_REF, e.g. --variant blue=fraud@production")
    spec = EndpointSpec.from_dict(data)
    endpoint = _store(args).create(spec, replace_existing=args.replace, dry_run=args.dry_run)
    return _show_result(args, endpoint, "created")


def _list(args: argparse.Namespace) -> int:
    from modelport.rollout.policy import shares

    endpoints = _store(args, read=True).list()
    rows = [{"name": e.name, "policy": e.spec.policy,
             "variants": ", ".join(f"{v}={r}" for v, r in e.spec.variants.items()),
             "shares": ", ".join(f"{v} {s:g}%" for v, s in shares(e.spec, e.state).items()),
             "status": ("paused " if e.state.paused else "") + e.state.status,
             "revision": e.revision} for e in endpoints]
    emit(args, [e.to_dict() for e in endpoints],
         table(rows, ["name", "policy", "variants", "shares", "status", "revision"]))
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _store(args, read=True)
    endpoint = store.get(args.name)
    history = store.history(args.name, limit=10)
    data = {**endpoint.to_dict(), "history": history}
    text = _describe(endpoint)
    if history:
        text += "\n  history:\n" + "\n".join(
            f"    {h['at'][:19]}  {h['action']:<24} {h['actor']}" for h in history)
    emit(args, data, text)
    return 0


def _set(args: argparse.Namespace) -> int:
    changes = _changes(args)
    if not changes:
        raise ConfigurationError(
            f"nothing to change: give 'modelport endpoint set {args.name}' an option such as "
            "--weight, --steps or --policy (see --help)")
    endpoint = _store(args).set(args.name, changes, expected_revision=args.if_revision,
                                dry_run=args.dry_run)
    return _show_result(args, endpoint, "changed")


def _simple(args: argparse.Namespace) -> int:
    store = _store(args)
    kwargs: dict[str, Any] = {"expected_revision": args.if_revision, "dry_run": args.dry_run}
    if args.op == "switch":
        endpoint = store.switch(args.name, args.variant, **kwargs)
    elif args.op == "promote":
        endpoint = store.promote(args.name, args.variant, **kwargs)
    elif args.op == "rollback":
        endpoint = store.rollback(args.name, **kwargs)
    else:
        endpoint = store.pause(args.name, not args.resume, **kwargs)
    verb = {"switch": f"switched to {getattr(args, 'variant', '')}", "promote": "promoted",
            "rollback": "rolled back", "pause": "resumed" if getattr(args, "resume", False)
            else "paused"}[args.op]
    return _show_result(args, endpoint, verb)


def _delete(args: argparse.Namespace) -> int:
    store = _store(args)
    endpoint = store.get(args.name)
    if args.dry_run:
        emit(args, {"deleted": args.name, "dry_run": True},
             f"dry run: would delete endpoint {args.name}")
        return 0
    store.delete(args.name, expected_revision=args.if_revision)
    emit(args, {"deleted": endpoint.name}, f"deleted endpoint {endpoint.name}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import time

    from modelport.rollout import report

    since = time.time() - args.since if args.since else 0.0
    store = _store(args, read=True)
    data = report.build(store, args.name, metric=args.metric, control=args.control,
                        since=since, alpha=args.alpha, feedback=_feedback_source(store))
    emit(args, data, report.render(data))
    return 0


def _feedback_source(store: EndpointStore) -> Any:
    try:
        from modelport.rollout.feedback import feedback_moments
    except ImportError:  # the prediction log is not installed in this build
        return None
    return feedback_moments(store.registry)


def _reward(args: argparse.Namespace) -> int:
    pairs = _pairs(args.rewards, "a reward")
    try:
        rewards = [(k, float(v)) for k, v in pairs.items()]
    except ValueError:
        raise ConfigurationError("rewards are VARIANT=NUMBER, e.g. a=1") from None
    n = _store(args).add_rewards(args.name, rewards)
    emit(args, {"endpoint": args.name, "recorded": n}, f"recorded {n} reward(s)")
    return 0


def load_specs(path: str) -> list[Any]:
    """Endpoint specs from a YAML file: one mapping, a list, or ``{endpoints: [...]}``."""
    import yaml

    from modelport.rollout.spec import EndpointSpec

    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"endpoint file {path!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and "endpoints" in data:
        data = data["endpoints"]
    items = data if isinstance(data, list) else [data]
    specs = []
    for i, item in enumerate(items):
        try:
            specs.append(EndpointSpec.from_dict(item))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}, endpoint {i + 1}: {exc}") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{path} names an endpoint twice")
    return specs


def _apply(args: argparse.Namespace) -> int:
    specs = load_specs(args.file)
    results = _store(args).apply(specs, dry_run=args.dry_run)
    rows = [{"name": n, "change": c} for n, c in results]
    prefix = "dry run, nothing changed:\n" if args.dry_run else ""
    emit(args, {"dry_run": args.dry_run, "endpoints": rows}, prefix + table(rows,
                                                                           ["name", "change"]))
    return 0


def main() -> None:  # pragma: no cover - ``python -m modelport.cli.endpoint``
    from modelport.cli.main import main as run

    sys.exit(run(["endpoint", *sys.argv[1:]]))


__all__ = ["duration", "load_specs", "register"]
