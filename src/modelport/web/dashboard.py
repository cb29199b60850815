"""The web dashboard: one page (``/dashboard``) and the JSON it polls, served by ``modelport serve``
and by ``modelport dashboard`` on its own.

The page (``web/static/dashboard``) draws with the vendored uPlot (``web/static/vendor``), so it
works without internet access. Every API answer is read-only:

========================== ===============================================================
``/dashboard/api/overview`` models, versions and aliases; endpoints with their policy and
                           intended traffic split; alert rules with their states and the
                           latest history
``/dashboard/api/live``    the server's metrics right now (counters and histograms per
                           model, live drift gauges, alert states, quality); the page turns
                           successive answers into requests/s, error rates and latency
                           percentiles
``/dashboard/api/drift``   drift score per feature per window of the prediction log (the
                           heat map; ≥ 1 means drifted)
``/dashboard/api/histogram`` one feature's reference and current histograms on shared bins
``/dashboard/api/quality`` quality per model version from logged feedback, with coverage
``/dashboard/api/experiment`` an endpoint's experiment report (modelport endpoint report)
========================== ===============================================================
"""

from __future__ import annotations

import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import numpy as np
import orjson

from modelport.core.concurrency import run_sync
from modelport.errors import ModelportError, NotFoundError

if TYPE_CHECKING:
    from modelport.monitor.sources import LogMetrics
    from modelport.registry import Registry

