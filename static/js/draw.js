// The predict box on a finished run: draw a digit (white on black) or upload an image, POST it to
// /api/runs/{id}/predict and show the top classes as bars. Set up whenever htmx adds the box.
(() => {
  "use strict";

  function bars(container, predictions) {
    container.replaceChildren();
    for (const p of predictions) {
      const row = document.createElement("div");
      row.className = "bar-row";
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = p.class_name;
      const track = document.createElement("span");
      track.className = "bar-track";
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.width = `${(p.probability * 100).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "num small";
      value.textContent = `${(p.probability * 100).toFixed(1)}%`;
      row.append(label, track, value);
      container.append(row);
    }
  }

  function message(container, text, isError) {
    const p = document.createElement("p");
    p.className = isError ? "error" : "muted small";
    if (isError) p.setAttribute("role", "alert");
    p.textContent = text;
    container.replaceChildren(p);
  }

  function setUp(box) {
    if (box.dataset.ready) return;
    box.dataset.ready = "1";
    const runId = box.dataset.runId;
    const results = box.querySelector("#predict-results");

    async function send(blob, filename) {
      message(results, "Predicting…", false);
      const body = new FormData();
      body.append("file", blob, filename);
      try {
        const response = await fetch(`/api/runs/${runId}/predict?top_k=5`, { method: "POST", body });
        const answer = await response.json();
        if (!response.ok) return message(results, answer.detail || `the server answered ${response.status}`, true);
        bars(results, answer.predictions);
      } catch (error) {
        message(results, `could not reach the server: ${error}`, true);
      }
    }

    box.querySelector("#predict-file")?.addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) send(file, file.name);
    });

    const canvas = box.querySelector("#draw-canvas");
    if (!canvas) return;
    const context = canvas.getContext("2d");
    const side = Number(box.dataset.side) || 28;
    // Strokes about as thick, relative to the image, as the data set's own digits.
    context.lineWidth = (canvas.width / side) * (side <= 8 ? 1.5 : 2.2);
    context.lineCap = context.lineJoin = "round";
    context.strokeStyle = "#fff";
    const clear = () => { context.fillStyle = "#000"; context.fillRect(0, 0, canvas.width, canvas.height); };
    clear();
    let drawing = false;
    const point = (event) => {
      const rect = canvas.getBoundingClientRect();
      return [(event.clientX - rect.left) * (canvas.width / rect.width), (event.clientY - rect.top) * (canvas.height / rect.height)];
    };
    canvas.addEventListener("pointerdown", (event) => {
      drawing = true;
      canvas.setPointerCapture(event.pointerId);
      const [x, y] = point(event);
      context.beginPath();
      context.moveTo(x, y);
      context.lineTo(x + 0.1, y + 0.1);
      context.stroke();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      const [x, y] = point(event);
      context.lineTo(x, y);
      context.stroke();
    });
    const stop = () => { drawing = false; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    box.querySelector("#draw-clear")?.addEventListener("click", () => { clear(); message(results, "Top classes appear here.", false); });
    box.querySelector("#draw-predict")?.addEventListener("click", () => canvas.toBlob((blob) => send(blob, "drawing.png"), "image/png"));
  }

  const scan = (root) => {
    const box = root.id === "predict" ? root : root.querySelector?.("#predict");
    if (box) setUp(box);
  };
  if (window.htmx) htmx.onLoad(scan);
  else document.addEventListener("DOMContentLoaded", () => scan(document));
})();
