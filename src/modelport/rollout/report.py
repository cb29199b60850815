"""The experiment report of an endpoint: per-variant counts and means of a metric, the
difference against a control variant with a confidence interval and an always-valid p-value,
a sample-ratio-mismatch check, and shadow agreement.

Metrics: ``latency_ms`` and ``error_rate`` from the traffic every worker records, ``reward``
from bandit rewards, or any feedback metric through ``feedback`` (a callable the prediction log
provides: ``(endpoint, since) -> {variant: Moments}``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelport.errors import ConfigurationError
from modelport.rollout.policy import shares
from modelport.rollout.stats import Moments, compare, sample_ratio_mismatch
from modelport.rollout.store import EndpointStore
from modelport.rollout.telemetry import VariantStats

FeedbackSource = Callable[[str, str, float], Mapping[str, Moments]]
BUILTIN_METRICS = ("latency_ms", "error_rate", "reward")
#: metrics where lower is better (the verdict names the better variant accordingly)
LOWER_IS_BETTER = {"latency_ms", "error_rate", "abs_error", "squared_error"}


def traffic_moments(stats: VariantStats, metric: str) -> Moments:
    if metric == "error_rate":
        return Moments(stats.requests, float(stats.errors), float(stats.errors))
    return Moments(stats.requests, stats.latency_sum, stats.latency_sq)


def build(store: EndpointStore, name: str, *, metric: str = "latency_ms",
          control: str | None = None, since: float = 0.0, alpha: float = 0.05,
          feedback: FeedbackSource | None = None, now: float | None = None) -> dict[str, Any]:
    """The report as plain data (``--json`` prints it as it is)."""
    endpoint = store.get(name)
    spec, state = endpoint.spec, endpoint.state
    traffic = store.traffic(name, since=since)
    if metric in ("latency_ms", "error_rate"):
        moments = {v: traffic_moments(s, metric) for v, s in traffic.items()}
    elif metric == "reward" and (store.reward_moments(name) or feedback is None):
        moments = store.reward_moments(name)
    elif feedback is not None:
        moments = dict(feedback(name, metric, since))
    else:
        raise ConfigurationError(
            f"unknown metric {metric!r}: use {', '.join(BUILTIN_METRICS)} or a feedback metric "
            "logged with the prediction log ('modelport feedback ...')")
    answering = spec.answering()
    control = control or spec.stable
    if control not in spec.variants:
        raise ConfigurationError(f"--control {control!r} is not a variant of {name!r}")
    variants = []
    for v in answering:
        m = moments.get(v, Moments(0, 0.0, 0.0))
        s = traffic.get(v, VariantStats())
        variants.append({"variant": v, "ref": spec.variants[v], "requests": s.requests,
                         "errors": s.errors, "n": m.n, "mean": _finite(m.mean),
                         "sd": _finite(math.sqrt(m.variance)) if m.n > 1 else None,
                         "p99_ms": s.p99_ms})
    comparisons = []
    base = moments.get(control, Moments(0, 0.0, 0.0))
    for v in answering:
        if v == control:
            continue
        result = compare(base, moments.get(v, Moments(0, 0.0, 0.0)), alpha=alpha)
        entry = {"variant": v, "control": control, **_plain(result.to_dict())}
        entry["verdict"] = _verdict(metric, v, control, result.significant, result.difference)
        comparisons.append(entry)
    intended = shares(spec, state)
    observed = {v: traffic.get(v, VariantStats()).requests for v in answering}
    srm = sample_ratio_mismatch(observed, intended) if spec.policy == "split" else None
    shadows = {v: s.summary() for v, s in store.shadow_traffic(name, since=since).items()}
    return {"endpoint": name, "policy": spec.policy, "metric": metric, "alpha": alpha,
            "since": since, "generated_at": now if now is not None else time.time(),
            "state": state.to_dict(), "intended_shares": intended, "variants": variants,
            "comparisons": comparisons,
            "sample_ratio": srm.to_dict() if srm is not None else None,
            "shadows": shadows,
            "method": "mSPRT always-valid p-value (valid under continuous monitoring); "
                      "Welch normal interval and always-valid confidence sequence"}


def _verdict(metric: str, variant: str, control: str, significant: bool,
             difference: float) -> str:
    if not significant:
        return (f"no significant difference between {variant} and {control} yet "
                "(safe to keep watching)")
    better = (difference < 0) == (metric in LOWER_IS_BETTER)
    return f"{variant} is significantly {'better' if better else 'worse'} than {control}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    def fix(v: Any) -> Any:
        if isinstance(v, float):
            return _finite(v)
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return {k: fix(v) for k, v in data.items()}


def render(report: Mapping[str, Any]) -> str:
    """The human-readable form."""
    lines = [f"endpoint {report['endpoint']} ({report['policy']}), metric {report['metric']}"]
    lines.append(f"{'VARIANT':<12} {'REQUESTS':>9} {'ERRORS':>7} {'N':>8} {'MEAN':>12} "
                 f"{'P99 MS':>8}")
    for v in report["variants"]:
        mean = "-" if v["mean"] is None else f"{v['mean']:.6g}"
        p99 = "-" if v["p99_ms"] is None else f"{v['p99_ms']:.1f}"
        lines.append(f"{v['variant']:<12} {v['requests']:>9} {v['errors']:>7} {v['n']:>8} "
                     f"{mean:>12} {p99:>8}")
    for c in report["comparisons"]:
        lo, hi = c["always_valid_ci"]
        ci = ("(-inf, inf)" if lo is None or hi is None else f"[{lo:.4g}, {hi:.4g}]")
        diff = "-" if c["difference"] is None else f"{c['difference']:+.4g}"
        lines.append(f"{c['variant']} - {c['control']}: {diff}, always-valid "
                     f"{1 - report['alpha']:.0%} CI {ci}, p = {c['always_valid_p_value']:.4g}: "
                     f"{c['verdict']}")
    srm = report.get("sample_ratio")
    if srm is not None:
        lines.append(("SAMPLE RATIO MISMATCH: " if srm["mismatch"] else "sample ratio ok: ")
                     + f"observed {srm['observed']}, chi2 p = {srm['p_value']:.3g}")
    for name, s in report.get("shadows", {}).items():
        agree = "-" if s["agreement"] is None else f"{s['agreement']:.2%}"
        lines.append(f"shadow {name}: compared {s['compared']}, agreement {agree}, "
                     f"errors {s['errors']}, dropped {s['dropped']}")
    return "\n".join(lines)


__all__ = ["BUILTIN_METRICS", "build", "render"]
