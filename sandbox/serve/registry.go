package serve

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
)

// entry is one sandbox the Server created.
type entry struct {
	id         string
	token      string
	tokenHash  [32]byte
	templateID string // as the client named it
	template   string // the provider's template
	metadata   map[string]string
	started    time.Time
	inst       Instance
	res        Resources
	transport  *http.Transport
	proxy      *httputil.ReverseProxy
	// timeout is the lifetime asked at create (an automatic resume gives it again).
	timeout time.Duration
	// autoPause pauses the sandbox at its timeout instead of killing it; autoResume resumes a
	// paused sandbox when data-plane traffic reaches it.
	autoPause, autoResume bool
	// network is the network mode in force (netpolicy form) and internet what allowInternetAccess
	// reports.
	network  string
	internet bool

	// op serializes pause, resume and the timeout's action on this sandbox.
	op sync.Mutex

	mu  sync.Mutex
	end time.Time // while paused: zero (the clock is stopped; remaining holds the time left)
	// paused is set while the sandbox is frozen; pausedAt is when it was paused, remaining the
	// lifetime it had left then, pausedFor the time it spent paused before (which does not count
	// against the maximum lifetime).
	paused     bool
	pausedAt   time.Time
	remaining  time.Duration
	pausedFor  time.Duration
	timer      *time.Timer
	lastCPU    time.Duration
	lastSample time.Time
}

// endAt returns when the sandbox ends. While it is paused its clock is stopped: the end is the
// time it had left, counted from now.
func (e *entry) endAt() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.paused {
		return time.Now().Add(e.remaining)
	}
	return e.end
}

// state returns the sandbox's E2B state: running or paused.
func (e *entry) state() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.paused {
		return e2bapi.StatePaused
	}
	return e2bapi.StateRunning
}

// isPaused tells whether the sandbox is paused.
func (e *entry) isPaused() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.paused
}

// lifetimeLimit is the latest end the maximum lifetime allows: time spent paused does not count.
func (e *entry) lifetimeLimit(max time.Duration) time.Time {
	return e.started.Add(e.pausedFor + max)
}

// goneList remembers recently ended sandboxes (bounded), so requests for them say why they are gone
// and requests by a token of theirs are told the sandbox was not found rather than refused.
type goneList struct {
	mu      sync.Mutex
	max     int
	order   []string
	reasons map[string]string
	tokens  map[[32]byte]string
	tokenOf map[string][32]byte
}

func newGoneList(max int) *goneList {
	return &goneList{max: max, reasons: map[string]string{}, tokens: map[[32]byte]string{}, tokenOf: map[string][32]byte{}}
}

func (g *goneList) add(id string, token [32]byte, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.reasons[id]; ok {
		return
	}
	if len(g.order) >= g.max {
		old := g.order[0]
		g.order = g.order[1:]
		delete(g.tokens, g.tokenOf[old])
		delete(g.tokenOf, old)
		delete(g.reasons, old)
	}
	g.order = append(g.order, id)
	g.reasons[id] = reason
	g.tokens[token] = id
	g.tokenOf[id] = token
}

// reason says why id ended ("" when unknown).
func (g *goneList) reason(id string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reasons[id]
}

// byToken returns the id of the ended sandbox that had this token.
func (g *goneList) byToken(h [32]byte) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id, ok := g.tokens[h]
	return id, ok
}

// errCapacity and errClosed refuse a create.
var (
	errCapacity = errors.New("sandbox limit reached")
	errClosed   = errors.New("server is shutting down")
)

// reserve claims room for one sandbox being created.
func (s *Server) reserve() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if len(s.byID)+s.creating >= s.cfg.MaxSandboxes {
		return errCapacity
	}
	s.creating++
	return nil
}

// unreserve gives back room claimed by reserve.
func (s *Server) unreserve() {
	s.mu.Lock()
	s.creating--
	s.mu.Unlock()
}

// register adds a created sandbox (its room was reserved) and arms its timeout.
func (s *Server) register(e *entry, timeout time.Duration) error {
	s.mu.Lock()
	s.creating--
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	e.tokenHash = sha256.Sum256([]byte(e.token))
	s.byID[e.id] = e
	s.byToken[e.tokenHash] = e
	s.mu.Unlock()
	e.mu.Lock()
	e.end = e.started.Add(timeout)
	e.timer = time.AfterFunc(timeout, func() { s.expire(e) })
	e.mu.Unlock()
	return nil
}

// get returns the live sandbox with this id.
func (s *Server) get(id string) (*entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	return e, ok
}

// live returns every live sandbox.
func (s *Server) live() []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*entry, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, e)
	}
	return out
}

// setEnd moves the sandbox's end to at (clamped to its maximum lifetime). With extendOnly, an end
// earlier than the current one is ignored. It returns the new end. On a paused sandbox it sets the
// time left when it resumes (its clock is stopped).
func (s *Server) setEnd(e *entry, at time.Time, extendOnly bool) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.paused {
		now := time.Now()
		left := min(at.Sub(now), s.cfg.MaxLifetime-e.runFor(now))
		if !extendOnly || left > e.remaining {
			e.remaining = max(0, left)
		}
		return now.Add(e.remaining)
	}
	if limit := e.lifetimeLimit(s.cfg.MaxLifetime); at.After(limit) {
		at = limit
	}
	if extendOnly && !at.After(e.end) {
		return e.end
	}
	e.end = at
	e.armLocked(time.Until(at), func() { s.expire(e) })
	return e.end
}

