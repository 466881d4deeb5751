// The launch form's "Use this" (templates/runs/_lr_finder.html): the suggested rate into the learning-rate field.
(function () {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-use-lr]");
    if (!button) return;
    const field = document.getElementById("config-optimizer-lr");
    if (!field) return;
    field.value = button.dataset.useLr;
    field.dispatchEvent(new Event("input", { bubbles: true }));
    field.dispatchEvent(new Event("change", { bubbles: true }));
    field.focus();
  });
})();
