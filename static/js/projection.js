// The projection page (templates/runs/projection.html): hovering a dot says its true and predicted class.
(function () {
  const chart = document.getElementById("projection-chart");
  const tip = document.getElementById("projection-tip");
  if (!chart || !tip) return;
  const show = (event) => {
    const dot = event.target.closest(".pj-dot");
    if (!dot) return;
    const { index, true: truth, pred } = dot.dataset;
    tip.textContent = `Test sample #${index}: true ${truth}, predicted ${pred}` +
      (truth === pred ? "" : " (click to see its image)");
  };
  chart.addEventListener("mouseover", show);
  chart.addEventListener("focusin", show);
})();
