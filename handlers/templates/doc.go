// Package templates holds the code templates served by GET /templates: small,
// self-contained Python programs that show what the service can do (charts
// with matplotlib, plotly and seaborn, pandas tables, numpy statistics).
//
// Each template's code is a file under code/, embedded in the binary, so the
// files can be run and linted as ordinary Python. Every template generates its
// data in code with a fixed seed (no network), or reads the input files it
// ships under files/<id>/ (sent as the request's "files", so that the
// template's code and files posted to /execute run as they are); each passes
// the strict language policy (policy.Default) and runs in a few seconds in
// the image.
//
// To add a template: add code/<id>.py (and files/<id>/ if it reads files)
// and one entry to the table in templates.go; the tests check that the two
// stay in step.
//
// The package only reads embedded data. All, ByID and the values they return
// are safe for concurrent use.
package templates
