// The compare page: one uPlot chart per curve (validation/train accuracy and loss by epoch), one
// series per run in the run's colour. Runs may have different epoch counts: the x axis is the
// union of their epochs and a run's missing epochs are gaps. The charts are drawn again in the new
// colours when the theme changes (static/js/theme.js).
// The table's column chooser shows or hides columns and remembers the choice (localStorage).
(() => {
  "use strict";
  const COLUMNS_KEY = "trainboard-compare-columns";

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
  const epochs = [...new Set(data.runs.flatMap((run) => run.curves.epoch || []))].sort((a, b) => a - b);
  let charts = [];

  function column(run, key) {
    const byEpoch = new Map((run.curves.epoch || []).map((epoch, i) => [epoch, run.curves[key][i]]));
    return epochs.map((epoch) => (byEpoch.has(epoch) ? byEpoch.get(epoch) : null));
  }

  function draw() {
    charts.forEach(({ chart }) => chart.destroy());
    charts = [];
    for (const key of ["val_accuracy", "val_loss", "train_accuracy", "train_loss"]) {
      const el = document.getElementById(`cmp-${key}`);
      if (!el) continue;
      const series = data.runs.map((run) => ({
        label: `#${run.id} ${run.name}`, stroke: run.color, width: 2, spanGaps: false,
        points: { show: epochs.length <= 60, size: 5, fill: run.color },
        value: (u, v) => (v == null ? "–" : Number(v).toPrecision(4)),
      }));
      const columns = [epochs, ...data.runs.map((run) => column(run, key))];
      const axis = { stroke: css("--muted"), grid: { stroke: css("--border"), width: 1 }, ticks: { stroke: css("--border") } };
      const accuracy = key.endsWith("accuracy");
      const chart = new uPlot({
        width: Math.max(el.clientWidth, 200), height: 220,
        scales: { x: { time: false, range: C.xRange },
          ...(accuracy ? { y: { range: (u, min, max) => [Math.max(0, (min ?? 0) - 0.02), Math.min(1, (max ?? 1) + 0.02)] } } : {}) },
        // Whole epochs only: a 2-epoch comparison has ticks 1 and 2, never 1.2.
        axes: [{ ...axis, label: "epoch", labelSize: 18, incrs: C.X.epoch.incrs, values: C.ticks(el, "data-x-ticks", C.X.epoch.tick) },
          { ...axis, size: 56 }],
        legend: { show: false }, cursor: { drag: { x: true, y: false } },
        series: [{ label: "epoch" }, ...series],
      }, columns, el);
      el.dataset.series = String(series.length);
      el.dataset.points = String(columns.slice(1).reduce((n, col) => n + col.filter((v) => v != null).length, 0));
      charts.push({ chart, el });
    }
  }

  draw();
  document.addEventListener("trainboard:theme", draw);
  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(() => charts.forEach(({ chart, el }) => {
      const width = Math.max(el.clientWidth, 200);
      if (Math.abs(width - chart.width) > 2) chart.setSize({ width, height: chart.height });
    })).observe(document.querySelector(".compare-charts"));
  }
})();
