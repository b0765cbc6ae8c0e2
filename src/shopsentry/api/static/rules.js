// shopsentry rules page: the rule set with hit counts (GET /v1/rules), an editor that
// checks the expression as it is typed (POST /v1/rules/check), a backtest drawn with
// uPlot (POST /v1/rules/backtest), save in shadow, and shadow → active (admins).
// Data is only ever put into the page with textContent, never innerHTML.
(function () {
  "use strict";

  const POLL_MS = Number(new URLSearchParams(location.search).get("interval") || 3000);
  const CHECK_DELAY_MS = 200;
  const { el, setStatus, storedKey, bindKeyForm } = window.shopsentryPage;
  let apiKey = storedKey();  // shared with the live dashboard
  let timer = null;
  let checkTimer = null;
  let checkSeq = 0;
  let chart = null;

  const $ = (id) => document.getElementById(id);
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString());
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
  const money = (v) => Number(v).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  const say = (text, ok) => setStatus(text, ok, "rules-message");

  // One request: {ok, status, body}. A 4xx names the field in body.errors[].
  async function call(method, path, body) {
    const opts = { method: method, headers: { "X-API-Key": apiKey } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    return { ok: res.ok, status: res.status, body: data };
  }

  function problem(answer) {
    const b = answer.body || {};
    if (b.errors && b.errors.length) return b.errors.map((e) => e.field + ": " + e.reason).join("; ");
    return answer.status + " " + (b.detail || "request failed");
  }

  // --- the rule list -------------------------------------------------------------------
  async function refresh() {
    if (!apiKey) { setStatus("enter an API key", false); return; }
    const answer = await call("GET", "/v1/rules").catch((e) => ({ ok: false, status: 0, body: { detail: e.message } }));
    if (!answer.ok) { setStatus(problem(answer), false); return; }
    setStatus("connected", true);
    drawRules(answer.body);
    $("updated").textContent = "updated " + new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function modeOf(rule) { return rule.enabled ? rule.mode : "disabled"; }

  function drawRules(view) {
    $("rules-version").textContent = "(rule-set version " + view.version + ")";
    $("hits-window").textContent = "· hits since " + view.hits_since.slice(0, 16).replace("T", " ") + " UTC";
    const rows = [];
    for (const r of view.rules) {
      const mode = modeOf(r);
      const tr = el("tr", null, mode === "disabled" ? "disabled" : "");
      tr.dataset.rule = r.name;
      tr.dataset.mode = mode;
      tr.append(el("td", r.priority, "num"), el("td", r.name, "name"));
      tr.append(el("td", mode, "mode mode-" + mode), el("td", r.action, "action"));
      tr.append(el("td", r.expression, "expr"));
      tr.append(el("td", num(r.hits.active), "num hits-active"), el("td", num(r.hits.shadow), "num hits-shadow"));
      tr.append(el("td", r.owner));
      const actions = el("td", null, "actions");
      const edit = el("button", "Edit", "secondary edit");
      edit.type = "button";
      edit.addEventListener("click", () => load(r));
      actions.append(edit);
      if (mode !== "active") actions.append(" ", button("Activate", "activate", r.name, "activate"));
      if (mode === "active") actions.append(" ", button("Shadow", "shadow", r.name, "shadow"));
      if (mode !== "disabled") actions.append(" ", button("Disable", "disable", r.name, "disable"));
      tr.append(actions);
      rows.push(tr);
    }
    $("rules-table").querySelector("tbody").replaceChildren(...rows);
  }

  function button(label, cls, name, change) {
    const b = el("button", label, cls);
    b.type = "button";
    b.addEventListener("click", () => changeMode(name, change, b));
    return b;
  }

  async function changeMode(name, change, btn) {
    btn.disabled = true;
    const answer = await call("POST", "/v1/rules/" + encodeURIComponent(name) + "/" + change);
    if (answer.ok) {
      say(name + " is " + modeOf(answer.body.rule) + " (rule-set version " + answer.body.version + ")", true);
    } else if (answer.status === 403 && change === "activate") {
      say("activating " + name + " needs an admin key: " + problem(answer), false);
    } else {
      say(change + " " + name + " failed: " + problem(answer), false);
    }
    btn.disabled = false;
    await refresh();
  }

  function load(rule) {
    $("rule-name").value = rule.name;
    $("rule-action").value = rule.action;
    $("rule-priority").value = rule.priority;
    $("rule-note").value = rule.note;
    $("rule-expression").value = rule.expression;
    scheduleCheck();
  }

  // --- the editor: parse errors as you type ---------------------------------------------
  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, CHECK_DELAY_MS);
  }

  async function check() {
    const expression = $("rule-expression").value;
    const box = $("rule-check");
    const caret = $("rule-caret");
    if (!expression.trim()) { box.textContent = ""; caret.hidden = true; return; }
    const seq = ++checkSeq;
    const answer = await call("POST", "/v1/rules/check", { expression: expression });
    if (seq !== checkSeq) return;  // a newer keystroke's answer is on its way
    const area = $("rule-expression");
    if (!answer.ok) { box.textContent = problem(answer); box.className = "check bad"; return; }
    const r = answer.body;
    area.setAttribute("aria-invalid", r.ok ? "false" : "true");
    box.dataset.ok = String(r.ok);
    if (r.ok) {
      box.textContent = "✓ parses and type-checks";
      box.className = "check ok";
      caret.hidden = true;
      return;
    }
    box.dataset.line = r.line;
    box.dataset.column = r.column;
    box.textContent = "line " + r.line + ", column " + r.column + ": " + r.reason;
    box.className = "check bad";
    // The offending line with a caret under the column.
    const line = expression.split("\n")[r.line - 1] || "";
    caret.textContent = line + "\n" + " ".repeat(Math.max(r.column - 1, 0)) + "^";
    caret.hidden = false;
  }

  function draft() {
    return {
      name: $("rule-name").value.trim(),
      expression: $("rule-expression").value,
      action: $("rule-action").value,
      priority: Number($("rule-priority").value || 100),
      note: $("rule-note").value,
    };
  }

  async function save(ev) {
    ev.preventDefault();
    const body = Object.assign(draft(), { mode: "shadow" });
    const answer = await call("POST", "/v1/rules", body);
    if (answer.ok) {
      say("saved " + answer.body.rule.name + " in shadow (rule-set version " + answer.body.version + ")", true);
      await refresh();
    } else {
      say("not saved: " + problem(answer), false);
    }
  }

  // --- backtest -------------------------------------------------------------------------
  async function backtest() {
    const d = draft();
    const body = { expression: d.expression, action: d.action };
    if ($("bt-since").value) body.since = $("bt-since").value;
    if ($("bt-until").value) body.until = $("bt-until").value;
    const btn = $("backtest-btn");
    btn.disabled = true;
    say("backtesting…", true);
    const answer = await call("POST", "/v1/rules/backtest", body);
    btn.disabled = false;
    if (!answer.ok) { say("backtest failed: " + problem(answer), false); return; }
    say("backtested over " + num(answer.body.total.purchases) + " past purchases", true);
    drawBacktest(answer.body);
  }

  function tile(label, value, id) {
    const k = el("div", null, "kpi");
    k.append(el("span", label, "label"));
    const v = el("span", value, "value");
    v.id = id;
    k.append(v);
    return k;
  }

  function drawBacktest(result) {
    const t = result.total;
    $("backtest").hidden = false;
    $("bt-window").textContent = "(" + (result.since || "start") + " → " + (result.until || "now") +
      ", " + result.days.length + " days, action " + result.action + ")";
    $("bt-totals").replaceChildren(
      tile("Purchases hit", num(t.hits), "bt-hits"),
      tile("Known fraud caught", num(t.fraud_caught) + " of " + num(t.fraud_known), "bt-caught"),
      tile("Precision", pct(t.precision), "bt-precision"),
      tile("Extra reviews", num(t.extra_reviews), "bt-extra"),
      tile("Overlap with model", num(t.overlap_with_model), "bt-overlap"),
      tile("Amount saved", money(t.amount_saved), "bt-saved"),
      tile("Blocked wrongly", money(t.amount_blocked_wrongly), "bt-wrong"),
      tile("Errors", num(t.errors), "bt-errors"),
    );
    const x = result.days.map((d) => Date.parse(d.day + "T00:00:00Z") / 1000);
    const data = [x, result.days.map((d) => d.hits), result.days.map((d) => d.fraud_caught)];
    if (!chart) chart = makeChart();
    chart.setData(data);
    window.shopsentryBacktestChart = chart;  // for the browser test
  }

  function makeChart() {
    const host = $("chart-backtest");
    const opts = {
      width: Math.max(320, host.clientWidth || 600), height: 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: {
        x: { time: true, range: (u) => {
          const xs = u.data[0] || [];
          if (!xs.length) { const now = Date.now() / 1000; return [now - 86400, now]; }
          return [xs[0] - 43200, xs[xs.length - 1] + 43200];
        } },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      series: [{},
        { label: "hits", stroke: "#d29922", fill: "#d2992299", width: 1,
          paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false } },
        { label: "fraud caught", stroke: "#f85149", width: 2, points: { show: true, size: 5, fill: "#f85149" } }],
      axes: [{ stroke: "#8b98a5", grid: { stroke: "#26313d" }, space: 50,
               incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400],
               values: (u, splits) => splits.map((v) => new Date(v * 1000).toISOString().slice(5, 10)) },
             { stroke: "#8b98a5", grid: { stroke: "#26313d" }, size: 50 }],
      legend: { live: false },
    };
    return new uPlot(opts, [[], [], []], host);
  }

  function start() {
    if (timer) clearInterval(timer);
    refresh();
    timer = setInterval(refresh, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    bindKeyForm((key) => { apiKey = key; start(); });
    $("rule-expression").addEventListener("input", scheduleCheck);
    $("rule-form").addEventListener("submit", save);
    $("backtest-btn").addEventListener("click", backtest);
    start();
  });
})();
