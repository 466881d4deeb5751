// Every state-changing request made with the session cookie carries the session's CSRF token
// (app/auth/middleware.py): htmx requests and fetch() calls, in the X-CSRF-Token header.
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return;
  const token = meta.content;
  document.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["X-CSRF-Token"] = token;
  });
  const plainFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    const method = (init.method || "GET").toUpperCase();
    if (!["GET", "HEAD", "OPTIONS"].includes(method)) {
      const headers = new Headers(init.headers || {});
      headers.set("X-CSRF-Token", token);
      init = { ...init, headers };
    }
    return plainFetch(input, init);
  };
})();
