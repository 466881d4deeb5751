// Behaviour every page shares, kept out of the HTML: the Content-Security-Policy allows no inline
// script (app/core/security.py).
(function () {
  // A button with data-close="#id" empties that element (e.g. the confusion-matrix gallery).
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-close]");
    if (!button) return;
    const target = button.closest(button.dataset.close) || document.querySelector(button.dataset.close);
    if (target) target.replaceChildren();
  });
  // The data set upload: a 413 (over the size limit) says why next to the file field.
  document.addEventListener("htmx:responseError", (event) => {
    const form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("#upload-form");
    if (!form || event.detail.xhr.status !== 413) return;
    const slot = document.getElementById("file-errors");
    let text = "the file is too large";
    try { text = JSON.parse(event.detail.xhr.responseText).detail; } catch (e) { /* keep the default */ }
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    slot.replaceChildren(p);
    document.getElementById("upload-file").setAttribute("aria-invalid", "true");
  });
})();
