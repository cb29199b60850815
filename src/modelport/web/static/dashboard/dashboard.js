// modelport dashboard: polls ./api/* (read-only JSON) and draws with uPlot and plain SVG.
"use strict";

const POLL_MS = 2000;
const KEEP = 300;  // points kept per live series (10 minutes at 2 s)
const state = { token: sessionStorage.getItem("modelport-token") || "", last: null,
  series: {}, split: {}, charts: {}, driftModel: null };

async function api(name, params) {
  const query = params ? "?" + new URLSearchParams(params) : "";
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const response = await fetch("api/" + name + query, { headers });
  if (response.status === 401 || response.status === 403) {
    document.getElementById("auth").hidden = false;
    throw new Error("this dashboard needs an API key with the read scope");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const c of cells) tr.append(c instanceof Node ? el("td", {}, c) : el("td", {}, c ?? "–"));
    return tr;
  }));
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "(none)")));
}

const fmt = (v, digits = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
  : Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v).toPrecision(digits);

// ------------------------------------------------------------------ live metrics
function quantile(buckets, q) {
  const edges = Object.keys(buckets).map((le) => [le === "+Inf" ? Infinity : Number(le), buckets[le]])
    .sort((a, b) => a[0] - b[0]);
  const total = edges.length ? edges[edges.length - 1][1] : 0;
  if (!total) return null;
  for (const [le, count] of edges) if (count >= q * total) return le === Infinity ? null : le * 1000;
  return null;
}

function delta(now, before) {
  const out = {};
  for (const [le, v] of Object.entries(now)) out[le] = v - ((before && before[le]) || 0);
  return out;
}

function push(name, t, value) {
  const s = state.series[name] || (state.series[name] = [[], []]);
  s[0].push(t); s[1].push(value);
  if (s[0].length > KEEP) { s[0].shift(); s[1].shift(); }
}

function chart(id, names, values) {
  const target = document.getElementById(id);
  const data = [values[0] || [], ...names.map((_, i) => values[i + 1] || [])];
  const colors = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6"];
  const key = id + ":" + names.join(",");
  if (!state.charts[id] || state.charts[id].key !== key) {
    if (state.charts[id]) state.charts[id].plot.destroy();
    target.replaceChildren();
    const plot = new uPlot({ width: 420, height: 180, scales: { x: { time: true } },
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], width: 1.5 }))] },
    data, target);
    state.charts[id] = { plot, key };
  } else {
    state.charts[id].plot.setData(data);
  }
}

function aligned(prefix, names) {
  // every series of one chart shares the time axis of the first
  const first = state.series[prefix + names[0]];
  if (!first) return [[]];
  return [first[0], ...names.map((n) => (state.series[prefix + n] || [[], []])[1])];
}

async function pollLive() {
  const live = await api("live");
  const t = live.at;
  const cards = [];
  const models = Object.keys(live.models).sort();
  for (const name of models) {
    const m = live.models[name];
    const before = state.last && state.last.models[name];
    const dt = state.last ? t - state.last.at : 0;
    if (before && dt > 0) {
      const requests = m.requests - before.requests;
      push("rps:" + name, t, requests / dt);
      push("err:" + name, t, requests > 0 ? (m.errors - before.errors) / requests : 0);
      const window = delta(m.latency_buckets, before.latency_buckets);
      push("p50:" + name, t, quantile(window, 0.5));
      push("p99:" + name, t, quantile(window, 0.99));
    }
    const rps = state.series["rps:" + name];
    cards.push(el("div", { class: "card", "data-model": name }, el("div", { class: "muted" }, name),
      el("b", { id: "total-" + name, "data-total": m.requests }, m.requests.toFixed(0)), " requests  ",
      el("span", { class: "rps" }, rps ? fmt(rps[1][rps[1].length - 1]) + " req/s" : "")));
  }
  document.getElementById("live-cards").replaceChildren(...cards);
  if (models.length) {
    chart("chart-rps", models, aligned("rps:", models));
    chart("chart-errors", models, aligned("err:", models));
    const lat = models.flatMap((n) => ["p50:" + n, "p99:" + n]);
    chart("chart-latency", lat, aligned("", lat));
  }
  const drift = Object.entries(live.drift_psi);
  document.getElementById("live-drift").replaceChildren(...(drift.length ? [el("h3", {}, "Live PSI (last window)"),
    el("p", { class: "muted" }, drift.map(([mv, f]) => mv + ": " + Object.entries(f)
      .sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k, v]) => k + " " + fmt(v)).join(", ")).join(" · "))] : []));
  state.last = live;
}

