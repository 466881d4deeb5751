// The runs dashboard. Live updates need no code here: htmx's sse extension (#runs-live) swaps in
// each run's re-rendered row from /stream/runs (`row-<id>`), and a new run refreshes the table
// (`run-new`), filters applied by the server. Runs ticked for comparison are remembered here (and
// for the tab's session), so rows that re-render keep their tick. The same ticks drive the bulk bar:
// tag, archive or delete the ticked runs that the table shows, through the JSON API (csrf.js sends
// the CSRF header with each fetch), then refresh the table.
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
    const bar = document.getElementById("bulk-bar");
    if (bar) {
      bar.hidden = shown === 0;
      document.getElementById("bulk-count").textContent = `${shown} selected`;
    }
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

  // ---------- bulk actions ----------
  const message = document.getElementById("bulk-message");
  const dialog = document.getElementById("delete-dialog");
  let pendingDelete = [];
  function selectedIds() {
    return [...document.querySelectorAll(BOX)].filter((box) => box.checked).map((box) => Number(box.value));
  }
  function say(text, isError) {
    if (!message) return;
    message.textContent = text;
    message.classList.toggle("error", Boolean(isError));
  }
  function forget(ids) {
    ids.forEach((id) => picked.delete(String(id)));
    try { sessionStorage.setItem(KEY, JSON.stringify([...picked])); } catch (_) { /* private mode */ }
  }
  function refresh() {
    const table = document.getElementById("runs-table");
    if (table && window.htmx) window.htmx.trigger(table, "refresh");
  }
  function fileSize(bytes) {
    let size = bytes;
    for (const unit of ["B", "KiB", "MiB", "GiB"]) {
      if (size < 1024 || unit === "GiB") return unit === "B" ? `${size} B` : `${size.toFixed(1)} ${unit}`;
      size /= 1024;
    }
    return `${bytes} B`;
  }
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body), credentials: "same-origin",
    });
    let data = null;
    try { data = await response.json(); } catch (_) { /* no body */ }
    if (!response.ok) throw new Error((data && data.detail) || `the server answered ${response.status}`);
    return data;
  }
  async function act(label, work) {
    const ids = selectedIds();
    if (!ids.length) return;
    try {
      say(`${label}…`);
      say(await work(ids));
      refresh();
    } catch (error) {
      say(error.message, true);
    }
  }
  function plural(n) { return `${n} run${n === 1 ? "" : "s"}`; }
  function tagName() { return (document.getElementById("bulk-tag").value || "").trim(); }
  function on(id, handler) {
    const element = document.getElementById(id);
    if (element) element.addEventListener("click", handler);
  }
  on("bulk-tag-add", () => {
    const tag = tagName();
    if (!tag) { say("Type a tag first.", true); return; }
    act("Tagging", async (ids) => { await post("/api/runs/tags", { ids, add: [tag] }); return `Tagged ${plural(ids.length)} “${tag}”.`; });
  });
  on("bulk-tag-remove", () => {
    const tag = tagName();
    if (!tag) { say("Type the tag to remove first.", true); return; }
    act("Removing the tag", async (ids) => { await post("/api/runs/tags", { ids, remove: [tag] }); return `Removed “${tag}” from ${plural(ids.length)}.`; });
  });
  on("bulk-archive", () => act("Archiving", async (ids) => {
    await post("/api/runs/archive", { ids, archived: true });
    return `Archived ${plural(ids.length)}.`;
  }));
  on("bulk-unarchive", () => act("Unarchiving", async (ids) => {
    await post("/api/runs/archive", { ids, archived: false });
    return `Unarchived ${plural(ids.length)}.`;
  }));
  on("bulk-clear", () => { forget([...picked]); restore(document); say(""); });
  on("bulk-delete", async () => {
    const ids = selectedIds();
    if (!ids.length || !dialog) return;
    try {
      const plan = await post("/api/runs/delete", { ids, dry_run: true });
      const summary = document.getElementById("delete-summary");
      const confirm = document.getElementById("delete-confirm");
      if (plan.active.length) {
        summary.textContent = `${plural(plan.active.length)} still training (${plan.active.map((id) => `#${id}`).join(", ")}): cancel ${plan.active.length === 1 ? "it" : "them"} first, or untick ${plan.active.length === 1 ? "it" : "them"}.`;
        confirm.hidden = true;
      } else {
        summary.textContent = `Delete ${plural(plan.ids.length)} and free ${fileSize(plan.bytes_freed)} on disk?`;
        confirm.hidden = false;
      }
      pendingDelete = plan.ids;
      dialog.showModal();
    } catch (error) {
      say(error.message, true);
    }
  });
  on("delete-cancel", () => { pendingDelete = []; dialog.close(); });
  on("delete-confirm", async () => {
    const ids = pendingDelete;
    pendingDelete = [];
    dialog.close();
    if (!ids.length) return;
    try {
      say("Deleting…");
      const done = await post("/api/runs/delete", { ids });
      forget(done.ids);
      say(`Deleted ${plural(done.ids.length)}, freed ${fileSize(done.bytes_freed)}.`);
      refresh();
    } catch (error) {
      say(error.message, true);
    }
  });

  // Rows swapped in from the stream, for the browser tests.
  window.trainboardDashboard = { rowUpdates: 0 };
  document.body.addEventListener("htmx:sseMessage", () => { window.trainboardDashboard.rowUpdates += 1; });
})();
