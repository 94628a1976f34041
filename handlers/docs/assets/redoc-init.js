// Starts ReDoc on this service's OpenAPI document. A file rather than an
// inline script so that the page's Content-Security-Policy can forbid
// inline scripts. The theme names only fonts installed locally: the page
// must make no external request (ReDoc 2 loads no web fonts by itself; the
// logo it shows from cdn.redoc.ly is blocked by the page's CSP, see
// docs.go).
"use strict";
(function () {
  var sans = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  Redoc.init(
    "/openapi.json",
    {
      hideHostname: true,
      expandResponses: "200",
      jsonSampleExpandLevel: 3,
      theme: {
        typography: {
          fontFamily: sans,
          headings: { fontFamily: sans },
          code: { fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace' },
        },
      },
    },
    document.getElementById("redoc"),
  );
})();
