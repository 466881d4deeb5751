// The runs dashboard: status changes of every run arrive on /api/events (SSE). A known row gets its
// new status at once and then re-renders itself (progress, accuracies); an unknown run (just
// launched elsewhere) refreshes the table, with the page's filters applied by the server.
(() => {
  "use strict";
  if (!document.getElementById("runs-table") || typeof EventSource === "undefined") return;

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