// ------------------------------------------------------------------ overview
async function pollOverview() {
  const o = await api("overview");
  fill("models", o.models.map((m) => [m.name, m.versions.map((v) => v.version).join(", "),
    Object.entries(m.aliases).map(([a, v]) => a + " → " + v).join(", ")]));
  fill("endpoints", o.endpoints.map((e) => [e.name, e.policy,
    Object.entries(e.shares).map(([v, s]) => v + " " + (100 * s).toFixed(0) + "%").join(" / "),
    e.paused ? "paused" : e.status]));
  const t = Date.now() / 1000;
  const splitNames = [];
  for (const e of o.endpoints) for (const [v, s] of Object.entries(e.shares)) {
    push("split:" + e.name + "/" + v, t, 100 * s); splitNames.push(e.name + "/" + v);
  }
  if (splitNames.length) chart("chart-split", splitNames, aligned("split:", splitNames));
  if (o.endpoints.length) showExperiment(o.endpoints[0].name);
  fill("alerts", o.alerts.rules.map((r) => [r.rule, r.model, r.metric, r.condition, fmt(r.value),
    el("span", { class: "status-" + r.status.replace(/ /g, "-") }, r.status)]));
  fill("history", o.alerts.history.map((h) => [new Date(h.at * 1000).toISOString().slice(0, 19),
    h.kind, h.rule, h.status, JSON.stringify(h.details).slice(0, 80)]));
  const select = document.getElementById("drift-model");
  const names = o.models.map((m) => m.name);
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((n) => el("option", {}, n)));
    if (names.length) { state.driftModel = names[0]; loadDrift(); }
  }
  const rows = [];
  for (const name of names) {
    try {
      const q = await api("quality", { model: name });
      for (const [v, metrics] of Object.entries(q.versions)) {
        const coverage = fmt(100 * metrics.feedback_coverage) + "%";
        const named = Object.entries(metrics).filter(([k]) => k !== "feedback_coverage");
        if (!named.length) rows.push([name, v, "(no labels yet)", "–", coverage]);
        for (const [k, value] of named) rows.push([name, v, k, fmt(value), coverage]);
      }
    } catch (e) { /* a model without logged predictions has no quality yet */ }
  }
  fill("quality", rows);
}

async function showExperiment(name) {
  try {
    const r = await api("experiment", { endpoint: name });
    const lines = r.comparisons.map((c) => c.variant + " vs " + c.control + ": " + c.verdict);
    document.getElementById("experiment").replaceChildren(el("h3", {}, "Experiment: " + name),
      el("p", {}, lines.join(" · ") || "no comparison yet"));
  } catch (e) { document.getElementById("experiment").replaceChildren(); }
}

// ------------------------------------------------------------------ drift heat map
function color(score) {
  if (score === null || score === undefined) return "#eeeeee";
  const x = Math.min(score, 2) / 2;  // 0 .. 2+ → white .. red, 1 is the middle
  const g = Math.round(255 * (1 - x)), b = Math.round(255 * (1 - x));
  return `rgb(255,${g},${b})`;
}

