// The report page: draws the data block (#data) that tracker wrote from the report's CSV files.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const t = data.totals, w = data.windows;
  const charts = {};
  window.trackerCharts = charts;  // for tests and the curious: each chart by name

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c === null || c === undefined ? "" : c);
    return node;
  }
  const cell = (v) => (v === null || v === undefined || v === "" ? "-" : String(v));
  const has = (name) => Array.isArray(w[name]) && w[name].some((v) => v !== null);

  // -- header: the whole run, as the totals file writes it --------------------------------------------
  const header = el("header");
  const title = el("h1", {}, "tracker report");
  if (data.live) title.append(el("span", { class: "live", id: "live" }, "live: this page reloads itself"));
  header.append(title);
  header.append(el("div", { class: "muted", id: "span" },
    t.run_start ? `${t.run_start} to ${t.run_end} (UTC), ${cell(t.duration_s)} s` : "no events"));
  const figures = el("div", { class: "figures", id: "figures" });
  const shown = [["sessions", "sessions"], ["questions_asked", "questions"], ["questions_answered", "answers"],
    ["errors", "errors"], ["error_rate", "error rate"], ["answers_per_s", "answers/s"],
    ["response_time_ms_p95", "p95 ms"], ["ttft_ms_p95", "TTFT p95 ms"], ["output_tokens_per_s", "output tokens/s"],
    ["goodput_ratio", "goodput ratio"]];
  for (const [key, label] of shown) {
    if (!(key in t)) continue;
    figures.append(el("div", { class: "figure", "data-column": key }, el("b", {}, cell(t[key])), el("span", {}, label)));
  }
  header.append(figures);
  if (data.thresholds.length) {
    const verdicts = el("div", { class: "verdicts", id: "verdicts" });
    for (const [scope, text, value, ok] of data.thresholds) {
      if (scope !== "run" && ok === "true") continue;  // every run verdict, and the windows that failed
      verdicts.append(el("span", { class: "verdict " + (ok === "true" ? "ok" : "fail"), "data-ok": ok },
        `${ok === "true" ? "pass" : "FAIL"} ${text} [${scope}] ${cell(value)}`));
    }
    header.append(verdicts);
  }
  document.body.append(header);
  const main = el("main");
  document.body.append(main);

  // -- charts on one time axis (UTC) -----------------------------------------------------------------------
  function section(id, heading, wide, tall) {
    const box = el("section", { class: wide ? "wide" : "" }, el("h2", {}, heading));
    const div = el("div", { class: "chart" + (tall ? " tall" : ""), id });
    box.append(div);
    main.append(box);
    return div;
  }
  const timeAxis = { type: "time", axisLabel: { hideOverlap: true } };
  function lines(id, heading, series, unit, nonzero) {
    // A chart of figures the logs do not have (empty; or, with nonzero, all 0: no token counts) is left out.
    const names = series.filter(([key]) => has(key) && (!nonzero || w[key].some((v) => v)));
    if (!names.length) return;
    const chart = echarts.init(section(id, heading), null, { renderer: "canvas" });
    chart.group = "run";
    chart.setOption({
      useUTC: true, animation: false, grid: { left: 56, right: 16, top: 30, bottom: 50 },
      legend: { top: 0 }, tooltip: { trigger: "axis" }, xAxis: timeAxis,
      yAxis: { type: "value", name: unit, nameGap: 8 },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 16, bottom: 6 }],
      series: names.map(([key, label]) => ({
        name: label, type: "line", showSymbol: w.start.length < 60, connectNulls: false,
        data: w.start.map((x, i) => [x, w[key][i]]),
      })),
    });
    charts[id] = chart;
  }
  lines("active", "Active sessions", [["active_sessions", "active sessions"]], "sessions");
  lines("rates", "Questions, answers and errors per second",
    [["questions_per_s", "questions/s"], ["answers_per_s", "answers/s"], ["errors_per_s", "errors/s"]], "per s");
  lines("response", "Response time per window",
    ["p50", "p90", "p95", "p99", "max"].map((s) => [`response_time_ms_${s}`, s]), "ms");
  lines("ttft", "Time to first token per window",
    ["p50", "p90", "p95", "p99", "max"].map((s) => [`ttft_ms_${s}`, s]), "ms");
  lines("tokens", "Output tokens per second", [["output_tokens_per_s", "output tokens/s"]], "per s", true);
  lines("goodput", "Goodput", [["goodput_per_s", "good answers/s"]], "per s");

  const kinds = Object.entries(data.errors.kinds);
  if (kinds.length) {
    const chart = echarts.init(section("errors", "Errors per window, by kind"), null, { renderer: "canvas" });
    chart.group = "run";
    chart.setOption({
      useUTC: true, animation: false, grid: { left: 56, right: 16, top: 30, bottom: 50 },
      legend: { top: 0 }, tooltip: { trigger: "axis" }, xAxis: timeAxis, yAxis: { type: "value", name: "errors" },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 16, bottom: 6 }],
      series: kinds.map(([kind, counts]) => ({
        name: kind, type: "bar", stack: "errors", data: w.start.map((x, i) => [x, counts[i]]),
      })),
    });
    charts.errors = chart;
  }
  echarts.connect("run");

  // -- the error table ---------------------------------------------------------------------------------------
  if (data.errors.rows.length) {
    const box = el("section", { class: "wide" }, el("h2", {}, "Errors"));
    const table = el("table", { id: "error-table" });
    table.append(el("tr", {}, ...["window", "kind", "message", "count", "sessions"].map((h, i) =>
      el("th", { class: i >= 3 ? "n" : "" }, h))));
    for (const [window, kind, message, count, sessions] of data.errors.rows) {
      table.append(el("tr", {}, el("td", {}, window), el("td", {}, cell(kind)), el("td", {}, message),
        el("td", { class: "n" }, count), el("td", { class: "n" }, sessions)));
    }
    box.append(el("div", { class: "scroll" }, table));
    main.append(box);
  }

  // -- sessions: a heatmap of the top sessions, and a sortable, filterable table of all -----------------------
  const heat = data.heatmap;
  if (heat.answers.sessions.length || heat.p95.sessions.length) {
    const div = section("heatmap", "Sessions x windows", true, true);
    const pick = el("select", { id: "heatmap-measure" }, el("option", { value: "answers" }, "answers"),
      el("option", { value: "p95" }, "response time p95 (ms)"));
    div.parentNode.insertBefore(el("div", { class: "tools" }, el("label", {}, "measure ", pick),
      el("span", { class: "muted", id: "heatmap-note" }, "")), div);
    const chart = echarts.init(div, null, { renderer: "canvas" });
    charts.heatmap = chart;
    const column = new Map(w.start.map((x, i) => [x, i]));  // a window's start -> its column
    function draw() {
      const m = pick.value, d = heat[m];
      const values = d.cells.map((c) => c[2]);
      document.getElementById("heatmap-note").textContent =
        `the ${d.sessions.length} sessions with the ${m === "answers" ? "most answers" : "worst p95"}`;
      chart.setOption({
        useUTC: true, animation: false, grid: { left: 140, right: 16, top: 10, bottom: 70 },
        // a cell is [window index, session index, value]; the tooltip is HTML: a session id is escaped
        tooltip: { formatter: (p) => `${echarts.format.encodeHTML(d.sessions[p.value[1]])}<br>` +
          `${new Date(w.start[p.value[0]]).toISOString()}: ${p.value[2]}` },
        xAxis: { type: "category", data: w.start.map((x) => new Date(x).toISOString().slice(11, 19)) },
        yAxis: { type: "category", data: d.sessions, inverse: true, axisLabel: { width: 120, overflow: "truncate" } },
        // not Math.max(...values): a spread of 100,000+ cells (the heatmap holds up to 200,000) overflows the stack
        visualMap: { min: 0, max: values.reduce((a, b) => Math.max(a, b), 1), calculable: true, orient: "horizontal",
          left: "center", bottom: 0, itemHeight: 120 },
        series: [{ type: "heatmap", data: d.cells.map(([x, s, v]) => [column.get(x), s, v]) }],
      }, true);
    }
    pick.addEventListener("change", draw);
    draw();
  }

  const sessions = data.sessions;
  if (sessions.rows.length) {
    const labels = { session_id: "session", username: "user", questions: "questions", answers: "answers",
      errors: "errors", worst_p95_ms: "worst window p95 ms", worst_ttft_p95_ms: "worst window TTFT p95 ms",
      status: "status" };
    const numeric = new Set(["questions", "answers", "errors", "worst_p95_ms", "worst_ttft_p95_ms"]);
    const ms = new Set(["worst_p95_ms", "worst_ttft_p95_ms"]);  // with the 3 decimals the CSV files write
    const box = el("section", { class: "wide" }, el("h2", {}, "Sessions"));
    const filter = el("input", { id: "session-filter", type: "search", placeholder: "filter: session, user, status" });
    const note = el("span", { class: "muted", id: "session-note" });
    const onlyErrors = el("input", { id: "session-errors", type: "checkbox" });
    box.append(el("div", { class: "tools" }, filter, el("label", {}, onlyErrors, " with errors only"), note));
    const table = el("table", { id: "session-table" });
    box.append(el("div", { class: "scroll" }, table));
    main.append(box);
    const top = 100;
    let key = "worst_p95_ms", ascending = false;
    function render() {
      const i = sessions.columns.indexOf(key);
      const needle = filter.value.trim().toLowerCase();
      let rows = sessions.rows.filter((r) => (!onlyErrors.checked || r[4] > 0) &&
        (!needle || [r[0], r[1], r[7]].some((v) => v !== null && String(v).toLowerCase().includes(needle))));
      rows.sort((a, b) => {
        const x = a[i], y = b[i];
        if (x === y) return a[0] < b[0] ? -1 : 1;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * (ascending ? 1 : -1);
      });
      note.textContent = `${Math.min(top, rows.length)} of ${rows.length} shown (of ${sessions.rows.length}), ` +
        "sorted by " + labels[key] + (ascending ? ", lowest first" : ", highest first");
      table.replaceChildren(el("tr", {}, ...sessions.columns.map((c) => {
        const th = el("th", { "data-key": c, class: (numeric.has(c) ? "n" : "") + (c === key ? " sorted" +
          (ascending ? " asc" : "") : "") }, labels[c]);
        th.addEventListener("click", () => { ascending = c === key ? !ascending : !numeric.has(c); key = c; render(); });
        return th;
      })));
      for (const r of rows.slice(0, top)) {
        table.append(el("tr", { class: r[4] > 0 ? "erroring" : "" }, ...r.map((v, j) =>
          el("td", { class: (numeric.has(sessions.columns[j]) ? "n " : "") + sessions.columns[j] },
            typeof v === "number" && ms.has(sessions.columns[j]) ? v.toFixed(3) : cell(v)))));
      }
    }
    filter.addEventListener("input", render);
    onlyErrors.addEventListener("change", render);
    render();
  }
  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
  document.body.setAttribute("data-ready", "true");
})();
