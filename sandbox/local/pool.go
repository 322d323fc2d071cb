package local

import (
	"context"
	"maps"
	"sync"
	"time"
)

// pool keeps sandboxes of one template ready so Create only has to claim one. A pooled sandbox is
// fully started (envd answers) but has no lifetime yet; it gets one when claimed.
type pool struct {
	b    *Backend
	o    Options
	size int

	mu     sync.Mutex
	ready  []*Sandbox
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newPool(b *Backend, o Options, size int) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{b: b, o: o, size: size, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go p.fill(ctx)
	return p
}

// matches tells whether a request can be served by a pooled sandbox: same template, runtime, env
// and limits once defaults are applied (the lifetime aside: it starts when the sandbox is claimed),
// a generated access token or none (not one of its own) and network none, since those are fixed
// when a sandbox starts.
func (p *pool) matches(o Options) bool {
	return o.Template == p.o.Template && (o.Runtime == "" || o.Runtime == p.b.cfg.Runtime) &&
		p.shape(o.Limits) == p.shape(p.o.Limits) && maps.Equal(o.Env, p.o.Env) &&
		o.AccessToken == "" && o.GenerateAccessToken == p.o.GenerateAccessToken && (o.Network == "" || o.Network == NetworkNone)
}

// shape is what of a request's limits a sandbox is started with.
func (p *pool) shape(l Limits) Limits {
	l = l.withDefaults(p.b.cfg.Limits)
	l.Lifetime = 0
	return l
}

// claim takes a ready sandbox, or returns nil.
func (p *pool) claim(o Options) *Sandbox {
	if !p.matches(o) {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ready) == 0 {
		return nil
	}
	s := p.ready[0]
	p.ready = p.ready[1:]
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return s
}

func (p *pool) fill(ctx context.Context) {
	defer close(p.done)
	for {
		p.mu.Lock()
		n := len(p.ready)
		p.mu.Unlock()
		if n < p.size {
			s, err := p.b.create(ctx, p.o, PhasePooled)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				p.b.log.Warn("filling the sandbox pool", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
				continue
			}
			p.mu.Lock()
			p.ready = append(p.ready, s)
			p.mu.Unlock()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
	}
}

func (p *pool) close(ctx context.Context) {
	p.cancel()
	<-p.done
	p.mu.Lock()
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	for _, s := range ready {
		_ = s.Kill(ctx)
	}
}

// activate turns a pooled sandbox into a running one owned by this process, with the lifetime the
// request asks for (else the one it was created with, the default).
func (b *Backend) activate(s *Sandbox, o Options) error {
	s.mu.Lock()
	s.rec.Phase = PhaseRunning
	s.rec.Pooled = true
	if o.Limits.Lifetime > 0 {
		s.rec.Limits.Lifetime = o.Limits.Lifetime
	}
	s.rec.Expires = time.Now().UTC().Add(s.rec.Limits.Lifetime)
	rec := s.rec
	s.mu.Unlock()
	if err := writeRecord(s.p, &rec); err != nil {
		return err
	}
	s.base = b.cg.Stats(rec.CgroupsPath)
	if err := s.connect(context.Background()); err != nil {
		return err
	}
	b.own(s)
	return nil
}
