// The sweep page: its body arrives again over SSE (htmx's sse extension swaps it in). This script keeps
// the trials table sorted the way the reader chose across those swaps, and for the tutorial opens the
// comparison when the last run ends while the page is open.
(function () {
  "use strict";
  const page = document.getElementById("sweep-page");
  if (!page) return;
  let sort = { key: "number", descending: false };
  const startedDone = page.dataset.done === "true";

  function cellValue(row, key) {
    const raw = row.dataset[key] ?? "";
    const number = Number(raw);
    return raw !== "" && !Number.isNaN(number) ? number : raw;
  }

  function applySort() {
    const table = document.getElementById("trials-table");
    if (!table) return;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = cellValue(a, sort.key), y = cellValue(b, sort.key);
      if (x === "" && y !== "") return 1; // trials without a value last, whichever the direction
      if (y === "" && x !== "") return -1;
      const order = x < y ? -1 : x > y ? 1 : 0;
      return sort.descending ? -order : order;
    });
    rows.forEach((row) => body.appendChild(row));
    table.querySelectorAll("th[data-sort]").forEach((th) => {
      th.setAttribute("aria-sort", th.dataset.sort === sort.key ? (sort.descending ? "descending" : "ascending") : "none");
    });
  }

  page.addEventListener("click", (event) => {
    const th = event.target.closest("th[data-sort]");
    if (!th) return;
    const key = th.dataset.sort;
    sort = { key, descending: sort.key === key ? !sort.descending : key === "value" };
    applySort();
  });

  // "Train the best for longer" lives in the body: what the reader typed there (and where the caret was),
  // and the answer to a launch that failed, come back after each live swap.
  let kept = null;
  document.body.addEventListener("htmx:sseBeforeMessage", (event) => {
    if (!event.target || event.target.id !== "sweep-body") return;
    const input = document.getElementById("best-epochs");
    const errors = document.getElementById("best-errors");
    kept = {
      value: input ? input.value : "",
      focused: !!input && document.activeElement === input,
      caret: input ? [input.selectionStart, input.selectionEnd] : null,
      errors: errors ? errors.innerHTML : "",
    };
  });

  function restore() {
    if (!kept) return;
    const input = document.getElementById("best-epochs");
    if (input && kept.value) input.value = kept.value;
    if (input && kept.focused) {
      input.focus();
      if (kept.caret) input.setSelectionRange(kept.caret[0], kept.caret[1]);
    }
    const errors = document.getElementById("best-errors");
    if (errors && kept.errors) errors.innerHTML = kept.errors;
    kept = null;
  }

  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (!event.target || event.target.id !== "sweep-body") return;
    applySort();
    restore();
    const state = document.getElementById("sweep-state");
    if (!state) return;
    page.dataset.done = state.dataset.done;
    const cancel = document.getElementById("cancel-sweep-form");
    if (cancel) cancel.hidden = state.dataset.done === "true" || !["queued", "running"].includes(state.dataset.status);
    if (!startedDone && state.dataset.done === "true" && state.dataset.compareUrl) {
      window.location.assign(state.dataset.compareUrl);
    }
  });
  applySort();
})();
