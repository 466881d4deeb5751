// The live run page: reads the run's event stream (SSE) and grows uPlot charts, the progress bar
// and the log in place. History and live events come down the same stream, so a reload replays
// everything from seq 1 and then continues from the last seq (the SSE id). The server never sends a
// seq twice; if one ever arrives again it is skipped but reported (console.error and
// window.trainboardDuplicates, which the browser tests read), never hidden.
// Charts redraw at most once per animation frame, however many events arrive in it.
(() => {
  "use strict";
  const root = document.getElementById("run-page");
  if (!root) return;

  const runId = root.dataset.runId;
  const TERMINAL = ["completed", "failed", "cancelled", "interrupted"];
  const LIVE = ["queued", "starting", "running"];
  const LOG_LIMIT = 400;
  const KINDS = ["metric", "epoch", "status", "evaluation", "log", "memory", "checkpoint", "artifact"];
  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  const state = {
    status: root.dataset.status,
    epochs: Number(root.dataset.epochs) || 1,
    lastSeq: 0,
    seqs: [],
    epochTimes: new Map(),
    epochSamples: new Map(),
    lastEpoch: 0,
    lastEpochStep: 0,
    stepsPerEpoch: null,
  };
  // One row per global step; per-epoch series are null between epochs (spanGaps joins them).
  const cols = { x: [], stepLoss: [], trainLoss: [], valLoss: [], stepAcc: [], trainAcc: [], valAcc: [] };
  const lr = { x: [], y: [] };

  function rowAt(x) {
    const n = cols.x.length;
    if (n && x === cols.x[n - 1]) return n - 1;
    if (n && x < cols.x[n - 1]) {
      // A resumed run repeats the steps after its checkpoint: drop the abandoned tail.
      let keep = n;
      while (keep > 0 && cols.x[keep - 1] >= x) keep--;
      for (const key in cols) cols[key].length = keep;
    }
    for (const key in cols) cols[key].push(null);
    cols.x[cols.x.length - 1] = x;
    return cols.x.length - 1;
  }

  // ---------- charts ----------
  const charts = [];
  function makeChart(el, series, data, opts = {}) {
    if (!el || typeof uPlot === "undefined") return null;
    // Axis colours are read at each draw: a theme change (static/js/theme.js) redraws them below.
    const axis = { stroke: () => css("--muted"), grid: { stroke: () => css("--border"), width: 1 }, ticks: { stroke: () => css("--border") } };
    const chart = new uPlot({
      width: Math.max(el.clientWidth, 200),
      height: opts.height || 220,
      scales: { x: { time: false }, ...(opts.scales || {}) },
      axes: [{ ...axis, label: opts.xLabel || "step", labelSize: 18 }, { ...axis, size: 56, ...(opts.yAxis || {}) }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [{ label: opts.xLabel || "step" }, ...series],
    }, data, el);
    charts.push({ chart, el });
    return chart;
  }
  const line = (label, color, width, points) => ({
    label, stroke: color, width, spanGaps: true, points: { show: points, size: 5, fill: color },
    value: (u, v) => (v == null ? "–" : Number(v).toPrecision(4)),
  });
  const lossChart = makeChart($("chart-loss"), [
    line("train (step)", css("--chart-step"), 1, false),
    line("train (epoch)", css("--chart-1"), 2, true),
    line("validation", css("--chart-2"), 2, true),
  ], [cols.x, cols.stepLoss, cols.trainLoss, cols.valLoss]);
  const accuracyChart = makeChart($("chart-accuracy"), [
    line("train (step)", css("--chart-step"), 1, false),
    line("train (epoch)", css("--chart-1"), 2, true),
    line("validation", css("--chart-2"), 2, true),
  ], [cols.x, cols.stepAcc, cols.trainAcc, cols.valAcc], { scales: { y: { range: [0, 1] } } });
  const lrChart = makeChart($("chart-lr"), [line("learning rate", css("--chart-3"), 2, true)], [lr.x, lr.y],
    { height: 150, xLabel: "epoch", scales: { y: { range: (u, min, max) => [0, (max || 1) * 1.15] } },
      yAxis: { values: (u, ticks) => ticks.map((t) => (t === 0 ? "0" : t.toExponential(1))) } });

  let frame = 0;
  function redraw() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      lossChart?.setData([cols.x, cols.stepLoss, cols.trainLoss, cols.valLoss]);
      accuracyChart?.setData([cols.x, cols.stepAcc, cols.trainAcc, cols.valAcc]);
      lrChart?.setData([lr.x, lr.y]);
      $("chart-loss")?.setAttribute("data-points", String(cols.x.length));
    });
  }
  document.addEventListener("trainboard:theme", () => charts.forEach(({ chart }) => chart.redraw(false)));
  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(() => charts.forEach(({ chart, el }) => {
      const width = Math.max(el.clientWidth, 200);
      if (Math.abs(width - chart.width) > 2) chart.setSize({ width, height: chart.height });
    })).observe(document.querySelector(".charts") || root);
  }

  // ---------- progress, stats, log ----------
  const fmtPct = (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`);
  const fmtNum = (v, digits = 4) => (v == null ? "–" : Number(v).toFixed(digits));
  function duration(seconds) {
    if (seconds == null || !isFinite(seconds)) return "";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
  }

  function showProgress(fraction) {
    const done = state.status === "completed";
    const percent = done ? 100 : Math.min(100, Math.max(0, fraction * 100));
    $("run-progress-fill").style.width = `${percent.toFixed(1)}%`;
    $("run-progress").setAttribute("aria-valuenow", String(state.lastEpoch));
    $("run-progress-text").textContent = `epoch ${state.lastEpoch} of ${state.epochs}`;
    const times = [...state.epochTimes.values()];
    const live = state.status === "running" && times.length;
    const mean = live ? times.reduce((a, b) => a + b, 0) / times.length : null;
    const remaining = mean == null ? null : mean * (state.epochs - state.lastEpoch);
    $("run-eta").textContent = remaining != null && state.lastEpoch < state.epochs ? `ETA ${duration(remaining)}` : "";
  }

  const log = $("run-log");
  function addLog(seq, text, kind) {
    const item = document.createElement("li");
    item.className = `log-${kind}`;
    const number = document.createElement("span");
    number.className = "seq";
    number.textContent = String(seq);
    item.append(number, text);
    log.append(item);
    while (log.children.length > LOG_LIMIT) log.firstElementChild.remove();
    scheduleLogScroll();
  }
  let logScroll = 0;
  function scheduleLogScroll() {
    if (logScroll) return;
    logScroll = requestAnimationFrame(() => { logScroll = 0; log.scrollTop = log.scrollHeight; });
  }

  function setStatus(status, reason) {
    state.status = status;
    root.dataset.status = status;
    const badge = $("run-status");
    badge.textContent = status;
    badge.className = `status status-${status}`;
    $("run-progress-fill").className = `progress-fill status-${status}`;
    const reasonEl = $("run-reason");
    if (reason && TERMINAL.includes(status) && status !== "completed") {
      reasonEl.textContent = reason;
      reasonEl.hidden = false;
    } else if (LIVE.includes(status)) {
      reasonEl.hidden = true;
    }
  }

  // ---------- events ----------
  const handlers = {
    metric(d) {
      const r = rowAt(d.step);
      cols.stepLoss[r] = d.loss;
      cols.stepAcc[r] = d.accuracy;
      if (state.stepsPerEpoch) {
        const within = Math.min(1, (d.step - state.lastEpochStep) / state.stepsPerEpoch);
        showProgress((state.lastEpoch + within) / state.epochs);
      }
      redraw();
    },
    epoch(d, seq) {
      const r = rowAt(d.step);
      cols.trainLoss[r] = d.train_loss;
      cols.valLoss[r] = d.val_loss;
      cols.trainAcc[r] = d.train_accuracy;
      cols.valAcc[r] = d.val_accuracy;
      while (lr.x.length && lr.x[lr.x.length - 1] >= d.epoch) { lr.x.pop(); lr.y.pop(); }
      lr.x.push(d.epoch);
      lr.y.push(d.lr);
      if (d.epochs) state.epochs = d.epochs;
      const previousStep = d.epoch > state.lastEpoch && state.lastEpoch > 0 ? state.lastEpochStep : null;
      state.stepsPerEpoch = previousStep != null ? d.step - previousStep : (d.epoch === 1 ? d.step : state.stepsPerEpoch);
      state.lastEpoch = d.epoch;
      state.lastEpochStep = d.step;
      state.epochTimes.set(d.epoch, d.epoch_time);
      state.epochSamples.set(d.epoch, d.samples_per_sec != null && d.epoch_time != null ? Math.round(d.samples_per_sec * d.epoch_time) : null);
      $("stat-train-loss").textContent = fmtNum(d.train_loss);
      $("stat-val-loss").textContent = fmtNum(d.val_loss);
      $("stat-val-acc").textContent = fmtPct(d.val_accuracy);
      // The figures of app/runs/figures.py: over the kept epochs (the last row of each epoch),
      // samples/s = training samples / training time, time per epoch = training time / epochs.
      let time = 0, samples = 0, epochs = 0, counted = true;
      for (const [e, t] of state.epochTimes) {
        if (!(t > 0)) continue;
        time += t;
        epochs += 1;
        const n = state.epochSamples.get(e);
        if (n == null) counted = false; else samples += n;
      }
      $("stat-speed").textContent = epochs && counted ? Math.round(samples / time).toLocaleString("en-US") : "–";
      $("stat-epoch-time").textContent = epochs ? `${(time / epochs).toFixed(2)} s` : "–";
      showProgress(d.epoch / state.epochs);
      addLog(seq, `epoch ${d.epoch}/${d.epochs}: loss ${fmtNum(d.train_loss)}, acc ${fmtPct(d.train_accuracy)}` +
        (d.val_loss != null ? `, val loss ${fmtNum(d.val_loss)}, val acc ${fmtPct(d.val_accuracy)}` : "") +
        `, lr ${Number(d.lr).toPrecision(3)}`, "epoch");
      redraw();
    },
    status(d, seq) {
      setStatus(d.status, d.reason);
      showProgress(state.lastEpoch / state.epochs);
      addLog(seq, `status → ${d.status}${d.reason ? ` (${d.reason})` : ""}`, "status");
    },
    evaluation(d, seq) {
      if (d.split === "test") {
        addLog(seq, `test: accuracy ${fmtPct(d.accuracy)}, loss ${fmtNum(d.loss)}` +
          (d.top_k_accuracy != null ? `, top-${d.top_k || "k"} ${fmtPct(d.top_k_accuracy)}` : ""), "evaluation");
      }
    },
    log(d, seq) { addLog(seq, d.message, d.level || "info"); },
    memory(d) {
      const stat = $("stat-memory");
      if (d.training_bytes != null) stat.textContent = bytes(d.training_bytes);
      if (d.peak_bytes) stat.title = `trainer process peak: ${bytes(d.peak_bytes)}`;
    },
    checkpoint(d) {
      const epoch = $("fork-epoch");
      if (epoch && !epoch.matches(":focus")) epoch.value = d.epoch;
    },
    artifact(d, seq) { addLog(seq, `exported ${d.name} (${bytes(d.bytes || 0)})`, "artifact"); },
  };

  let source = null;
  function accept(kind, event) {
    const seq = Number(event.lastEventId);
    if (!seq || seq <= state.lastSeq) {
      window.trainboardDuplicates = (window.trainboardDuplicates || 0) + 1;
      console.error(`run ${runId}: ${kind} event with seq ${event.lastEventId} after seq ${state.lastSeq}: a duplicate or out of order`);
      return;
    }
    state.lastSeq = seq;
    state.seqs.push(seq);
    let data = {};
    try { data = JSON.parse(event.data); } catch (_) { /* keep the seq, skip the body */ }
    handlers[kind]?.(data, seq);
  }

  function connect() {
    const url = `/api/runs/${runId}/events${state.lastSeq ? `?after=${state.lastSeq}` : ""}`;
    source = new EventSource(url);
    KINDS.forEach((kind) => source.addEventListener(kind, (event) => accept(kind, event)));
    source.addEventListener("end", () => {
      source.close();
      source = null;
      afterEnd();
    });
  }

  async function afterEnd() {
    // The stream stops at the first terminal status it sends; a resumed run has more after it.
    try {
      const response = await fetch(`/api/runs/${runId}`, { headers: { Accept: "application/json" } });
      const run = await response.json();
      if (run.last_seq > state.lastSeq || !TERMINAL.includes(run.status)) {
        connect();
        return;
      }
    } catch (_) { /* show what we have */ }
    showProgress(state.lastEpoch / state.epochs);
    const results = $("results");
    if (results && results.dataset.loaded !== "true" && window.htmx) {
      htmx.ajax("GET", `/runs/${runId}/results`, { target: "#results", swap: "outerHTML" });
    }
  }

  // The confusion matrix's epoch slider: show the epoch while dragging, and switch to validation.
  document.addEventListener("input", (event) => {
    if (event.target.id !== "cm-epoch") return;
    const value = $("cm-epoch-value");
    if (value) value.textContent = event.target.value;
    const val = $("cm-split-val");
    if (val) val.checked = true;
  }, true);

  window.trainboardDuplicates = 0;
  window.trainboardRun = {
    points: () => cols.x.length,
    epochPoints: () => lr.x.length,
    seqs: () => state.seqs.slice(),
    lastSeq: () => state.lastSeq,
    status: () => state.status,
  };
  connect();
})();
