package provider

import (
	"context"
	"fmt"
	"sync"
)

// DefaultMaxConcurrency is the cap on model calls in flight when none is configured.
const DefaultMaxConcurrency = 8

// Limiter bounds the model calls in flight across every task of a run and adapts the bound to the
// endpoint: additive increase, multiplicative decrease (AIMD). A rate-limited call (429) halves the
// window; each successful call grows it by 1/window, so a full window of successes adds one slot.
// The window never exceeds the cap nor falls below one. One 429 storm halves the window once: calls
// that started before the last cut do not cut again.
//
// Waiters are served first come, first served. A Limiter is safe for concurrent use.
type Limiter struct {
	mu       sync.Mutex
	max      int
	window   float64
	inflight int
	epoch    uint64 // incremented on every cut
	waiters  []chan struct{}
}

// NewLimiter returns a limiter with the given cap (at least 1), starting fully open.
func NewLimiter(max int) *Limiter {
	if max < 1 {
		max = 1
	}
	return &Limiter{max: max, window: float64(max)}
}

// Permit is a granted slot. Release it exactly once.
type Permit struct {
	l     *Limiter
	epoch uint64
	once  sync.Once
}

// Outcome tells the limiter how a call ended.
type Outcome int

// Outcomes of a call for the limiter.
const (
	// OutcomeOther: the call failed for a reason that says nothing about load.
	OutcomeOther Outcome = iota
	// OutcomeSuccess: the endpoint answered.
	OutcomeSuccess
	// OutcomeThrottled: the endpoint said it is overloaded (429).
	OutcomeThrottled
)

// Acquire waits for a slot or for ctx to end.
func (l *Limiter) Acquire(ctx context.Context) (*Permit, error) {
	l.mu.Lock()
	if len(l.waiters) == 0 && l.inflight < l.capacity() {
		l.inflight++
		p := &Permit{l: l, epoch: l.epoch}
		l.mu.Unlock()
		return p, nil
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()

	select {
	case <-ch:
		l.mu.Lock()
		p := &Permit{l: l, epoch: l.epoch}
		l.mu.Unlock()
		return p, nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-ch:
			// Granted while giving up: hand the slot on.
			l.inflight--
			l.wakeLocked()
		default:
			for i, w := range l.waiters {
				if w == ch {
					l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
					break
				}
			}
		}
		return nil, fmt.Errorf("waiting for a model-call slot: %w", context.Cause(ctx))
	}
}

// Release returns the slot and adapts the window to the outcome.
func (p *Permit) Release(o Outcome) {
	p.once.Do(func() {
		l := p.l
		l.mu.Lock()
		defer l.mu.Unlock()
		l.inflight--
		switch o {
		case OutcomeThrottled:
			if p.epoch == l.epoch {
				l.window /= 2
				if l.window < 1 {
					l.window = 1
				}
				l.epoch++
			}
		case OutcomeSuccess:
			l.window += 1 / l.window
			if l.window > float64(l.max) {
				l.window = float64(l.max)
			}
		}
		l.wakeLocked()
	})
}

// Window returns the current number of calls allowed in flight.
func (l *Limiter) Window() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.capacity()
}

// Max returns the cap.
func (l *Limiter) Max() int { return l.max }

// InFlight returns the number of granted, unreleased permits.
func (l *Limiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

func (l *Limiter) capacity() int {
	c := int(l.window)
	if c < 1 {
		c = 1
	}
	return c
}

func (l *Limiter) wakeLocked() {
	for len(l.waiters) > 0 && l.inflight < l.capacity() {
		ch := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.inflight++
		close(ch)
	}
}
