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

	mu         sync.Mutex
	end        time.Time
	timer      *time.Timer
	lastCPU    time.Duration
	lastSample time.Time
}

// endAt returns when the sandbox ends.
func (e *entry) endAt() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.end
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
// earlier than the current one is ignored. It returns the new end.
func (s *Server) setEnd(e *entry, at time.Time, extendOnly bool) time.Time {
	if limit := e.started.Add(s.cfg.MaxLifetime); at.After(limit) {
		at = limit
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if extendOnly && !at.After(e.end) {
		return e.end
	}
	e.end = at
	if e.timer != nil {
		e.timer.Stop()
	}
	e.timer = time.AfterFunc(time.Until(at), func() { s.expire(e) })
	return e.end
}

func (s *Server) expire(e *entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A timer that fired just before setEnd moved the end is stale: only expire at the end.
	if d := time.Until(e.endAt()); d > 0 {
		return
	}
	if err := s.end(ctx, e, "its timeout expired"); err != nil {
		s.log.Error("ending an expired sandbox", "id", e.id, "err", err)
	}
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
