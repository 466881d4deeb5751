// The API docs (/docs): Swagger UI from static/vendor, started here rather than in an inline script.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                                presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout" });
});
