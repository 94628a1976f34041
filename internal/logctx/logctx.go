// Package logctx carries a logrus entry in a context, so that code below the
// HTTP handlers logs with the request's ID without taking a logger argument.
package logctx

import (
	"context"

	"github.com/sirupsen/logrus"
)

type key struct{}

// With returns ctx carrying entry.
func With(ctx context.Context, entry *logrus.Entry) context.Context {
	return context.WithValue(ctx, key{}, entry)
}

// From returns the entry in ctx, or one on the standard logger.
func From(ctx context.Context) *logrus.Entry {
	if e, ok := ctx.Value(key{}).(*logrus.Entry); ok {
		return e
	}
	return logrus.NewEntry(logrus.StandardLogger())
}