async function loadDrift() {
  const model = document.getElementById("drift-model").value || state.driftModel;
  if (!model) return;
  const target = document.getElementById("heatmap");
  try {
    const d = await api("drift", { model, range: document.getElementById("drift-range").value,
      window: document.getElementById("drift-window").value });
    const cell = 22, left = 170, top = 8;
    const width = left + cell * Math.max(d.windows.length, 1) + 10;
    const height = top + cell * d.features.length + 30;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    d.features.forEach((feature, i) => {
      const row = document.createElementNS(svg.namespaceURI, "g");
      row.setAttribute("class", "row"); row.setAttribute("data-feature", feature);
      const label = document.createElementNS(svg.namespaceURI, "text");
      label.setAttribute("x", 4); label.setAttribute("y", top + i * cell + 15); label.textContent = feature;
      label.addEventListener("click", () => loadHistogram(model, feature));
      row.append(label);
      d.windows.forEach((w, j) => {
        const score = d.scores[j][i];
        const rect = document.createElementNS(svg.namespaceURI, "rect");
        rect.setAttribute("x", left + j * cell); rect.setAttribute("y", top + i * cell);
        rect.setAttribute("width", cell - 2); rect.setAttribute("height", cell - 2);
        rect.setAttribute("fill", color(score));
        rect.setAttribute("class", score !== null && score >= 1 ? "cell drifted" : "cell");
        rect.setAttribute("data-feature", feature); rect.setAttribute("data-score", score ?? "");
        const title = document.createElementNS(svg.namespaceURI, "title");
        title.textContent = `${feature} ${new Date(w.since * 1000).toISOString().slice(0, 16)}: ${fmt(score)} (${w.rows} rows, v${w.version})`;
        rect.append(title); row.append(rect);
      });
      svg.append(row);
    });
    target.replaceChildren(svg);
    const worst = d.features.map((f, i) => [f, Math.max(...d.scores.map((r) => r[i] ?? 0))])
      .sort((a, b) => b[1] - a[1])[0];
    if (worst) loadHistogram(model, worst[0]);
  } catch (e) {
    target.replaceChildren(el("p", { class: "muted" }, e.message));
  }
}

async function loadHistogram(model, feature) {
  const target = document.getElementById("histogram");
  try {
    const h = await api("histogram", { model, feature });
    const labels = h.kind === "numeric" ? h.edges.slice(0, -1).map((e) => fmt(e)) : h.categories;
    const n = labels.length, w = 16, height = 140, left = 10;
    const max = Math.max(...h.reference, ...h.current, 1e-9);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", left + n * (2 * w + 4) + 10); svg.setAttribute("height", height + 20);
    for (let i = 0; i < n; i++) {
      [[h.reference[i], "#9aa5c0", "reference"], [h.current[i], "#dc3912", "current"]].forEach(([v, fillColor, kind], k) => {
        const r = document.createElementNS(svg.namespaceURI, "rect");
        const bar = (v / max) * height;
        r.setAttribute("x", left + i * (2 * w + 4) + k * w); r.setAttribute("y", height - bar);
        r.setAttribute("width", w - 1); r.setAttribute("height", bar); r.setAttribute("fill", fillColor);
        r.setAttribute("class", "bar " + kind);
        const title = document.createElementNS(svg.namespaceURI, "title");
        title.textContent = `${labels[i]}: ${kind} ${fmt(100 * v)}%`; r.append(title); svg.append(r);
      });
    }
    target.replaceChildren(el("h3", {}, `${feature} (v${h.version}): reference (grey) vs last hour (red)`), svg);
  } catch (e) {
    target.replaceChildren(el("p", { class: "muted" }, e.message));
  }
}

// ------------------------------------------------------------------ loop
async function tick() {
  try {
    await pollLive();
    document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("status").textContent = e.message;
  }
}

document.getElementById("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token").value;
  sessionStorage.setItem("modelport-token", state.token);
  document.getElementById("auth").hidden = true;
  start();
});
for (const id of ["drift-model", "drift-range", "drift-window"])
  document.getElementById(id).addEventListener("change", loadDrift);

async function start() {
  await tick();
  try { await pollOverview(); } catch (e) { document.getElementById("status").textContent = e.message; }
}
start();
setInterval(tick, POLL_MS);
setInterval(() => pollOverview().catch(() => {}), 15000);
setInterval(loadDrift, 60000);
