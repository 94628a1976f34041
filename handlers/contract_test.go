package handlers

import (
	"testing"

	"github.com/pyexec/pyexec/internal/openapitest"
	"github.com/pyexec/pyexec/runner"
)

// TestContractExamples sends every example request of the OpenAPI document
// to the real router, runner and engine, and checks each response against
// the document's schema and the example's documented outcome.
func TestContractExamples(t *testing.T) {
	h, _ := realRouter(t, func(o *runner.Options) { o.PoolSize = 2 })
	c, err := openapitest.Validator()
	if err != nil {
		t.Fatal(err)
	}
	examples, err := openapitest.Examples()
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) < 10 {
		t.Fatalf("only %d examples documented", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.Method+" "+ex.Path+" "+ex.Name, func(t *testing.T) {
			rec, err := c.Check(h, ex)
			if err != nil {
				t.Fatalf("%v\nresponse %d: %.2000s", err, rec.Code, rec.Body)
			}
		})
	}
}
