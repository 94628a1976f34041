// Starts Swagger UI on this service's OpenAPI document. A file rather than
// an inline script so that the page's Content-Security-Policy can forbid
// inline scripts.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default validatorUrl makes the page fetch a badge from
  // validator.swagger.io; the page must make no external request.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  defaultModelsExpandDepth: 1,
  displayRequestDuration: true,
  tryItOutEnabled: false,
});
