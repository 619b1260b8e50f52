// The comparison page: draws the data block (#data) that tracker compare wrote from two runs' report files.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const runs = data.runs;
  const charts = {};
  window.trackerCharts = charts;  // for tests and the curious: each chart by name (its measure's column)

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c === null || c === undefined ? "" : c);
    return node;
  }
  const cell = (v) => (v === null || v === undefined || v === "" ? "-" : String(v));
  const legend = (run) => `${run.label}: ${run.name}`;

  // -- header: the two runs, and the gates' verdicts ----------------------------------------------------------
  const header = el("header");
  header.append(el("h1", {}, "tracker compare"));
  for (const run of runs) {
    header.append(el("div", { class: "muted", id: `run-${run.label}` }, `${legend(run)} (${run.folder}): ` +
      (run.run_start ? `${run.run_start} to ${run.run_end} (UTC), ${cell(run.duration_s)} s, ` : "no events, ") +
      `${run.x.length} window${run.x.length === 1 ? "" : "s"}`));
  }
  if (data.gates.length) {
    const verdicts = el("div", { class: "verdicts", id: "verdicts" });
    for (const [text, ok, detail] of data.gates) {
      verdicts.append(el("span", { class: "verdict " + (ok ? "ok" : "fail"), "data-ok": String(ok) },
        `${ok ? "ok" : "FAIL"} ${text}: ${detail}`));
    }
    header.append(verdicts);
  }
  document.body.append(header);
  const main = el("main");
  document.body.append(main);

  // -- one chart per measure, both runs on one axis: seconds since each run's start ---------------------------
  for (const [key, heading, unit] of data.charts) {
    const box = el("section", {}, el("h2", {}, heading));
    const div = el("div", { class: "chart", id: `chart-${key}` });
    box.append(div);
    main.append(box);
    const chart = echarts.init(div, null, { renderer: "canvas" });
    chart.group = "compare";
    chart.setOption({
      useUTC: true, animation: false, grid: { left: 56, right: 16, top: 30, bottom: 56 },
      legend: { top: 0 }, tooltip: { trigger: "axis" },
      xAxis: { type: "value", name: "s since the run's start", nameLocation: "middle", nameGap: 24, min: 0 },
      yAxis: { type: "value", name: unit, nameGap: 8 },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 14, bottom: 4 }],
      series: runs.map((run) => ({
        name: legend(run), type: "line", showSymbol: run.x.length < 60, connectNulls: false,
        data: run.x.map((x, i) => [x, run.series[key][i]]),
      })),
    });
    charts[key] = chart;
  }
  echarts.connect("compare");

  // -- the whole-run figures side by side ---------------------------------------------------------------------
  const box = el("section", { class: "wide" }, el("h2", {}, "Whole run"));
  const table = el("table", { id: "figures-table" });
  table.append(el("tr", {}, el("th", {}, "figure"), el("th", { class: "n" }, legend(runs[0])),
    el("th", { class: "n" }, legend(runs[1])), el("th", { class: "n" }, "change")));
  for (const [figure, a, b, change] of data.figures) {
    table.append(el("tr", { "data-figure": figure }, el("td", {}, figure), el("td", { class: "n" }, a),
      el("td", { class: "n" }, b), el("td", { class: "n" }, change)));
  }
  box.append(el("div", { class: "scroll" }, table));
  main.append(box);

  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
  document.body.setAttribute("data-ready", "true");
})();
