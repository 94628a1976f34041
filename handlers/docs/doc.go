// Package docs serves pyexec's API documentation: the OpenAPI 3.0.3 document
// (openapi.json, the contract of the HTTP API), Swagger UI at /docs and ReDoc
// at /redoc, as the original service promised.
//
// Everything is embedded in the binary: the document, the two pages and the
// Swagger UI and ReDoc bundles (assets/, versions in assets/VERSIONS), so the
// pages work on a machine without internet access. The pages load nothing
// from another origin; their Content-Security-Policy forbids it.
//
// Spec returns the document. Tests hold the service to it with
// internal/openapitest, which only tests import, so the OpenAPI library
// stays out of the service binary.
//
// It never touches Docker or the runner, and imports nothing from handlers
// (handlers.New calls Register). Everything in it is safe for concurrent use.
package docs