log = logging.getLogger("modelport.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
#: files the page may load, by URL name (nothing else under static/ is served)
ASSETS = {
    "dashboard.js": STATIC / "dashboard" / "dashboard.js",
    "dashboard.css": STATIC / "dashboard" / "dashboard.css",
    "uPlot.iife.min.js": STATIC / "vendor" / "uplot" / "uPlot.iife.min.js",
    "uPlot.min.css": STATIC / "vendor" / "uplot" / "uPlot.min.css",
}
_CACHE_SECONDS = 20.0


class Dashboard:
    """The dashboard's ASGI app. ``metrics_text`` returns the Prometheus exposition the page
    shows (the serving app's own, or a scraped server's); the constructor only stores."""

    def __init__(self, registry: Registry, *,
                 metrics_text: Callable[[], Awaitable[str]] | None = None,
                 source: LogMetrics | None = None) -> None:
        self.registry = registry
        self.metrics_text = metrics_text
        self._source = source
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}

    @property
    def source(self) -> LogMetrics:
        if self._source is None:
            from modelport.monitor.sources import LogMetrics

            self._source = LogMetrics(self.registry)
        return self._source

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _send(send, 405, b'{"error": "the dashboard is read-only: use GET"}',
                        "application/json", [(b"allow", b"GET, HEAD")])
            return
        if path in ("", "/"):
            raw = scope.get("raw_path") or scope.get("root_path", "").encode()
            if not raw.split(b"?")[0].endswith(b"/"):  # relative asset URLs need the slash
                where = (scope.get("root_path", "") + "/").encode()
                await _send(send, 307, b"", "text/plain", [(b"location", where)])
                return
            await _send(send, 200, (STATIC / "dashboard" / "index.html").read_bytes(),
                        "text/html; charset=utf-8")
            return
        if path.startswith("/static/"):
            asset = ASSETS.get(path[len("/static/"):])
            if asset is None:
                await _send(send, 404, b'{"error": "no such asset"}', "application/json")
                return
            kind = mimetypes.guess_type(asset.name)[0] or "application/octet-stream"
            await _send(send, 200, asset.read_bytes(), kind,
                        [(b"cache-control", b"max-age=3600")])
            return
        if path.startswith("/api/"):
            await self._api(path[len("/api/"):], scope, send)
            return
        await _send(send, 404, b'{"error": "no such dashboard page"}', "application/json")

    async def _api(self, name: str, scope: dict[str, Any], send: Any) -> None:
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        handlers: dict[str, Callable[[dict[str, str]], Any]] = {
            "overview": self.overview, "drift": self.drift, "histogram": self.histogram,
            "quality": self.quality, "experiment": self.experiment,
        }
        try:
            if name == "live":
                text = await self.metrics_text() if self.metrics_text else ""
                data: Any = await run_sync(None, self.live, text)
            elif name in handlers:
                data = await run_sync(None, self._cached, name, handlers[name], query)
            else:
                raise NotFoundError(f"no dashboard API {name!r}")
        except ModelportError as exc:
            status = 404 if isinstance(exc, NotFoundError) else 400
            await _send(send, status, orjson.dumps({"error": str(exc)}), "application/json")
            return
        await _send(send, 200, orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
                    "application/json", [(b"cache-control", b"no-store")])

    def _cached(self, name: str, handler: Callable[[dict[str, str]], Any],
                query: dict[str, str]) -> Any:
        key = (name, *sorted(query.items()))
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < _CACHE_SECONDS and name != "overview":
            return hit[1]
        value = handler(query)
        self._cache[key] = (now, value)
        return value

    # ---------------------------------------------------------------------------- data
    def overview(self, query: dict[str, str]) -> dict[str, Any]:
        from modelport.monitor.store import MonitorStore
        from modelport.rollout.policy import shares
        from modelport.rollout.store import EndpointStore

        models = []
        for info in self.registry.list_models():
            versions = self.registry.list_versions(info.name)
            models.append({"name": info.name, "aliases": self.registry.aliases(info.name),
                           "versions": [{"version": v.version, "flavor": v.flavor,
                                         "created_at": v.created_at.isoformat()}
                                        for v in versions[-10:]]})
        endpoints = []
        for endpoint in EndpointStore(self.registry).list():
            spec, state = endpoint.spec, endpoint.state
            endpoints.append({"name": spec.name, "policy": spec.policy,
                              "variants": spec.variants, "shares": shares(spec, state),
                              "status": state.status, "paused": state.paused})
        alerts: dict[str, Any] = {"rules": [], "history": []}
        store = MonitorStore(self.registry)
        try:
            _, config = store.config()
        except NotFoundError:
            config = None
        if config is not None:
            states = store.states()
            for rule in config.rules:
                found = states.get(rule.name)
                alerts["rules"].append({
                    "rule": rule.name, "model": rule.model, "metric": rule.metric,
                    "condition": f"{rule.op} {rule.threshold:g}", "severity": rule.severity,
                    "status": found[0].status if found else "not evaluated",
                    "value": found[1] if found else None,
                    "evaluated_at": found[2] if found else None})
            alerts["history"] = [{k: v for k, v in h.items() if k != "id"}
                                 for h in store.history(limit=20)]
        return {"models": models, "endpoints": endpoints, "alerts": alerts,
                "generated_at": time.time()}

    def live(self, text: str) -> dict[str, Any]:
        from prometheus_client.parser import text_string_to_metric_families

        models: dict[str, dict[str, Any]] = {}
        drift: dict[str, dict[str, float]] = {}
        quality: dict[str, dict[str, float]] = {}
        alerts: dict[str, float] = {}

        def model_of(name: str) -> dict[str, Any]:
            return models.setdefault(name, {"requests": 0.0, "errors": 0.0, "rows": 0.0,
                                            "latency_buckets": {}})

        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = s.labels
                if s.name == "modelport_requests_total" and labels.get("version"):
                    entry = model_of(labels["model"])
                    entry["requests"] += s.value
                    status = labels.get("status", "")
                    if (status.isdigit() and int(status) >= 500) or status in (
                            "INTERNAL", "UNAVAILABLE", "UNKNOWN"):
                        entry["errors"] += s.value
                elif s.name == "modelport_request_duration_seconds_bucket":
                    buckets = model_of(labels["model"])["latency_buckets"]
                    buckets[labels["le"]] = buckets.get(labels["le"], 0.0) + s.value
                elif s.name == "modelport_predicted_rows_total":
                    model_of(labels["model"])["rows"] += s.value
                elif s.name == "modelport_drift_psi":
                    key = f"{labels['model']}:{labels['version']}"
                    drift.setdefault(key, {})[labels["feature"]] = s.value
                elif s.name == "modelport_model_quality":
                    key = f"{labels['model']}:{labels['version']}"
                    quality.setdefault(key, {})[labels["metric"]] = s.value
                elif s.name == "modelport_alert_state":
                    alerts[labels["rule"]] = s.value
        return {"at": time.time(), "models": models, "drift_psi": drift, "quality": quality,
                "alert_states": alerts}

    def drift(self, query: dict[str, str]) -> dict[str, Any]:
        from modelport.durations import parse_duration
        from modelport.monitor.sources import drift_score

        model = _required(query, "model")
        hours = parse_duration(query.get("range", "24h"), what="range")
        step = parse_duration(query.get("window", "1h"), what="window")
        if step <= 0 or hours / step > 200:
            raise NotFoundError("choose a window that makes at most 200 windows")
        now = time.time()
        start = now - hours
        windows: list[dict[str, Any]] = []
        features: list[str] = []
        rows: list[list[float | None]] = []
        while start < now:
            end = min(start + step, now)
            found = self.source.drift_report(model, start, end)
            if found is not None:
                version, report = found
                names = list(report.features)
                features = features or names
                windows.append({"since": start, "until": end, "version": version,
                                "rows": report.rows})
                rows.append([drift_score(report.features[n]) if n in report.features else None
                             for n in features])
            start = end
        return {"model": model, "features": features, "windows": windows, "scores": rows}

    def histogram(self, query: dict[str, str]) -> dict[str, Any]:
        from modelport.durations import parse_duration
        from modelport.monitor.drift import NumericReference
        from modelport.monitor.sources import input_columns

        model, feature = _required(query, "model"), _required(query, "feature")
        now = time.time()
        table = self.source.window(model, now - parse_duration(query.get("range", "1h"),
                                                               what="range"), now)
        if table.num_rows == 0:
            raise NotFoundError(f"no logged predictions of {model} in that range")
        version = int(np.nanmax(table.column("version").to_numpy(zero_copy_only=False)))
        reference = self.source.references.require(model, version).features.get(feature)
        current = input_columns(table).get(feature)
        if reference is None or current is None:
            raise NotFoundError(f"{model}:{version} has no feature {feature!r}")
        if isinstance(reference, NumericReference):
            values = np.asarray(current, dtype=np.float64)
            values = values[~np.isnan(values)]
            lo = min(reference.min, float(values.min()) if values.size else reference.min)
            hi = max(reference.max, float(values.max()) if values.size else reference.max)
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 21)
            ref_counts = np.histogram(reference.sorted_values, edges)[0]
            cur_counts = np.histogram(values, edges)[0]
            return {"model": model, "version": version, "feature": feature, "kind": "numeric",
                    "edges": edges.tolist(),
                    "reference": (ref_counts / max(ref_counts.sum(), 1)).tolist(),
                    "current": (cur_counts / max(cur_counts.sum(), 1)).tolist()}
        seen: dict[str, int] = {}
        for value in np.asarray(current, dtype=object).tolist():
            if value is not None:
                seen[str(value)] = seen.get(str(value), 0) + 1
        total = max(sum(seen.values()), 1)
        categories = sorted(set(reference.frequencies) | set(seen))[:50]
        return {"model": model, "version": version, "feature": feature,
                "kind": "categorical", "categories": categories,
                "reference": [reference.frequencies.get(c, 0.0) for c in categories],
                "current": [seen.get(c, 0) / total for c in categories]}

    def quality(self, query: dict[str, str]) -> dict[str, Any]:
        from modelport.durations import parse_duration

        model = _required(query, "model")
        now = time.time()
        span = parse_duration(query.get("range", "24h"), what="range")
        by_version = self.source.quality_by_version(model, now - span, now)
        return {"model": model, "versions": {str(k): v for k, v in by_version.items()}}

    def experiment(self, query: dict[str, str]) -> dict[str, Any]:
        from modelport.rollout.report import build
        from modelport.rollout.store import EndpointStore

        report: dict[str, Any] = build(EndpointStore(self.registry),
                                       _required(query, "endpoint"),
                                       metric=query.get("metric", "latency_ms"))
        return report


def _required(query: dict[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise NotFoundError(f"the dashboard API needs ?{name}=")
    return value


async def _send(send: Any, status: int, body: bytes, content_type: str,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def mount(app: Any) -> Dashboard:
    """Serve the dashboard from a ``ServingApp`` under ``/dashboard`` (its own metrics)."""

    async def metrics_text() -> str:
        rendered: bytes = await run_sync(None, app.metrics.render)
        return rendered.decode()

    dashboard = Dashboard(app.service.registry, metrics_text=metrics_text)
    app.mount("/dashboard", dashboard)
    return dashboard


__all__ = ["ASSETS", "Dashboard", "mount"]
