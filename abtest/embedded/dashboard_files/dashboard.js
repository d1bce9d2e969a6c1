"use strict";
// The abtest dashboard: every few seconds, the endpoints /admin/list names and, for the one
// picked (a button per endpoint when there are several), POST /stats, /history and
// /admin/show of the API that served the page, drawn as a table, the decision, three
// plotly.js charts, the lifecycle state with the actions allowed now (from the server's
// `allowed_actions`: the page never decides what is legal) and the audit log.
(function () {
  const settings = window.ABTEST;
  // A server started with --token needs it: open /dashboard#token=TOKEN (never sent as a URL).
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  // The endpoint shown, kept in the fragment (#endpoint=NAME) so a reload or a link keeps it;
  // the first one listed until one is picked.
  let picked = new URLSearchParams(location.hash.slice(1)).get("endpoint");
  // One colour per variant, the same in every chart (plotly's own default sequence).
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const CONFIG = { displaylogo: false, responsive: true };
  const main = document.getElementById("endpoints");
  // Linked only where /docs is served (not by `abtest dashboard`'s local proxy).
  document.getElementById("docs").hidden = !settings.docs;

  async function post(route, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(route, { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401) throw new Error("this server needs its token: open /dashboard#token=TOKEN");
    if (!response.ok) {
      throw new Error(`${response.status}: ${answer.message || response.statusText}`);
    }
    return answer;
  }

  const percent = (x, digits) => (x === null || x === undefined ? "–" : (100 * x).toFixed(digits) + " %");
  const fixed = (x, digits) => (x === null || x === undefined ? "–" : x.toFixed(digits));

  function element(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== undefined && value !== null) node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  // The decision's estimate of a variant's rate and its interval: `estimate` and
  // `estimate_interval` where the statistics report them, the Beta posterior's otherwise.
  function estimateOf(figures) {
    return {
      estimate: figures.estimate ?? figures.posterior_mean ?? null,
      interval: figures.estimate_interval ?? figures.credible_interval ?? null,
    };
  }

  function section(name) {
    let node = document.getElementById("endpoint-" + name);
    if (node) return node;
    node = element("section", { id: "endpoint-" + name, class: "endpoint", "data-endpoint": name },
      element("h2", {}, name),
      element("div", { class: "summary muted" }),
      element("div", { class: "decision" }),
      element("table", { class: "variants" }),
      element("div", { class: "charts" },
        element("div", { class: "chart", id: "chart-allocation-" + name }),
        element("div", { class: "chart", id: "chart-probability-" + name }),
        element("div", { class: "chart", id: "chart-estimate-" + name })),
      element("div", { class: "lifecycle", "data-hook": "lifecycle", hidden: "" },
        element("h3", {}, "Lifecycle"),
        element("div", { class: "state", "data-field": "state" }),
        element("form", { class: "actions" }),
        element("p", { class: "result", "data-field": "result" }),
        element("h3", {}, "Audit log"),
        element("table", { class: "audit" })),
      element("p", { class: "error" }));
    main.append(node);
    return node;
  }

  function renderSummary(node, stats, latest) {
    const params = Object.entries(stats.strategy_params).map(([k, v]) => `${k} ${v}`).join(", ");
    const warming = latest && latest.warming_up ? " · warming up (WeightedSampling)" : "";
    node.querySelector(".summary").textContent =
      // (Not /stats' `status`, which says registered: the lifecycle block has the state.)
      `${stats.strategy}${params ? " (" + params + ")" : ""}` +
      ` · warm-up ${stats.warmup} ${stats.settings.unit}s${warming}`;
    const d = stats.decision;
    const box = node.querySelector(".decision");
    box.className = "decision" + (d.winner ? " winner" : "");
    box.replaceChildren(
      element("strong", { "data-field": "decision" },
        d.winner ? `Winner: ${d.winner}` : `No winner yet (${d.reason.replaceAll("_", " ")})`),
      element("div", { "data-field": "advice" }, d.advice || ""));
  }

  function renderTable(node, stats, admin) {
    const figures = Object.fromEntries(stats.decision.variants.map((v) => [v.variant_name, v]));
    // `users` appears in /stats with the per-user counters; shown once it is there.
    const hasUsers = stats.variant_metrics.some((m) => m.users !== undefined);
    const head = element("tr", {}, ...["Variant", ...(hasUsers ? ["Users"] : []), "Invocations",
      "Conversions", "Rate (95 % interval)", "P(best)", "Allocation", "Model errors",
      "Latency p99"].map((h) => element("th", {}, h)));
    const rows = stats.variant_metrics.map((m) => {
      const f = figures[m.variant_name] || {};
      const { estimate, interval } = estimateOf(f);
      const cell = (field, value, text, extra) =>
        element("td", { "data-field": field, "data-value": value, ...extra }, text);
      const retired = (admin && admin.retired.includes(m.variant_name)) || false;
      return element("tr", { "data-variant": m.variant_name, class: retired ? "retired" : null },
        element("td", { "data-field": "variant_name", "data-retired": String(retired) },
          m.variant_name + (retired ? " (retired)" : "")),
        ...(hasUsers ? [cell("users", m.users, (m.users ?? 0).toLocaleString("en"))] : []),
        cell("invocation_count", m.invocation_count, m.invocation_count.toLocaleString("en")),
        cell("conversion_count", m.conversion_count, m.conversion_count.toLocaleString("en")),
        cell("estimate", estimate,
          `${percent(estimate, 2)}` + (interval ? ` (${fixed(100 * interval[0], 2)}–${fixed(100 * interval[1], 2)})` : ""),
          interval ? { "data-low": interval[0], "data-high": interval[1] } : {}),
        cell("probability_best", f.probability_best, percent(f.probability_best, 1)),
        cell("allocation", stats.allocation[m.variant_name], percent(stats.allocation[m.variant_name], 1)),
        // What the guardrails watch: a demoted variant says why.
        cell("error_rate", m.error_rate, m.error_rate === null ? "–"
          : `${percent(m.error_rate, 1)} (${m.model_errors.toLocaleString("en")} of ${m.model_calls.toLocaleString("en")})`,
          m.demoted ? { title: m.demoted, class: "demoted" } : {}),
        cell("latency_p99", m.latency_ms.p99, m.latency_ms.p99 === null ? "–" : `≤ ${m.latency_ms.p99.toLocaleString("en")} ms`));
    });
    node.querySelector("table.variants").replaceChildren(element("thead", {}, head), element("tbody", {}, ...rows));
  }

  function layout(title, yaxis, snapshots) {
    const shapes = [], annotations = [];
    const warm = snapshots.findIndex((s) => s.warming_up);
    if (warm >= 0) {  // the warm-up: allocated by the initial weights, until the strategy took over
      const over = snapshots.findIndex((s, i) => i > warm && !s.warming_up);
      const x0 = new Date(1000 * snapshots[warm].taken_at);
      const x1 = new Date(1000 * snapshots[over >= 0 ? over : snapshots.length - 1].taken_at);
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0, x1, y0: 0, y1: 1,
        fillcolor: "#9ca3af", opacity: 0.2, line: { width: 0 }, layer: "below" });
      annotations.push({ x: x0, y: 1, xref: "x", yref: "paper", text: "warm-up", showarrow: false,
        xanchor: "left", yanchor: "top", font: { size: 11, color: "#4b5563" } });
    }
    return {
      title: { text: title, font: { size: 14 }, x: 0, xanchor: "left" },
      margin: { l: 55, r: 15, t: 70, b: 40 },
      // Above the plot, never over the data.
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
      xaxis: { type: "date" }, yaxis, shapes, annotations, uirevision: "keep",
    };
  }

  function renderCharts(name, stats, snapshots) {
    const names = stats.variant_metrics.map((m) => m.variant_name);
    const x = snapshots.map((s) => new Date(1000 * s.taken_at));
    const mode = snapshots.length > 40 ? "lines" : "lines+markers";
    const series = (variant, pick) => snapshots.map((s) => {
      const v = s.variants.find((w) => w.variant_name === variant);
      return v ? pick(v) : null;
    });
    const color = (i) => COLORS[i % COLORS.length];
    Plotly.react("chart-allocation-" + name, names.map((v, i) => ({
      name: v, x, y: series(v, (w) => w.allocation), mode, stackgroup: "share",
      line: { color: color(i) },
    })), layout("Allocation share of new users", { range: [0, 1], tickformat: ".0%" }, snapshots), CONFIG);
    const threshold = stats.decision.probability_threshold;
    Plotly.react("chart-probability-" + name, names.map((v, i) => ({
      name: v, x, y: series(v, (w) => w.probability_best), mode, line: { color: color(i) },
    })).concat(x.length ? [{ name: `threshold ${threshold}`, x: [x[0], x[x.length - 1]],
      y: [threshold, threshold], mode: "lines", line: { color: "#6b7280", dash: "dot", width: 1 },
      hoverinfo: "skip" }] : []),
    layout("P(best)", { range: [0, 1.02], tickformat: ".0%" }, snapshots), CONFIG);
    const traces = [];
    names.forEach((v, i) => {
      const low = series(v, (w) => (w.estimate_interval ? w.estimate_interval[0] : null));
      const high = series(v, (w) => (w.estimate_interval ? w.estimate_interval[1] : null));
      traces.push({ name: v + " high", x, y: high, mode: "lines", line: { width: 0 },
        legendgroup: v, showlegend: false, hoverinfo: "skip" });
      traces.push({ name: v + " 95 % interval", x, y: low, mode: "lines", line: { width: 0 },
        fill: "tonexty", fillcolor: color(i) + "33", legendgroup: v, showlegend: false, hoverinfo: "skip" });
      traces.push({ name: v, x, y: series(v, (w) => w.estimate), mode, legendgroup: v,
        line: { color: color(i) } });
    });
    Plotly.react("chart-estimate-" + name, traces,
      layout("Estimated rate with its 95 % interval", { tickformat: ".1%" }, snapshots), CONFIG);
  }

  // Local time, one unambiguous form everywhere on the page: 2026-12-07 19:47:45 (the
  // Swedish locale writes ISO 8601's order; a browser's default put day and month either way).
  const stamp = (date) => date.toLocaleString("sv-SE", { hour12: false });
  const when = (at) => stamp(new Date(1000 * at));

  // The state, the actions allowed now and the audit log, from /admin/show's answer. The
  // form is rebuilt only when the lifecycle's version changes, so a refresh keeps what is
  // being typed into it.
  function renderLifecycle(node, name, admin) {
    const hook = node.querySelector("[data-hook=lifecycle]");
    hook.hidden = false;
    const state = hook.querySelector(".state");
    if (admin.unavailable !== undefined) {
      state.textContent = `Lifecycle not available here (${admin.unavailable})`;
      state.dataset.value = "";
      hook.querySelector(".actions").replaceChildren();
      hook.querySelector("table.audit").replaceChildren();
      delete hook.dataset.version;
      return;
    }
    if (hook.dataset.version === String(admin.version)) return;
    hook.dataset.version = admin.version;
    state.dataset.value = admin.state;
    state.className = "state " + admin.state;
    state.replaceChildren(
      element("strong", {}, admin.state),
      admin.winner ? element("span", { "data-field": "winner" }, ` · winner ${admin.winner}`) : "",
      admin.retired.length
        ? element("span", { "data-field": "retired" }, ` · retired: ${admin.retired.join(", ")}`) : "",
      element("span", { class: "muted" }, ` · version ${admin.version}`));
    renderActions(hook, name, admin);
    renderAudit(hook, admin.audit_log);
  }

  // Allowed actions that take more input than a button and a select (a model, weights):
  // offered by the CLI and the admin API, named here, not made buttons.
  const CLI_ONLY = new Set(["add-variant", "weights"]);

  function renderActions(hook, name, admin) {
    const form = hook.querySelector(".actions");
    const allowed = admin.allowed_actions;
    if (!allowed.length) {
      form.replaceChildren(element("span", { class: "muted" }, "No action: concluded is final."));
      return;
    }
    const serving = admin.variants.filter((v) => !admin.retired.includes(v));
    const decided = admin.decision.winner;
    const reason = element("input", { name: "reason", "data-field": "reason", maxlength: "500",
      placeholder: "reason (for the audit log)" });
    const controls = [reason];
    const choose = (field, options) => element("select", { name: field, "data-field": field },
      ...options.map(([value, text]) => element("option", { value }, text)));
    const elsewhere = allowed.filter((action) => CLI_ONLY.has(action));
    for (const action of allowed.filter((action) => !CLI_ONLY.has(action))) {
      const button = element("button", { type: "button", "data-action": action }, action);
      const body = () => ({ endpoint_name: name, reason: reason.value });
      if (action === "conclude") {
        // The decision's winner when it names one (sent as no winner: the server takes it).
        const winner = choose("winner", [
          ...(decided ? [["", `the decision's winner (${decided})`]] : []),
          ...serving.map((v) => [v, v])]);  // a retired variant cannot win (409)
        button.onclick = () => act(hook, name, action, { ...body(), winner: winner.value || undefined });
        controls.push(element("span", { class: "action" }, button, " with ", winner));
      } else if (action === "reinstate") {
        // Offered only while a guardrail demotes a variant (the server answers 409 otherwise).
        const demoted = admin.variant_metrics.filter((v) => v.demoted).map((v) => v.variant_name);
        if (!demoted.length) continue;
        const variant = choose("variant", demoted.map((v) => [v, v]));
        button.onclick = () => act(hook, name, action, { ...body(), variant: variant.value });
        controls.push(element("span", { class: "action" }, button, " ", variant));
      } else if (action === "retire-variant") {
        const variant = choose("variant", serving.map((v) => [v, v]));
        button.onclick = () => act(hook, name, action, { ...body(), variant: variant.value });
        controls.push(element("span", { class: "action" }, button, " ", variant));
      } else {
        button.onclick = () => act(hook, name, action, body());
        controls.push(element("span", { class: "action" }, button));
      }
    }
    if (elsewhere.length) {
      controls.push(element("span", { class: "muted", "data-field": "elsewhere" },
        ` · ${elsewhere.join(", ")}: abtest endpoints or the admin API`));
    }
    form.replaceChildren(...controls);
  }

  async function act(hook, name, action, body) {
    const result = hook.querySelector(".result");
    result.className = "result";
    try {
      const answer = await post("/admin/" + action, body);
      result.textContent = `${action}: done, ${answer.state}` +
        (answer.winner ? ` (winner ${answer.winner})` : "");
    } catch (error) {
      result.className = "result failed";
      result.textContent = `${action}: ${error.message}`;
    }
    await refresh(name);
  }

  function renderAudit(hook, log) {
    const head = element("tr", {}, ...["Time", "Actor", "Action", "Reason"].map((h) => element("th", {}, h)));
    const rows = log.slice().reverse().map((e) => element("tr", { "data-field": "audit" },
      element("td", { "data-field": "at", "data-value": e.at }, when(e.at)),
      element("td", { "data-field": "actor" }, e.actor),
      element("td", { "data-field": "action" },
        e.action + (e.details.winner ? ` (${e.details.winner})` : "") +
        (e.details.variant ? ` (${e.details.variant})` : "")),
      element("td", { "data-field": "reason" }, e.reason)));
    hook.querySelector("table.audit").replaceChildren(element("thead", {}, head),
      element("tbody", {}, ...(rows.length ? rows : [element("tr", {}, element("td", { colspan: 4,
        class: "muted" }, "No change yet."))])));
  }

  async function refresh(name) {
    if (name !== picked) return;
    const node = section(name);
    try {
      const [stats, history, admin] = await Promise.all([
        post("/stats", { endpoint_name: name }),
        post("/history", { endpoint_name: name }),
        // An API without the admin routes (or auth for them) still gets its charts.
        post("/admin/show", { endpoint_name: name }).catch((error) => ({ unavailable: error.message })),
      ]);
      if (name !== picked) {  // another endpoint was picked meanwhile
        node.remove();
        return;
      }
      const snapshots = history.snapshots;
      const shown = admin.unavailable === undefined ? admin : null;
      renderSummary(node, stats, snapshots[snapshots.length - 1]);
      renderTable(node, stats, shown);
      renderCharts(name, stats, snapshots);
      renderLifecycle(node, name, admin);
      node.querySelector(".error").textContent = "";
      node.dataset.snapshots = snapshots.length;
    } catch (error) {
      node.querySelector(".error").textContent = `${name}: ${error.message}`;
    }
  }

  // The endpoints /admin/list names, so one added to the server appears; those the page was
  // served with where the API cannot list them (no admin routes, or no auth for them).
  async function endpointNames() {
    try {
      return (await post("/admin/list", {})).endpoints.map((e) => e.endpoint_name);
    } catch (error) {
      return settings.endpoints;
    }
  }

  // One button per endpoint, the picked one pressed; none for a single endpoint.
  function renderPicker(names) {
    const nav = document.getElementById("picker");
    nav.hidden = names.length < 2;
    if (nav.dataset.names !== names.join(" ")) {
      nav.dataset.names = names.join(" ");
      nav.replaceChildren(...names.map((name) => {
        const button = element("button", { type: "button", "data-endpoint": name }, name);
        button.onclick = () => pick(name);
        return button;
      }));
    }
    for (const button of nav.querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.endpoint === picked));
    }
  }

  // Shows `name` alone: the other endpoints' sections go (drawn afresh when picked again,
  // so their charts get the size of a visible box).
  function show(names) {
    if (!names.includes(picked)) picked = names[0];
    renderPicker(names);
    for (const node of main.querySelectorAll("section.endpoint")) {
      if (node.dataset.endpoint !== picked) node.remove();
    }
  }

  async function pick(name) {
    picked = name;
    const fragment = new URLSearchParams(location.hash.slice(1));
    fragment.set("endpoint", name);
    history.replaceState(null, "", "#" + fragment.toString());
    await refreshAll();
  }

  async function refreshAll() {
    const names = await endpointNames();
    const empty = document.getElementById("no-endpoint");
    if (empty) empty.hidden = names.length > 0;
    show(names);
    if (picked !== undefined) await refresh(picked);
    document.getElementById("updated").textContent = "updated " + stamp(new Date());
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  }

  main.append(element("p", { id: "no-endpoint", hidden: "" }, "No endpoint to show."));
  refreshAll();
  setInterval(refreshAll, 1000 * settings.refreshSeconds);
})();
