// shopsentry dashboard, model-ops panels: live quality (champion and challenger, with
// label maturity) and drift (PSI per feature against the model's training reference),
// from /v1/models/quality and /v1/models/drift. The warehouse changes with the batch
// jobs, not by the second, so these poll every 30 s. Text only via textContent (page.js).
(function () {
  "use strict";

  const POLL_MS = Number(new URLSearchParams(location.search).get("modelops_interval") || 30000);
  const DAYS = 7;
  const $ = (id) => document.getElementById(id);
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
  const dec = (v, n) => (v === null || v === undefined ? "–" : Number(v).toFixed(n));
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString());
  const page = window.shopsentryPage;  // page.js: text-only nodes, the tab's key
  const key = page.storedKey;
  const cell = (text, cls) => page.el("td", text === null || text === undefined ? "–" : text, cls);

  function row(cells, cls) {
    const tr = page.el("tr", null, cls);
    tr.append(...cells);
    return tr;
  }

  async function get(path) {
    const res = await fetch(path, { headers: { "X-API-Key": key() } });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(res.status + " " + detail);
    }
    return res.json();
  }

  function message(tableId, text, columns) {
    const td = cell(text);
    td.colSpan = columns;
    $(tableId).querySelector("tbody").replaceChildren(row([td]));
  }

  function recentDays(rows) {
    const days = Array.from(new Set(rows.map((r) => r.day))).sort();
    return new Set(days.slice(-DAYS));
  }

  function drawQuality(q) {
    $("quality-as-of").textContent = q.as_of ? "(labels known by " + q.as_of.replace("T", " ").slice(0, 16) + " UTC)" : "";
    const keep = recentDays(q.rows);
    const rows = q.rows.filter((r) => keep.has(r.day)).reverse().map((r) => row([
      cell(r.day), cell(r.model_role + " v" + r.model_version), cell(num(r.purchases), "num"),
      cell(num(r.alerts), "num"), cell(num(r.labelled_frauds), "num"),
      cell(pct(r.precision_at_threshold), "num"), cell(pct(r.recall_at_threshold), "num"),
      cell(dec(r.pr_auc, 3), "num"), cell(pct(r.label_maturity), "num"),
    ], (r.label_maturity !== null && r.label_maturity < 0.5 ? "immature " : "") + "role-" + r.model_role));
    if (rows.length) $("quality-table").querySelector("tbody").replaceChildren(...rows);
    else message("quality-table", "no decisions in the warehouse yet", 9);
    const cmp = q.comparison.filter((r) => keep.has(r.day)).reverse().map((r) => row([
      cell(r.day), cell("v" + r.champion_version + " vs v" + r.challenger_version), cell(num(r.purchases), "num"),
      cell(pct(r.champion_precision) + " / " + pct(r.challenger_precision), "num"),
      cell(pct(r.champion_recall) + " / " + pct(r.challenger_recall), "num"),
      cell(dec(r.champion_pr_auc, 3) + " / " + dec(r.challenger_pr_auc, 3), "num"),
      cell(pct(r.label_maturity), "num"),
    ]));
    if (cmp.length) $("comparison-table").querySelector("tbody").replaceChildren(...cmp);
    else message("comparison-table", "no challenger scored these days", 7);
    const scores = q.score_drift.filter((r) => keep.has(r.day)).reverse().map((r) => row([
      cell(r.day), cell(r.model_role + " v" + r.model_version), cell(dec(r.psi, 3), "num"),
    ]));
    if (scores.length) $("score-drift-table").querySelector("tbody").replaceChildren(...scores);
    else message("score-drift-table", "no scores yet", 3);
  }

  function drawDrift(d) {
    $("drift-day").textContent = d.day ? "(" + d.day + ", against v" + d.model_version + "'s training reference)" : "";
    $("drift-note").textContent = "Alert: PSI > " + d.feature_psi_alert + " on a top-" + d.top_features +
      " feature, score PSI > " + d.score_psi_alert + ". Highest PSI first.";
    const shown = d.features.slice(0, 15);
    const scale = Math.max(d.feature_psi_alert * 2, ...shown.map((f) => f.psi || 0));
    const rows = shown.map((f) => {
      const bar = page.el("span", null, "bar");
      bar.style.width = Math.round(120 * Math.min(1, (f.psi || 0) / scale)) + "px";
      const barCell = cell("");
      barCell.append(bar);
      const watched = f.importance_rank !== null && f.importance_rank <= d.top_features;
      const drifted = watched && f.psi !== null && f.psi > d.feature_psi_alert;
      const tr = row([
        cell(f.feature), cell(f.importance_rank === null ? "unused" : f.importance_rank, "num"),
        cell(dec(f.psi, 3), "num"), barCell,
        cell(pct(f.missing_share) + " / " + pct(f.reference_missing_share), "num"),
      ], drifted ? "drifted" : "");
      tr.dataset.feature = f.feature;
      return tr;
    });
    if (rows.length) $("drift-table").querySelector("tbody").replaceChildren(...rows);
    else message("drift-table", "no drift computed yet (shopsentry batch run model_monitoring)", 5);
  }

  async function refresh() {
    if (!key()) return;
    try { drawQuality(await get("/v1/models/quality")); } catch (err) { message("quality-table", err.message, 9); }
    try { drawDrift(await get("/v1/models/drift")); } catch (err) { message("drift-table", err.message, 5); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", () => setTimeout(refresh, 0));
    refresh();
    setInterval(refresh, POLL_MS);
  });
})();
