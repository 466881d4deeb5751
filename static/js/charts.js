// Chart helpers shared by the run page and compare (uPlot): the axis ticks people expect (whole steps
// and epochs, never "1.1, 1.2" epochs; times as "30 s" or "2 min", never "-0.1 s"), the x range without
// padding, and exponential-moving-average smoothing as TensorBoard does it.
window.trainboardCharts = (() => {
  "use strict";
  const WHOLE = [];
  for (let power = 1; power <= 1e9; power *= 10) WHOLE.push(power, 2 * power, 5 * power);
  const SECONDS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172800, 432000, 864000];

  // 75 → "1 min 15 s", 7200 → "2 h"; `digits` decimals under a minute (the hover value).
  function duration(seconds, digits = 0) {
    if (seconds == null || !isFinite(seconds)) return "–";
    const s = Math.max(0, seconds);
    if (s < 60) return `${digits ? s.toFixed(digits) : Math.round(s)} s`;
    const whole = Math.round(s);
    if (whole < 3600) {
      const m = Math.floor(whole / 60), rest = whole % 60;
      return rest ? `${m} min ${rest} s` : `${m} min`;
    }
    const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }

  const whole = (v) => Math.round(v).toLocaleString("en-US");

  // x ranges without padding (uPlot's default pads: "-0.1 s"); one point gets a unit either side.
  const span = (low, high) => (high > low ? [low, high] : [Math.max(0, low - 1), high + 1]);
  const xRange = (u, min, max) => (min == null ? [0, 1] : span(min, max));

  // The x axis by "step", "epoch" (whole epochs at both ends) or "time" (seconds since the first point,
  // from 0): ticks, labels, the hover value and the range.
  const X = {
    step: { label: "step", incrs: WHOLE, tick: whole, hover: whole, range: xRange },
    epoch: { label: "epoch", incrs: WHOLE, tick: whole, hover: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(2)),
      range: (u, min, max) => (min == null ? [0, 1] : span(Math.floor(min), Math.ceil(max))) },
    time: { label: "wall time", incrs: SECONDS, tick: (v) => duration(v), hover: (v) => duration(v, 1),
      range: (u, min, max) => (min == null ? [0, 1] : span(0, max)) },
  };

  // Debiased exponential moving average (TensorBoard's smoothing): weight 0 is the raw series, 0.99
  // nearly flat; gaps (null) stay gaps and do not reset the average.
  function ema(values, weight) {
    const out = new Array(values.length);
    let last = 0, count = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v == null || !isFinite(v)) { out[i] = null; continue; }
      last = last * weight + (1 - weight) * v;
      count += 1;
      out[i] = weight > 0 ? last / (1 - weight ** count) : v;
    }
    return out;
  }

  // Tick labels that also land on the chart element (data-x-ticks / data-y-ticks): what the axes show,
  // readable by the browser tests (uPlot draws them on a canvas).
  function ticks(el, attribute, format) {
    return (u, splits) => {
      const labels = splits.map((v) => (v == null ? "" : format(v)));
      el.setAttribute(attribute, labels.filter((label) => label !== "").join(" | "));
      return labels;
    };
  }

  // A y value as people read it: 0.0123, 1.25, 1,250, 1.2e-5.
  function number(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace("e+", "e");
    return String(Number(v.toPrecision(3)));
  }

  // Hover: each series shows its value nearest the cursor (a validation point between two epochs, a
  // step value where only an epoch row sits), not "–" wherever it has no point at that exact x.
  function nearestIdx(u, seriesIdx, closestIdx) {
    const data = u.data[seriesIdx];
    if (seriesIdx === 0 || data[closestIdx] != null) return closestIdx;
    const xs = u.data[0], x = xs[closestIdx];
    for (let left = closestIdx - 1, right = closestIdx + 1; left >= 0 || right < data.length; left--, right++) {
      const l = left >= 0 && data[left] != null ? left : null, r = right < data.length && data[right] != null ? right : null;
      if (l != null && r != null) return x - xs[l] <= xs[r] - x ? l : r;
      if (l != null || r != null) return l ?? r;
    }
    return closestIdx;
  }

  return { X, WHOLE, duration, xRange, ema, ticks, number, nearestIdx };
})();
