// Package rpcmeta carries request metadata that envd's HTTP layer takes off a request before the
// Connect handlers see it.
package rpcmeta

import (
	"context"
	"time"
)

type timeoutKey struct{}

// WithProcessTimeout records the Connect-Timeout-Ms of a Process.Start request. envd treats it as the
// process's lifetime, not as the stream's deadline, so the HTTP layer removes the header (the stream
// must stay writable to report the kill) and passes the value on here.
func WithProcessTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, timeoutKey{}, d)
}

// ProcessTimeout returns the requested process lifetime; ok is false when none was asked.
func ProcessTimeout(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Value(timeoutKey{}).(time.Duration)
	return d, ok
}
