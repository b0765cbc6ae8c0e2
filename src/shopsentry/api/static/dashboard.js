// shopsentry dashboard: polls /v1/dashboard/summary and draws it with uPlot (vendored).
// Data is only ever put into the page with textContent, never innerHTML.
(function () {
  "use strict";

  const POLL_MS = Number(new URLSearchParams(location.search).get("interval") || 2000);
  const COLORS = { purchases: "#4aa3ff", behavior: "#a371f7", approve: "#3fb950", review: "#d29922",
                   decline: "#f85149", latency: "#4aa3ff", lag: "#a371f7", fraud: "#f85149", fp: "#d29922",
                   sales: "#3fb950" };
  const charts = {};
  const { el, setStatus, storedKey, bindKeyForm } = window.shopsentryPage;
  let apiKey = storedKey();
  let timer = null;

  const $ = (id) => document.getElementById(id);
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString());
  const ms = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(0) + " ms");
  // Every time on the page is dated and in UTC, one format: the events may carry a
  // simulated (accelerated or replayed) clock, and an undated local time beside a dated
  // simulated one reads as nonsense.
  const pad2 = (n) => String(n).padStart(2, "0");
  function utcParts(value) {
    const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return { date: d.getUTCFullYear() + "-" + pad2(d.getUTCMonth() + 1) + "-" + pad2(d.getUTCDate()),
             hm: pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes()), s: pad2(d.getUTCSeconds()) };
  }
  function fmtTime(value) {
    if (value === null || value === undefined) return "–";
    const p = utcParts(value);
    return p.date + " " + p.hm + ":" + p.s + " UTC";
  }
  // Features that tell one reason share its text: group them, summing their pull.
  function reasons(features) {
    const byText = new Map();
    for (const f of features) {
      const text = f.text || f.name;
      const r = byText.get(text) || { text: text, contribution: 0 };
      r.contribution += f.contribution;
      byText.set(text, r);
    }
    return Array.from(byText.values(), (r) => Object.assign(r, {
      direction: r.contribution < 0 ? "lowers" : "raises",
      label: (r.contribution < 0 ? "▼ " : "▲ ") + r.text,
    }));
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers["X-API-Key"] = apiKey;
    if (opts.body) opts.headers["Content-Type"] = "application/json";
    const res = await fetch(path, opts);
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(res.status + " " + detail);
    }
    return res.json();
  }

  // --- charts -------------------------------------------------------------------------
  function chartWidth(id) { return Math.max(320, $(id).clientWidth || 440); }

  // Non-negative quantities: y from 0; a lone point or a flat line still gets a sane box.
  function yRange(u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; }
  // The x range comes from the data itself: a single sample gets ``pad`` seconds either side.
  function xRange(pad) {
    return (u) => {
      const xs = u.data[0] || [];
      if (!xs.length) { const now = Date.now() / 1000; return [now - 3600, now]; }
      const lo = xs[0], hi = xs[xs.length - 1];
      return lo === hi ? [lo - pad, hi + pad] : [lo, hi];
    };
  }

  // Time-axis labels in UTC, one line each, spaced so they never overlap.
  const clockLabels = (withSeconds) => (u, splits) => splits.map((v) => {
    const p = utcParts(v);
    return withSeconds ? p.hm + ":" + p.s : p.hm;
  });
  const dayLabels = (u, splits) => splits.map((v) => utcParts(v).date.slice(5));
  // Tick steps (seconds) that the labels can tell apart: whole minutes for HH:MM,
  // whole days for dates, so no label repeats its neighbour.
  const MINUTE_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  const SECOND_STEPS = [1, 2, 5, 10, 15, 30].concat(MINUTE_STEPS);
  const DAY_STEPS = [86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400];
  function timeAxis(values, space, incrs) {
    return { stroke: "#8b98a5", grid: { stroke: "#26313d" }, values: values, space: space || 70,
             incrs: incrs || MINUTE_STEPS };
  }

  function makeChart(id, series, opts) {
    const o = Object.assign({
      width: chartWidth(id), height: 200,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: { time: true, range: xRange(60) }, y: { range: yRange } },
      series: [{}].concat(series),
      axes: [timeAxis(clockLabels(false)),
             { stroke: "#8b98a5", grid: { stroke: "#26313d" }, size: 60 }],
      legend: { live: false },
    }, opts || {});
    const empty = [[]].concat(series.map(() => []));
    charts[id] = new uPlot(o, empty, $(id));
    return charts[id];
  }

  function line(label, color, extra) {
    // Points are drawn too, so a minute with data next to empty minutes is still visible.
    return Object.assign({ label: label, stroke: color, width: 2, spanGaps: true,
                           points: { show: true, size: 5, fill: color } }, extra || {});
  }

  function bars(label, color) {
    return { label: label, stroke: color, fill: color + "99", width: 1,
             paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } };
  }

  function initCharts() {
    makeChart("chart-events", [line("purchases", COLORS.purchases), line("behaviour", COLORS.behavior)]);
    makeChart("chart-bands", [line("approve", COLORS.approve), line("review", COLORS.review),
                              line("decline", COLORS.decline)]);
    makeChart("chart-latency", [line("p95 ms", COLORS.latency)]);
    makeChart("chart-lag", [line("lag (records)", COLORS.lag)], {
      scales: { x: { time: true, range: xRange(30) }, y: { range: yRange } },
      axes: [timeAxis(clockLabels(true), 90, SECOND_STEPS),
             { stroke: "#8b98a5", grid: { stroke: "#26313d" }, size: 60 }],
    });
    makeChart("chart-rates", [line("fraud rate %", COLORS.fraud), line("false-positive rate %", COLORS.fp)]);
    // Bars are centred on their day: half a day of room either side keeps the first and
    // last bars whole.
    makeChart("chart-sales", [bars("revenue", COLORS.sales)], {
      scales: { x: { time: true, range: (u) => {
        const xs = u.data[0] || [];
        if (!xs.length) { const now = Date.now() / 1000; return [now - 86400, now]; }
        return [xs[0] - 43200, xs[xs.length - 1] + 43200];
      } }, y: { range: yRange } },
      axes: [timeAxis(dayLabels, 50, DAY_STEPS),
             { stroke: "#8b98a5", grid: { stroke: "#26313d" }, size: 60 }],
    });
    window.addEventListener("resize", () => {
      for (const id in charts) charts[id].setSize({ width: chartWidth(id), height: 200 });
    });
    window.shopsentryCharts = charts;  // for the browser test and for poking at in devtools
  }

  const toPct = (arr) => arr.map((v) => (v === null ? null : 100 * v));

  function drawCharts(s) {
    const x = s.series.t;
    charts["chart-events"].setData([x, s.series.events_per_minute.purchases, s.series.events_per_minute.behavior]);
    const b = s.series.decisions_by_band;
    charts["chart-bands"].setData([x, b.approve, b.review, b.decline]);
    charts["chart-latency"].setData([x, s.series.latency_p95_ms]);
    charts["chart-lag"].setData([s.consumer_lag.t, s.consumer_lag.lag]);
    charts["chart-rates"].setData([x, toPct(s.series.fraud_rate), toPct(s.series.false_positive_rate)]);
    const days = s.daily_sales.rows.map((r) => Date.parse(r.day + "T00:00:00Z") / 1000);
    charts["chart-sales"].setData([days, s.daily_sales.rows.map((r) => r.revenue)]);
    $("sales-source").textContent = "(" + s.daily_sales.source + ")";
  }

  // --- KPIs and the alert queue -----------------------------------------------------------
  function drawKpis(s) {
    const t = s.totals;
    $("kpi-decisions").textContent = num(t.decisions);
    $("kpi-alerts").textContent = num(t.alerts);
    $("kpi-open").textContent = num(t.open);
    $("kpi-reviewed").textContent = num(t.reviewed);
    $("kpi-fraud-rate").textContent = pct(t.fraud_rate);
    $("kpi-fp-rate").textContent = pct(t.false_positive_rate);
    $("kpi-p95").textContent = ms(t.latency_p95_ms);
    $("kpi-ingested").textContent = num(s.ingested_total);
  }

  let reviewsInFlight = 0;

  async function review(alertId, verdict, row) {
    const buttons = row.querySelectorAll("button");
    for (const btn of buttons) btn.disabled = true;
    reviewsInFlight++;
    try {
      const updated = await api("/v1/alerts/" + encodeURIComponent(alertId) + "/review", {
        method: "POST", body: JSON.stringify({ verdict: verdict, note: "reviewed from the dashboard" }),
      });
      row.className = "reviewed";
      row.dataset.status = updated.status;
      row.querySelector(".status-cell").textContent = "reviewed: " + updated.verdict;
      for (const btn of buttons) btn.remove();
    } catch (err) {
      setStatus("review failed: " + err.message, false);
      for (const btn of buttons) btn.disabled = false;
    } finally {
      reviewsInFlight--;
    }
  }

  async function showDetail(alertId) {
    const box = $("alert-detail");
    box.hidden = false;
    box.replaceChildren(el("p", "loading " + alertId + "…"));
    try {
      const a = await api("/v1/alerts/" + encodeURIComponent(alertId));
      const parts = [el("h2", a.alert_id + " · " + a.user_id + " · " + a.amount.toFixed(2) + " " + a.currency)];
      parts.push(el("p", "score " + a.probability.toFixed(3) + " (" + a.band + ", model " + a.model_version + ")"));
      parts.push(el("p", "event time " + fmtTime(a.occurred_at) + " · decided " + fmtTime(a.decided_at)));
      if (a.rules_fired.length || a.shadow_rules_fired.length) {
        const by = a.rules_fired.length ? "decided by rule " + a.rules_fired.join(", ") : "no active rule";
        const shadow = a.shadow_rules_fired.length ? " · in shadow: " + a.shadow_rules_fired.join(", ") : "";
        const model = a.model_band && a.model_band !== a.band ? " · the model alone said " + a.model_band : "";
        parts.push(el("p", by + shadow + model + " (rule set v" + a.rule_set_version + ")", "rules-fired"));
      }
      const feats = el("ul");
      for (const r of reasons(a.top_features)) {
        const item = el("li", r.label, r.direction);
        item.append(el("span", "  " + r.direction + " risk (" + (r.contribution >= 0 ? "+" : "") +
                               r.contribution.toFixed(2) + ")", "sub"));
        feats.append(item);
      }
      parts.push(el("h2", "Why it was flagged"), feats);
      const hist = el("ul");
      for (const h of a.history) hist.append(el("li", fmtTime(h.occurred_at) + " · " + h.amount.toFixed(2) + " " + h.currency + " · " + (h.band || "undecided")));
      parts.push(el("h2", "Recent history of " + a.user_id), hist);
      box.replaceChildren(...parts);
    } catch (err) {
      box.replaceChildren(el("p", "cannot load " + alertId + ": " + err.message));
    }
  }

  function drawQueue(s) {
    const body = $("alert-table").querySelector("tbody");
    const rows = [];
    for (const a of s.alert_queue) {
      const tr = el("tr", null, a.status === "reviewed" ? "reviewed" : "");
      tr.dataset.alertId = a.alert_id;
      tr.dataset.status = a.status;
      tr.append(el("td", fmtTime(a.decided_at), "time"));
      const idCell = el("td");
      const link = el("a", a.alert_id);
      link.addEventListener("click", () => showDetail(a.alert_id));
      idCell.append(link);
      tr.append(idCell, el("td", a.user_id), el("td", a.amount.toFixed(2) + " " + a.currency),
                el("td", a.probability.toFixed(3)));
      const sev = el("td"); sev.append(el("span", a.severity, "sev-" + a.severity)); tr.append(sev);
      const why = el("td", null, "reasons");
      for (const r of reasons(a.top_features).slice(0, 3)) why.append(el("div", r.label, r.direction));
      tr.append(why);
      tr.append(el("td", a.status === "reviewed" ? "reviewed: " + a.verdict : "open", "status-cell"));
      const actions = el("td");
      if (a.status !== "reviewed") {
        const fraud = el("button", "Confirm fraud", "fraud review-fraud");
        const fp = el("button", "False positive", "fp review-fp");
        fraud.addEventListener("click", () => review(a.alert_id, "confirmed_fraud", tr));
        fp.addEventListener("click", () => review(a.alert_id, "false_positive", tr));
        actions.append(fraud, " ", fp);
      }
      tr.append(actions);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("queue-count").textContent = "(" + s.totals.open + " open)";
  }

  // --- polling ----------------------------------------------------------------------------
  async function refresh() {
    if (!apiKey) { setStatus("enter an analyst key", false); return; }
    try {
      const s = await api("/v1/dashboard/summary");
      drawKpis(s);
      drawCharts(s);
      // Do not rebuild the table under a review request that is still in flight.
      if (!reviewsInFlight) drawQueue(s);
      $("updated").textContent = "updated " + fmtTime(s.generated_at);
      setStatus("connected", true);
    } catch (err) {
      setStatus(err.message, false);
    }
  }

  function start() {
    if (timer) clearInterval(timer);
    refresh();
    timer = setInterval(refresh, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    initCharts();
    bindKeyForm((key) => { apiKey = key; start(); });
    start();
  });
})();