// runFor is how long the sandbox has run (paused time excluded) up to now; e.mu is held.
func (e *entry) runFor(now time.Time) time.Duration {
	d := now.Sub(e.started) - e.pausedFor
	if e.paused {
		d -= now.Sub(e.pausedAt)
	}
	return d
}

// armLocked replaces the sandbox's timer; e.mu is held.
func (e *entry) armLocked(d time.Duration, f func()) {
	if e.timer != nil {
		e.timer.Stop()
	}
	e.timer = time.AfterFunc(d, f)
}

// expire runs when a sandbox's timer fires: at the end of a running sandbox it is killed (or
// paused, when it was created with autoPause); a sandbox paused for longer than MaxPaused is
// killed.
func (s *Server) expire(e *entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.op.Lock()
	e.mu.Lock()
	paused, pausedAt, end := e.paused, e.pausedAt, e.end
	e.mu.Unlock()
	reason := "its timeout expired"
	switch {
	case paused:
		// A timer armed before a resume is stale: only the paused-too-long one counts.
		if time.Since(pausedAt) < s.cfg.MaxPaused {
			e.op.Unlock()
			return
		}
		reason = fmt.Sprintf("it stayed paused longer than %s", s.cfg.MaxPaused)
	case time.Until(end) > 0:
		// A timer that fired just before setEnd moved the end is stale: only expire at the end.
		e.op.Unlock()
		return
	case e.autoPause:
		err := s.pauseLocked(ctx, e)
		e.op.Unlock()
		if err == nil {
			s.log.Info("sandbox paused at its timeout", "id", e.id)
			return
		}
		s.log.Error("pausing a sandbox at its timeout; killing it", "id", e.id, "err", err)
	}
	e.op.Unlock()
	if err := s.end(ctx, e, reason); err != nil {
		s.log.Error("ending an expired sandbox", "id", e.id, "err", err)
	}
}

// errAlreadyPaused and errNotPaused refuse a transition the sandbox is not in the state for.
var (
	errAlreadyPaused = errors.New("already paused")
	errNotPaused     = errors.New("not paused")
)

// pauseLocked freezes the sandbox (memory, processes and files kept) and stops its clock; e.op is
// held. A paused sandbox is killed once it has been paused for MaxPaused.
func (s *Server) pauseLocked(ctx context.Context, e *entry) error {
	if e.isPaused() {
		return errAlreadyPaused
	}
	if err := e.inst.Pause(ctx); err != nil {
		return err
	}
	now := time.Now()
	e.mu.Lock()
	e.remaining = max(0, e.end.Sub(now))
	e.paused, e.pausedAt, e.end = true, now, time.Time{}
	e.armLocked(s.cfg.MaxPaused, func() { s.expire(e) })
	e.mu.Unlock()
	// Connections to a frozen envd would only hang; new requests get new ones after the resume.
	e.transport.CloseIdleConnections()
	return nil
}

// resumeLocked thaws the sandbox and starts its clock with timeout to live (clamped to the maximum
// lifetime); e.op is held.
func (s *Server) resumeLocked(ctx context.Context, e *entry, timeout time.Duration) error {
	if !e.isPaused() {
		return errNotPaused
	}
	if err := e.inst.Resume(ctx); err != nil {
		return err
	}
	now := time.Now()
	e.mu.Lock()
	e.pausedFor += now.Sub(e.pausedAt)
	e.paused, e.pausedAt, e.remaining = false, time.Time{}, 0
	at := now.Add(timeout)
	if limit := e.lifetimeLimit(s.cfg.MaxLifetime); at.After(limit) {
		at = limit
	}
	e.end = at
	e.armLocked(time.Until(at), func() { s.expire(e) })
	e.mu.Unlock()
	return nil
}

// end removes the sandbox from the live set (new requests no longer reach it) and kills it. Only
// the first call for a sandbox kills; later ones return nil.
func (s *Server) end(ctx context.Context, e *entry, reason string) error {
	s.mu.Lock()
	if cur, ok := s.byID[e.id]; !ok || cur != e {
		s.mu.Unlock()
		return nil
	}
	delete(s.byID, e.id)
	delete(s.byToken, e.tokenHash)
	s.ending.Add(1)
	s.mu.Unlock()
	defer s.ending.Done()
	s.gone.add(e.id, e.tokenHash, reason)
	e.mu.Lock()
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Unlock()
	s.log.Info("sandbox ends", "id", e.id, "reason", reason)
	err := e.inst.Kill(ctx)
	e.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("killing sandbox %s: %w", e.id, err)
	}
	return nil
}

// reap ends a sandbox found dead (its envd refuses connections).
func (s *Server) reap(e *entry) {
	err := e.inst.Failure()
	if err == nil || !errors.Is(err, sandbox.ErrGone) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.log.Warn("sandbox stopped unexpectedly", "id", e.id, "err", err)
	if kerr := s.end(ctx, e, "it stopped unexpectedly"); kerr != nil {
		s.log.Error("ending a dead sandbox", "id", e.id, "err", kerr)
	}
}
