// Light or dark: the choice saved by the top bar's toggle (localStorage "trainboard-theme"), else the
// system's setting, as <html data-theme> (static/css/app.css keys its colours on it). Loaded in <head>
// without defer, so the first paint already has it: the Content-Security-Policy allows no inline script.
// A choice equal to the system's setting is not kept: the page follows the system again.
// Charts drawn on a canvas listen for "trainboard:theme" to take the new colours.
(function () {
  "use strict";
  const KEY = "trainboard-theme";
  const root = document.documentElement;
  const system = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const systemTheme = () => (system && system.matches ? "dark" : "light");

  function saved() {
    try {
      const value = localStorage.getItem(KEY);
      return value === "dark" || value === "light" ? value : null;
    } catch (e) {
      return null;  // storage blocked: follow the system
    }
  }
  let choice = saved();

  function apply() {
    const theme = choice || systemTheme();
    const changed = root.dataset.theme !== theme;
    root.dataset.theme = theme;
    const button = document.getElementById("theme-toggle");
    if (button) {
      button.setAttribute("aria-pressed", String(theme === "dark"));
      button.title = theme === "dark" ? "Switch to light mode" : "Switch to dark mode";
    }
    if (changed) document.dispatchEvent(new CustomEvent("trainboard:theme", { detail: { theme } }));
  }

  apply();
  document.addEventListener("DOMContentLoaded", apply);  // the toggle exists now
  if (system && system.addEventListener) system.addEventListener("change", apply);
  window.addEventListener("storage", (event) => {  // chosen in another tab
    if (event.key === KEY) { choice = saved(); apply(); }
  });
  document.addEventListener("click", (event) => {
    if (!event.target.closest || !event.target.closest("#theme-toggle")) return;
    const next = root.dataset.theme === "dark" ? "light" : "dark";
    choice = next === systemTheme() ? null : next;
    try {
      if (choice) localStorage.setItem(KEY, choice);
      else localStorage.removeItem(KEY);
    } catch (e) { /* storage blocked: this page switches all the same */ }
    apply();
  });
})();
