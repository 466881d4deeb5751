// The live run page: draws the run's history from one snapshot (GET /api/runs/{id}/series: the step
// curves downsampled on the server to a few thousand points, epoch rows whole, the latest other events)
// and then reads the run's event stream (SSE) from the snapshot's last seq on, growing the uPlot charts,
// the progress bar and the log in place; a reconnect continues from the last seq (the SSE id). The
// server never sends a seq twice; if one ever arrives again it is skipped but reported (console.error
// and window.trainboardDuplicates, which the browser tests read), never hidden.
// Zooming a chart (drag across it) into a range where the snapshot is sparser than the run asks the
// server for that range at full resolution and draws it; zooming out (double-click) returns to the
// overview.
// Charts redraw at most once per animation frame, however many events arrive in it. The chart tools
// smooth the step curves (EMA, the raw curve kept faint), put loss on a log scale and plot against
// step, epoch or wall time (static/js/charts.js has the shared ticks and smoothing). Step events move
// the progress bar, the ETA and the training stats inside an epoch, from its first seconds.
(() => {
  "use strict";
  const root = document.getElementById("run-page");
  if (!root) return;

  const runId = root.dataset.runId;
  const TERMINAL = ["completed", "failed", "cancelled", "interrupted", "pruned"];
  const LIVE = ["queued", "starting", "running"];
  const LOG_LIMIT = 400;
  const OVERVIEW_POINTS = 2000; // per series, in the page's first snapshot
  const DETAIL_POINTS = 4000; // per series, in a zoomed range (all of them when it holds fewer)
  const KINDS = ["metric", "epoch", "status", "evaluation", "log", "memory", "checkpoint", "artifact", "histograms", "precision"];
  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  const state = {
    status: root.dataset.status,
    epochs: Number(root.dataset.epochs) || 1,
    lastSeq: 0,
    snapshotSeq: 0, // the last seq the snapshot covered: the stream starts after it
    sparse: false, // the snapshot's step curves are downsampled (zooming in fetches full resolution)
    seqs: [],
    epochTimes: new Map(),
    epochSamples: new Map(),
    lastEpoch: 0,
    lastEpochStep: 0,
    stepsPerEpoch: null,
    current: null, // the epoch under way, from its latest step event
    eta: null,
  };
  // One row per global step; per-epoch series are null between epochs (spanGaps joins them). Each row
  // also knows its place in epochs (1.5: half-way through epoch 2) and its time, for the other x axes.
  const cols = { step: [], epochAt: [], time: [], stepLoss: [], trainLoss: [], valLoss: [], stepAcc: [], trainAcc: [],
    valAcc: [] };
  const lr = { x: [], y: [] };

  let loading = false; // drawing the snapshot: its rows are the survivors already, found or inserted by step
  function findRow(step) {
    let lo = 0, hi = cols.step.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cols.step[mid] < step) lo = mid + 1; else hi = mid;
    }
    if (cols.step[lo] !== step) for (const key in cols) cols[key].splice(lo, 0, key === "step" ? step : null);
    return lo;
  }
  function rowAt(step) {
    if (loading) return findRow(step);
    const n = cols.step.length;
    if (n && step === cols.step[n - 1]) return n - 1;
    if (n && step < cols.step[n - 1]) {
      // A resumed run repeats the steps after its checkpoint: drop the abandoned tail.
      let keep = n;
      while (keep > 0 && cols.step[keep - 1] >= step) keep--;
      for (const key in cols) cols[key].length = keep;
    }
    for (const key in cols) cols[key].push(null);
    cols.step[cols.step.length - 1] = step;
    return cols.step.length - 1;
  }
  // A row's place by epoch and by time: never before the row ahead of it (uPlot wants x in order), and
  // the previous row's when an event does not say (a script's step without an epoch).
  function place(r, epochAt, ts) {
    const later = (value, previous) => (value != null ? Math.max(value, previous ?? value) : (previous ?? 0));
    cols.epochAt[r] = later(epochAt, r > 0 ? cols.epochAt[r - 1] : null);
    cols.time[r] = later(ts, r > 0 ? cols.time[r - 1] : null);
  }

  // ---------- charts ----------
  // The view: smoothing of the step curves, the x axis (step | epoch | time), log-scale loss; kept
  // for the next run page too.
  const VIEW_KEY = "trainboard.charts";
  const C = window.trainboardCharts;
  const view = { smoothing: 0.6, x: "step", log: false };
  try { Object.assign(view, JSON.parse(localStorage.getItem(VIEW_KEY) || "{}")); } catch (_) { /* private mode */ }
  if (!(view.x in C.X)) view.x = "step";

  const charts = {};
  // The zoomed range at full resolution (or as fine as the server sends it): {x, lo, hi, sparse, rows}.
  let zoom = null;
  let zoomToken = 0;
  const value = (u, v) => (v == null ? "–" : Number(v).toPrecision(4));
  const line = (label, color, width, points, alpha = 1) => ({
    label, stroke: color, width, alpha, spanGaps: true, points: { show: points, size: 5, fill: color }, value,
  });
  const curves = (what) => [
    line(`${what} (step, raw)`, css("--chart-step"), 1, false, 0.3),
    line(`${what} (step, smoothed)`, css("--chart-step"), 1.5, false),
    line("train (epoch)", css("--chart-1"), 2, true),
    line("validation", css("--chart-2"), 2, true),
  ];
  function axes(el, x, yOpts = {}) {
    // Axis colours are read at each draw: a theme change (static/js/theme.js) redraws them below.
    const axis = { stroke: () => css("--muted"), grid: { stroke: () => css("--border"), width: 1 }, ticks: { stroke: () => css("--border") } };
    return [
      { ...axis, label: x.label, labelSize: 18, incrs: x.incrs, values: C.ticks(el, "data-x-ticks", x.tick) },
      { ...axis, size: 56, values: C.ticks(el, "data-y-ticks", C.number), ...yOpts },
    ];
  }
  function makeChart(name, el, series, opts) {
    if (!el || typeof uPlot === "undefined") return;
    charts[name]?.chart.destroy();
    const x = opts.x;
    const chart = new uPlot({
      width: Math.max(el.clientWidth, 200),
      height: opts.height || 220,
      scales: { x: { time: false, range: x.range }, ...(opts.scales || {}) },
      axes: axes(el, x, opts.yAxis),
      legend: { live: true },
      cursor: { drag: { x: true, y: false }, dataIdx: C.nearestIdx },
      series: [{ label: x.label, value: (u, v) => (v == null ? "–" : x.hover(v)) }, ...series],
      hooks: opts.zoomable ? { setScale: [(u, key) => { if (key === "x") zoomed(name, u); }] } : {},
    }, opts.data(), el);
    el.dataset.xAxis = opts.xName;
    el.dataset.smoothing = String(view.smoothing);
    el.dataset.yScale = opts.scales?.y?.distr === 3 ? "log" : "linear";
    el.uplot = chart; // for the browser tests
    charts[name] = { chart, el, data: opts.data, zoomed: false };
  }

  // A chart's x scale changed: drag-select zoomed in, a double-click zoomed out, or new data re-ranged it.
  function zoomed(name, u) {
    const entry = charts[name];
    if (!entry || entry.chart !== u) return;
    const xs = u.data[0];
    let first = null, last = null;
    for (let i = 0; i < xs.length; i++) if (xs[i] != null) { first = xs[i]; break; }
    for (let i = xs.length - 1; i >= 0; i--) if (xs[i] != null) { last = xs[i]; break; }
    const { min, max } = u.scales.x;
    entry.zoomed = first != null && (min > first || max < last);
    entry.el.dataset.zoomed = String(entry.zoomed);
    if (!entry.zoomed) {
      if (zoom && !Object.values(charts).some((c) => c.zoomed)) { zoom = null; zoomToken++; showDetail(""); redraw(); }
      return;
    }
    if (!state.sparse) return; // the overview is every row already
    if (zoom && zoom.x === view.x && !zoom.sparse && zoom.lo <= min && zoom.hi >= max) return; // drawn in full
    fetchDetail(min, max);
  }
  function showDetail(what) {
    for (const key of ["loss", "accuracy"]) if (charts[key]) charts[key].el.dataset.detail = what;
  }
  async function fetchDetail(lo, hi) {
    const token = ++zoomToken, x = view.x;
    showDetail("loading");
    try {
      const response = await fetch(`/api/runs/${runId}/series?x=${x}&from=${lo}&to=${hi}&points=${DETAIL_POINTS}`,
        { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const detail = await response.json();
      if (token !== zoomToken || view.x !== x) return; // zoomed elsewhere (or out) meanwhile
      zoom = { x, lo, hi, sparse: detail.downsampled, rows: detail.steps };
      showDetail(detail.downsampled ? "sparse" : "full");
      redraw();
    } catch (error) {
      if (token === zoomToken) showDetail("");
      console.error(`run ${runId}: the zoomed range did not load: ${error}`);
    }
  }

  // The rows the curves draw: the overview, and in a zoomed range the rows fetched for it (with the
  // overview's epoch rows there merged in by step). `x` is the column of the chosen x axis.
  function viewCols() {
    const x = xColumn();
    if (!zoom || zoom.x !== view.x) return { ...cols, x };
    const start = view.x === "time" ? (cols.time.find((t) => t != null) ?? 0) : 0;
    const d = zoom.rows;
    const dx = view.x === "step" ? d.step : view.x === "epoch" ? d.epoch_at : d.ts.map((t) => (t == null ? null : t - start));
    let i0 = 0;
    while (i0 < x.length && !(x[i0] >= zoom.lo)) i0++;
    let i1 = i0;
    while (i1 < x.length && x[i1] <= zoom.hi) i1++;
    const out = { x: [] };
    for (const key in cols) out[key] = [];
    const EPOCH_KEYS = ["trainLoss", "valLoss", "trainAcc", "valAcc"];
    const overview = (i, withSteps) => {
      for (const key in cols) out[key].push(cols[key][i]);
      out.x.push(x[i]);
      if (!withSteps) { out.stepLoss[out.stepLoss.length - 1] = null; out.stepAcc[out.stepAcc.length - 1] = null; }
    };
    for (let i = 0; i < i0; i++) overview(i, true);
    const epochRows = [];
    for (let i = i0; i < i1; i++) if (EPOCH_KEYS.some((key) => cols[key][i] != null)) epochRows.push(i);
    let a = 0, b = 0;
    while (a < d.step.length || b < epochRows.length) {
      const sa = a < d.step.length ? d.step[a] : Infinity, sb = b < epochRows.length ? cols.step[epochRows[b]] : Infinity;
      if (sb < sa) { overview(epochRows[b++], false); continue; }
      out.step.push(d.step[a]); out.epochAt.push(d.epoch_at[a]); out.time.push(d.ts[a]); out.x.push(dx[a]);
      out.stepLoss.push(d.loss[a]); out.stepAcc.push(d.accuracy[a]);
      for (const key of EPOCH_KEYS) out[key].push(sb === sa ? cols[key][epochRows[b]] : null);
      if (sb === sa) b++;
      a++;
    }
    for (let i = i1; i < x.length; i++) overview(i, true);
    return out;
  }

  function xColumn() {
    if (view.x === "epoch") return cols.epochAt;
    if (view.x === "time") {
      const start = cols.time.find((t) => t != null) ?? 0;
      return cols.time.map((t) => (t == null ? null : t - start));
    }
    return cols.step;
  }
  // What the loss and accuracy charts plot now: raw step curve, its smoothed copy, epoch means, validation.
  function curveData(stepCol, trainCol, valCol, logScale) {
    const positive = (col) => (logScale ? col.map((v) => (v > 0 ? v : null)) : col); // log: no 0 or below
    const rows = viewCols();
    const raw = positive(rows[stepCol]);
    return [rows.x, raw, C.ema(raw, view.smoothing), positive(rows[trainCol]), positive(rows[valCol])];
  }
  const lossData = () => curveData("stepLoss", "trainLoss", "valLoss", view.log);
  const accuracyData = () => curveData("stepAcc", "trainAcc", "valAcc", false);

  function buildCharts() {
    const x = C.X[view.x];
    zoom = null; // new charts show the whole run
    zoomToken++;
    makeChart("loss", $("chart-loss"), curves("train"), { x, xName: view.x, data: lossData, zoomable: true,
      scales: view.log ? { y: { distr: 3, log: 10 } } : {} });
    makeChart("accuracy", $("chart-accuracy"), curves("train"), { x, xName: view.x, data: accuracyData, zoomable: true,
      scales: { y: { range: [0, 1] } } });
    showDetail("");
    makeChart("lr", $("chart-lr"), [line("learning rate", css("--chart-3"), 2, true)], {
      x: C.X.epoch, xName: "epoch", data: () => [lr.x, lr.y], height: 150,
      scales: { y: { range: (u, min, max) => [0, (max || 1) * 1.15] } },
      yAxis: { values: C.ticks($("chart-lr"), "data-y-ticks", (t) => (t === 0 ? "0" : t.toExponential(1))) } });
  }
  buildCharts();

  let frame = 0;
  function redraw() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      for (const { chart, data, el, zoomed: keep } of Object.values(charts)) {
        chart.setData(data(), !keep); // a zoomed chart keeps its range while live rows arrive
        el.dataset.smoothing = String(view.smoothing); // what the curves drawn now are smoothed with
      }
      $("chart-loss")?.setAttribute("data-points", String(cols.step.length));
    });
  }
  // The series colours differ between the themes: build the charts again in the new ones.
  document.addEventListener("trainboard:theme", () => buildCharts());
  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(() => Object.values(charts).forEach(({ chart, el }) => {
      const width = Math.max(el.clientWidth, 200);
      if (Math.abs(width - chart.width) > 2) chart.setSize({ width, height: chart.height });
    })).observe(document.querySelector(".charts") || root);
  }

  // The chart tools: smoothing redraws, the x axis and the log scale rebuild the charts.
  const smoothing = $("chart-smoothing"), xSelect = $("chart-x"), logBox = $("chart-log");
  function showView() {
    if (smoothing) smoothing.value = String(view.smoothing);
    if ($("chart-smoothing-value")) $("chart-smoothing-value").textContent = Number(view.smoothing).toFixed(2);
    if (xSelect) xSelect.value = view.x;
    if (logBox) logBox.checked = view.log;
  }
  function changeView(changes, rebuild) {
    Object.assign(view, changes);
    try { localStorage.setItem(VIEW_KEY, JSON.stringify(view)); } catch (_) { /* private mode */ }
    showView();
    if (rebuild) buildCharts(); else redraw();
  }
  smoothing?.addEventListener("input", () => changeView({ smoothing: Number(smoothing.value) }, false));
  xSelect?.addEventListener("change", () => changeView({ x: xSelect.value }, true));
  logBox?.addEventListener("change", () => changeView({ log: logBox.checked }, true));
  showView();

  // ---------- progress, stats, log ----------
  const fmtPct = (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`);
  const fmtNum = (v, digits = 4) => (v == null ? "–" : Number(v).toFixed(digits));
  const fmtInt = (v) => Number(v).toLocaleString("en-US");
  const duration = (seconds) => (seconds == null || !isFinite(seconds) ? "" : C.duration(seconds));
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
  }

  // The epoch under way, when its latest step event belongs to it (running, and not yet finished).
  function underWay() {
    const c = state.current;
    return state.status === "running" && c && c.epoch === state.lastEpoch + 1 && state.lastEpoch < state.epochs ? c : null;
  }

  function showProgress() {
    const live = underWay();
    const fraction = live ? live.fraction : 0;
    const percent = state.status === "completed" ? 100 : Math.min(100, Math.max(0, (state.lastEpoch + fraction) / state.epochs * 100));
    $("run-progress-fill").style.width = `${percent.toFixed(1)}%`;
    $("run-progress").setAttribute("aria-valuenow", String(state.lastEpoch));
    $("run-progress-text").textContent = live && live.steps
      ? `epoch ${live.epoch} of ${state.epochs} · step ${fmtInt(live.step)}/${fmtInt(live.steps)}`
      : `epoch ${state.lastEpoch} of ${state.epochs}`;
    // ETA: the pace of the epoch under way (from its first seconds), else the mean finished epoch.
    let remaining = null;
    if (live && live.elapsed > 0 && fraction > 0) {
      remaining = live.elapsed / fraction * (state.epochs - state.lastEpoch - fraction);
    } else if (state.status === "running" && state.epochTimes.size && state.lastEpoch < state.epochs) {
      const times = [...state.epochTimes.values()];
      remaining = times.reduce((a, b) => a + b, 0) / times.length * (state.epochs - state.lastEpoch);
    }
    state.eta = remaining;
    $("run-eta").textContent = remaining != null ? `ETA ${duration(remaining)}` : "";
  }

  // The figures of app/runs/figures.py: over the kept epochs (the last row of each epoch) and the epoch
  // under way, samples/s = training samples / training time; time per epoch = training time / epochs.
  function showSpeed() {
    let time = 0, samples = 0, epochs = 0, counted = true;
    for (const [e, t] of state.epochTimes) {
      if (!(t > 0)) continue;
      time += t;
      epochs += 1;
      const n = state.epochSamples.get(e);
      if (n == null) counted = false; else samples += n;
    }
    const live = underWay();
    const liveTime = live && live.elapsed > 0 && live.speed != null ? live.elapsed : 0;
    const speed = counted && time + liveTime > 0 ? (samples + (liveTime ? live.speed * liveTime : 0)) / (time + liveTime) : null;
    $("stat-speed").textContent = speed != null ? Math.round(speed).toLocaleString("en-US") : "–";
    $("stat-epoch-time").textContent = epochs ? `${(time / epochs).toFixed(2)} s` : "–";
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
      // Where in its epoch this step is: the trainer says so; older ones only counted steps.
      let fraction = d.epoch_progress;
      if (fraction == null && d.epoch_steps) fraction = d.epoch_step / d.epoch_steps;
      if (fraction == null && state.stepsPerEpoch) fraction = Math.min(1, (d.step - state.lastEpochStep) / state.stepsPerEpoch);
      place(r, d.epoch != null ? d.epoch - 1 + (fraction ?? 0) : null, d.ts);
      if (d.epoch != null && fraction != null) {
        state.current = { epoch: d.epoch, fraction, step: d.epoch_step, steps: d.epoch_steps, elapsed: d.epoch_elapsed,
          speed: d.samples_per_sec };
      }
      if (underWay()) {
        const so = `epoch ${d.epoch} so far`;
        $("stat-train-loss").textContent = fmtNum(d.epoch_loss ?? d.loss);
        $("stat-train-loss").title = so;
        $("stat-train-acc").textContent = fmtPct(d.epoch_accuracy ?? d.accuracy);
        $("stat-train-acc").title = so;
        showSpeed();
      }
      showProgress();
      redraw();
    },
    epoch(d, seq) {
      const r = rowAt(d.step);
      cols.trainLoss[r] = d.train_loss;
      cols.valLoss[r] = d.val_loss;
      cols.trainAcc[r] = d.train_accuracy;
      cols.valAcc[r] = d.val_accuracy;
      place(r, d.epoch, d.ts);
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
      const mean = `the mean over epoch ${d.epoch}`;
      $("stat-train-loss").textContent = fmtNum(d.train_loss);
      $("stat-train-loss").title = mean;
      $("stat-train-acc").textContent = fmtPct(d.train_accuracy);
      $("stat-train-acc").title = mean;
      $("stat-val-loss").textContent = fmtNum(d.val_loss);
      $("stat-val-acc").textContent = fmtPct(d.val_accuracy);
      showSpeed();
      showProgress();
      addLog(seq, `epoch ${d.epoch}/${d.epochs}: loss ${fmtNum(d.train_loss)}, acc ${fmtPct(d.train_accuracy)}` +
        (d.val_loss != null ? `, val loss ${fmtNum(d.val_loss)}, val acc ${fmtPct(d.val_accuracy)}` : "") +
        `, lr ${Number(d.lr).toPrecision(3)}`, "epoch");
      redraw();
    },
    status(d, seq) {
      setStatus(d.status, d.reason);
      showProgress();
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
    precision(d) { // what the trainer chose (templates/runs/_precision.html)
      const stat = $("stat-precision");
      if (!stat || !d.precision) return;
      stat.textContent = `${d.precision} `;
      const why = document.createElement("span");
      why.className = "muted small";
      why.id = "stat-precision-reason";
      why.textContent = `(${d.reason || ""})`;
      stat.append(why);
      stat.title = d.reason || "";
    },
  };

  // ---------- the snapshot ----------
  // The history as of the snapshot's last seq: step rows (downsampled when the run is long) straight into
  // the columns, then the epoch rows, the latest other events and the latest step event through the same
  // handlers as live events, in seq order.
  function loadSnapshot(snapshot) {
    loading = true;
    try {
      const s = snapshot.steps;
      for (let i = 0; i < s.step.length; i++) {
        const r = findRow(s.step[i]);
        cols.stepLoss[r] = s.loss[i];
        cols.stepAcc[r] = s.accuracy[i];
        place(r, s.epoch_at[i], s.ts[i]);
      }
      const events = [...snapshot.epochs.map(({ seq, ...data }) => ({ seq, kind: "epoch", data })),
        ...(snapshot.events || []).map((e) => ({ ...e, kind: e.kind === "step" ? "metric" : e.kind }))];
      events.sort((a, b) => a.seq - b.seq);
      for (const { seq, kind, data } of events) handlers[kind]?.(data, seq);
    } finally {
      loading = false;
    }
    state.sparse = Boolean(snapshot.downsampled);
    state.lastSeq = state.snapshotSeq = snapshot.last_seq;
    root.dataset.snapshot = snapshot.downsampled ? "downsampled" : "full";
    redraw();
  }

  async function start() {
    try {
      const response = await fetch(`/api/runs/${runId}/series?points=${OVERVIEW_POINTS}&events=${LOG_LIMIT}`,
        { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      loadSnapshot(await response.json());
    } catch (error) { // the stream replays the history instead
      console.error(`run ${runId}: no snapshot (${error}); reading the whole stream`);
    }
    root.dispatchEvent(new CustomEvent("trainboard:run-snapshot", { detail: { lastSeq: state.lastSeq } }));
    connect();
  }

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
    // Panels with their own script (static/js/histograms.js) take the events they draw from here.
    root.dispatchEvent(new CustomEvent("trainboard:run-event", { detail: { kind, data, seq } }));
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
    showProgress();
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
    points: () => cols.step.length,
    epochPoints: () => lr.x.length,
    seqs: () => state.seqs.slice(),
    lastSeq: () => state.lastSeq,
    snapshotSeq: () => state.snapshotSeq,
    // Zoom a chart's x axis to [min, max] as a drag across it does; zoomOut() as a double-click does.
    zoom: (name, min, max) => charts[name].chart.setScale("x", { min, max }),
    zoomOut: (name) => { const { chart } = charts[name]; chart.setData(chart.data, true); },
    status: () => state.status,
    // Where the run is: epochs finished, the epoch under way (null between epochs) and the ETA (s).
    progress: () => ({ epochsDone: state.lastEpoch, epochs: state.epochs, current: underWay(), eta: state.eta }),
    // A chart as drawn: its view, scales and the columns it plots (x first), series labels and alphas.
    chart: (name) => {
      const { chart } = charts[name];
      return { view: { ...view }, xLabel: chart.series[0].label, yDistr: chart.scales.y.distr,
        labels: chart.series.slice(1).map((s) => s.label), alphas: chart.series.slice(1).map((s) => s.alpha),
        data: chart.data.map((col) => Array.from(col)) };
    },
  };
  start();
})();
