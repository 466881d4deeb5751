// The runs dashboard. Live updates need no code here: htmx's sse extension (#runs-live) swaps in
// each run's re-rendered row from /stream/runs (`row-<id>`), and a new run refreshes the table
// (`run-new`), filters applied by the server. Runs ticked for comparison are remembered here (and
// for the tab's session), so rows that re-render keep their tick.
(() => {
  "use strict";
  if (!document.getElementById("runs-table")) return;

  const KEY = "trainboard.compare";
  const BOX = 'input[form="compare-form"]';
  let picked;
  try { picked = new Set(JSON.parse(sessionStorage.getItem(KEY) || "[]")); } catch (_) { picked = new Set(); }
  const button = document.getElementById("compare-button");
  function restore(root) {
    root.querySelectorAll(BOX).forEach((box) => { box.checked = picked.has(box.value); });
    const shown = [...document.querySelectorAll(BOX)].filter((box) => box.checked).length;
    if (button) button.textContent = shown ? `Compare selected (${shown})` : "Compare selected";
  }
  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!box.matches || !box.matches(BOX)) return;
    if (box.checked) picked.add(box.value); else picked.delete(box.value);
    try { sessionStorage.setItem(KEY, JSON.stringify([...picked])); } catch (_) { /* private mode */ }
    restore(document);
  });
  document.body.addEventListener("htmx:load", (event) => restore(event.detail.elt));
  restore(document);
  // Rows swapped in from the stream, for the browser tests.
  window.trainboardDashboard = { rowUpdates: 0 };
  document.body.addEventListener("htmx:sseMessage", () => { window.trainboardDashboard.rowUpdates += 1; });
})();
