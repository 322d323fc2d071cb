package provider

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryPolicy says how failed attempts are retried. Zero fields take the defaults.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts of one call, the first included (default 6).
	MaxAttempts int
	// BaseDelay is the first backoff (default 1s); it doubles per attempt, with jitter.
	BaseDelay time.Duration
	// MaxDelay caps the computed backoff (default 30s).
	MaxDelay time.Duration
	// MaxRetryAfter caps a wait asked for by Retry-After (default 2m).
	MaxRetryAfter time.Duration
	// Sleep waits between attempts; default a timer that honours ctx. Tests replace it to observe
	// the waits without spending them.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 6
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = time.Second
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 30 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 2 * time.Minute
	}
	if p.Sleep == nil {
		p.Sleep = sleepCtx
	}
	return p
}

// delay returns the wait before attempt n+1 after attempt n (n ≥ 1) failed with err.
func (p RetryPolicy) delay(n int, err *Error) time.Duration {
	if err.RetryAfter > 0 {
		return min(err.RetryAfter, p.MaxRetryAfter)
	}
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	// Jitter in [d/2, d] spreads the retries of concurrent tasks.
	half := d / 2
	if half > 0 {
		d = half + rand.N(half+1)
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// parseRetryAfter reads the wait an endpoint asks for: retry-after-ms (OpenAI), or Retry-After in
// seconds or as an HTTP date. Zero when absent or unparsable.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 || s > 1e6 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
