// The run page's "Layers over epochs" panel (templates/runs/_histograms.html): per layer, a heat strip of its
// weights, gradients or activations (a row per epoch, the first at the top; a column per bin on the layer's
// common value range over all epochs; colour = the bin's count, relative to its row's largest), the gradient
// norm per layer over epochs and the dead-ReLU fraction, and an alert when a layer's gradients explode or
// vanish. It reads GET /api/runs/{id}/histograms once the run page's snapshot is drawn, then takes each
// epoch's `histograms` event from the page's stream (static/js/run.js re-dispatches every event it reads
// as `trainboard:run-event` on #run-page). A resumed run's repeated epochs replace the abandoned ones.
(() => {
  "use strict";
  const root = document.getElementById("run-page");
  const panel = document.getElementById("histograms");
  if (!root || !panel) return;
  const runId = root.dataset.runId;
  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const byEpoch = new Map(); // epoch → event (with its seq)
  let what = "weights";
  let frame = 0;

  function take(event) {
    if (!event || typeof event.epoch !== "number" || !Array.isArray(event.layers)) return;
    event.layers = event.layers.filter((layer) => layer && typeof layer.name === "string");
    const seq = event.seq ?? 0;
    const held = byEpoch.get(event.epoch);
    if (held && (held.seq ?? 0) >= seq) return; // the same event, from the answer and the stream
    // A resumed run repeats epochs: an event drops the ones at or after its epoch that came before it.
    for (const [epoch, old] of byEpoch) if (epoch >= event.epoch && (old.seq ?? 0) < seq) byEpoch.delete(epoch);
    byEpoch.set(event.epoch, event);
    schedule();
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  function epochs() { return [...byEpoch.keys()].sort((a, b) => a - b).map((e) => byEpoch.get(e)); }

  const fmt = (v) => (v == null ? "–" : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : Number(v.toPrecision(3)).toString());
  const pct = (v) => (v == null ? "–" : `${(100 * v).toFixed(v > 0 && v < 0.01 ? 1 : 0)}%`);

  // Layers in model order, from every epoch (a layer's name is its place in the spec: "#2 Dense").
  function layerNames(list) {
    const seen = new Map();
    for (const ev of list) for (const layer of ev.layers) if (!seen.has(layer.name)) seen.set(layer.name, layer);
    return [...seen.values()].sort((a, b) => a.index - b.index);
  }

  function strip(canvas, rows) {
    const width = canvas.clientWidth || 260, height = canvas.clientHeight || 120;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const usable = (h) => h && Number.isFinite(h.lo) && Number.isFinite(h.hi) && Array.isArray(h.counts) && h.counts.length;
    rows = rows.map((h) => (usable(h) ? h : null)); // a script's own events may carry anything
    const have = rows.filter(Boolean);
    if (!have.length) return null;
    let lo = Math.min(...have.map((h) => h.lo)), hi = Math.max(...have.map((h) => h.hi));
    if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
    const x = (v) => ((v - lo) / (hi - lo)) * width;
    const rowH = height / rows.length;
    ctx.fillStyle = css("--accent") || "#2f6fed";
    rows.forEach((h, r) => {
      if (!h) return;
      const top = Math.max(...h.counts, 1);
      const bins = h.counts.length;
      const w = h.hi > h.lo ? (h.hi - h.lo) / bins : 0;
      h.counts.forEach((count, i) => {
        if (!count) return;
        const x0 = x(h.lo + i * w), x1 = w ? x(h.lo + (i + 1) * w) : x0 + 2;
        ctx.globalAlpha = 0.12 + 0.88 * Math.sqrt(count / top);
        ctx.fillRect(x0, r * rowH, Math.max(1, x1 - x0), Math.max(1, rowH - (rows.length > 1 ? 0.5 : 0)));
      });
    });
    ctx.globalAlpha = 1;
    return [lo, hi];
  }

  function spark(values) {
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "hist-spark");
    svg.setAttribute("viewBox", "0 0 100 20");
    svg.setAttribute("preserveAspectRatio", "none");
    const logs = values.map((v) => (v > 0 ? Math.log10(v) : null));
    const known = logs.filter((v) => v != null);
    if (known.length) {
      const min = Math.min(...known), max = Math.max(...known);
      const pts = logs.map((v, i) => (v == null ? null : `${values.length > 1 ? (100 * i) / (values.length - 1) : 50},${
        max > min ? 18 - (16 * (v - min)) / (max - min) : 10}`)).filter(Boolean);
      const line = document.createElementNS(svgNS, "polyline");
      line.setAttribute("points", pts.join(" "));
      svg.appendChild(line);
      const title = document.createElementNS(svgNS, "title");
      title.textContent = `gradient norm by epoch (log scale): ${values.map(fmt).join(", ")}`;
      svg.appendChild(title);
    }
    return svg;
  }

  function draw() {
    const list = epochs();
    $("hist-empty").hidden = list.length > 0;
    $("hist-table-wrap").hidden = list.length === 0;
    const layers = layerNames(list);
    const grid = $("hist-layers");
    grid.replaceChildren();
    const tbody = $("hist-table").tBodies[0];
    tbody.replaceChildren();
    const flagged = new Map(); // layer → Set of kinds, over the whole run
    for (const ev of list) for (const w of ev.warnings || []) {
      if (!flagged.has(w.layer)) flagged.set(w.layer, new Map());
      flagged.get(w.layer).set(w.kind, `${w.message} (epoch ${ev.epoch})`);
    }
    for (const layer of layers) {
      const rows = list.map((ev) => ev.layers.find((l) => l.name === layer.name)?.[what] ?? null);
      const flags = flagged.get(layer.name);
      const figure = document.createElement("figure");
      figure.className = `hist-layer${flags ? " flagged" : ""}`;
      figure.dataset.layer = layer.name;
      const head = document.createElement("h3");
      head.append(layer.name);
      const desc = document.createElement("span");
      desc.className = "muted small";
      desc.textContent = layer.description && layer.description !== layer.type ? layer.description : "";
      head.append(desc);
      for (const kind of flags ? flags.keys() : []) {
        const badge = document.createElement("span");
        badge.className = "hist-flag";
        badge.textContent = kind;
        head.append(badge);
      }
      const canvas = document.createElement("canvas");
      canvas.dataset.epochs = String(rows.filter(Boolean).length);
      canvas.dataset.what = what;
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `${layer.name} ${what}: ${rows.filter(Boolean).length} epochs`);
      const axis = document.createElement("div");
      axis.className = "hist-axis";
      figure.append(head, canvas, axis);
      grid.append(figure);
      const range = strip(canvas, rows);
      const left = document.createElement("span"), right = document.createElement("span");
      left.textContent = range ? fmt(range[0]) : "no values";
      right.textContent = range ? fmt(range[1]) : "";
      const middle = document.createElement("span");
      const shown = list.filter((ev, i) => rows[i]).map((ev) => ev.epoch);
      middle.textContent = shown.length ? `epoch ${shown[0]}${shown.length > 1 ? `–${shown[shown.length - 1]} ↓` : ""}` : "";
      axis.append(left, middle, right);

      const latest = list[list.length - 1].layers.find((l) => l.name === layer.name) || {};
      const tr = tbody.insertRow();
      tr.dataset.layer = layer.name;
      tr.insertCell().textContent = layer.name;
      const norm = tr.insertCell(); norm.className = "num"; norm.textContent = fmt(latest.grad_norm);
      const max = tr.insertCell(); max.className = "num"; max.textContent = fmt(latest.grad_norm_max);
      tr.insertCell().append(spark(list.map((ev) => ev.layers.find((l) => l.name === layer.name)?.grad_norm ?? null)));
      const dead = tr.insertCell(); dead.className = "num"; dead.textContent = latest.dead_fraction == null ? "" : pct(latest.dead_fraction);
      tr.insertCell().textContent = flags ? [...flags.keys()].join(", ") : "";
    }
    const alert = $("hist-alert");
    if (flagged.size) {
      alert.replaceChildren();
      const title = document.createElement("strong");
      title.textContent = "Gradient trouble: ";
      const list2 = document.createElement("ul");
      for (const [name, kinds] of flagged) for (const [kind, message] of kinds) {
        const item = document.createElement("li");
        item.dataset.kind = kind;
        item.textContent = `${kind} gradients in ${name}: ${message.replace(/^.*?: /, "")}`;
        list2.append(item);
      }
      alert.append(title, list2);
      alert.hidden = false;
    } else {
      alert.hidden = true;
    }
    panel.dataset.epochs = String(list.length);
  }

  async function load() {
    try {
      const response = await fetch(`/api/runs/${runId}/histograms`, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const answer = await response.json();
      for (const event of answer.epochs) take(event);
    } catch (error) {
      console.error(`run ${runId}: no histograms (${error})`);
    }
    panel.dataset.loaded = "true";
    schedule();
  }

  root.addEventListener("trainboard:run-event", (event) => {
    const { kind, data, seq } = event.detail || {};
    if (kind === "histograms") take({ ...data, seq });
  });
  panel.addEventListener("change", (event) => {
    if (event.target.name !== "hist-what") return;
    what = event.target.value;
    schedule();
  });
  document.addEventListener("trainboard:theme", schedule);
  window.addEventListener("resize", schedule);
  // After the page's snapshot: the answer then covers every event the stream will not send again.
  if (root.dataset.snapshot) load();
  else root.addEventListener("trainboard:run-snapshot", load, { once: true });

  window.trainboardHistograms = {
    epochs: () => epochs().map((ev) => ev.epoch),
    layers: () => layerNames(epochs()).map((l) => l.name),
  };
})();
