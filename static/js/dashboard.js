// The runs dashboard: status changes of every run arrive on /api/events (SSE). A known row gets its
// new status at once and then re-renders itself (progress, accuracies); an unknown run (just
// launched elsewhere) refreshes the table, with the page's filters applied by the server.
// Runs ticked for comparison are remembered here (and for the tab's session), so rows that
// re-render keep their tick.
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
  if (typeof EventSource === "undefined") return;

  let tableRefresh = 0;
  function refreshTable() {
    clearTimeout(tableRefresh);
    tableRefresh = setTimeout(() => {
      htmx.ajax("GET", window.location.pathname + window.location.search, { target: "#runs-table", swap: "outerHTML" });
    }, 150);
  }

  const source = new EventSource("/api/events");
  source.addEventListener("status", (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch (_) { return; }
    const row = document.getElementById(`run-row-${data.run_id}`);
    if (!row) return refreshTable();
    row.dataset.status = data.status;
    const badge = row.querySelector("[data-status-badge]");
    if (badge) {
      badge.textContent = data.status;
      badge.className = `status status-${data.status}`;
    }
    htmx.ajax("GET", `/runs/${data.run_id}/row`, { target: row, swap: "outerHTML" });
  });
})();
