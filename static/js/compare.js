// The compare page: one uPlot chart per curve (validation/train accuracy and loss), one series per
// run in the run's colour, against epoch or training time (the x-axis switch, remembered). Runs may
// have different epoch counts and times: the x axis is the union of their x values; by epoch a run's
// missing epochs are gaps, by time each run's points are joined across the other runs' x values. The
// charts are drawn again in the new colours when the theme changes (static/js/theme.js).
// The table's column chooser shows or hides columns and remembers the choice (localStorage).
(() => {
  "use strict";
  const COLUMNS_KEY = "trainboard-compare-columns";
  const X_KEY = "trainboard-compare-x";

  // ---------- columns ----------
  const chooser = document.getElementById("column-chooser");
  const table = document.getElementById("compare-table");
  function showColumn(key, shown) {
    table.querySelectorAll(`[data-col="${key}"]`).forEach((cell) => { cell.hidden = !shown; });
  }
  if (chooser && table) {
    const boxes = [...chooser.querySelectorAll("input[type=checkbox]")];
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(COLUMNS_KEY) || "null"); } catch (e) { saved = null; }
    if (Array.isArray(saved)) {
      boxes.forEach((box) => { box.checked = saved.includes(box.value); showColumn(box.value, box.checked); });
    }
    chooser.addEventListener("change", (event) => {
      if (!event.target.matches("input[type=checkbox]")) return;
      showColumn(event.target.value, event.target.checked);
      try {
        localStorage.setItem(COLUMNS_KEY, JSON.stringify(boxes.filter((box) => box.checked).map((box) => box.value)));
      } catch (e) { /* not remembered */ }
    });
    document.addEventListener("click", (event) => {  // a click elsewhere closes the chooser
      if (chooser.open && !chooser.contains(event.target)) chooser.open = false;
    });
  }

  // ---------- curves ----------
  const block = document.getElementById("compare-data");
  if (!block || typeof uPlot === "undefined") return;
  const C = window.trainboardCharts;
  const data = JSON.parse(block.textContent);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  // x by "epoch" or "time": the run's curve column of x values ("time_s": training seconds at each epoch's end).
  const X_COLUMN = { epoch: "epoch", time: "time_s" };
  const select = document.getElementById("compare-x");
  let xName = "epoch";
  try { xName = localStorage.getItem(X_KEY) || "epoch"; } catch (e) { /* private mode */ }
  if (!(xName in X_COLUMN)) xName = "epoch";
  if (select) select.value = xName;
  let charts = [];

  // The x values of every run (union, ascending), and per run its `key` curve at them (null elsewhere).
  function columns(key) {
    const xs = (run) => run.curves[X_COLUMN[xName]] || [];
    const union = [...new Set(data.runs.flatMap((run) => xs(run).filter((x) => x != null)))].sort((a, b) => a - b);
    return [union, ...data.runs.map((run) => {
      const byX = new Map();
      xs(run).forEach((x, i) => { if (x != null) byX.set(x, run.curves[key][i]); });
      return union.map((x) => (byX.has(x) ? byX.get(x) : null));
    })];
  }

  function draw() {
    charts.forEach(({ chart }) => chart.destroy());
    charts = [];
    const byTime = xName === "time";
    const x = byTime ? { ...C.X.time, label: "training time" } : C.X.epoch;
    for (const key of ["val_accuracy", "val_loss", "train_accuracy", "train_loss"]) {
      const el = document.getElementById(`cmp-${key}`);
      if (!el) continue;
      const cols = columns(key);
      const series = data.runs.map((run) => ({
        label: `#${run.id} ${run.name}`, stroke: run.color, width: 2, spanGaps: byTime,
        points: { show: cols[0].length <= 60, size: 5, fill: run.color },
        value: (u, v) => (v == null ? "–" : Number(v).toPrecision(4)),
      }));
      const axis = { stroke: css("--muted"), grid: { stroke: css("--border"), width: 1 }, ticks: { stroke: css("--border") } };
      const accuracy = key.endsWith("accuracy");
      const chart = new uPlot({
        width: Math.max(el.clientWidth, 200), height: 220,
        scales: { x: { time: false, range: byTime ? x.range : C.xRange },
          ...(accuracy ? { y: { range: (u, min, max) => [Math.max(0, (min ?? 0) - 0.02), Math.min(1, (max ?? 1) + 0.02)] } } : {}) },
        // Whole epochs only (a 2-epoch comparison has ticks 1 and 2, never 1.2); times as "30 s", "2 min".
        axes: [{ ...axis, label: x.label, labelSize: 18, incrs: x.incrs, values: C.ticks(el, "data-x-ticks", x.tick) },
          { ...axis, size: 56 }],
        legend: { show: false }, cursor: { drag: { x: true, y: false } },
        series: [{ label: x.label }, ...series],
      }, cols, el);
      el.dataset.xAxis = xName;
      el.dataset.series = String(series.length);
      el.dataset.points = String(cols.slice(1).reduce((n, col) => n + col.filter((v) => v != null).length, 0));
      charts.push({ chart, el });
    }
  }

  draw();
  document.addEventListener("trainboard:theme", draw);
  select?.addEventListener("change", () => {
    xName = select.value in X_COLUMN ? select.value : "epoch";
    try { localStorage.setItem(X_KEY, xName); } catch (e) { /* not remembered */ }
    draw();
  });
  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(() => charts.forEach(({ chart, el }) => {
      const width = Math.max(el.clientWidth, 200);
      if (Math.abs(width - chart.width) > 2) chart.setSize({ width, height: chart.height });
    })).observe(document.querySelector(".compare-charts"));
  }
})();
