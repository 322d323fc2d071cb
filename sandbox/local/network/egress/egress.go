// Package egress is the user-space half of a sandbox's network policy: a DNS resolver that answers
// the sandbox's queries (forwarding to the host's upstream resolvers, and in allow-list mode only
// for allowed names) and a transparent TCP proxy that lets an allow-listed sandbox reach a
// destination only when the TLS server name (SNI) or the HTTP Host of every request names an
// allowed domain and the destination address is one that name resolves to. The kernel half
// (nftables, in package network) sends the sandbox's DNS here and redirects its TCP to the proxy.
//
// One Server serves one sandbox, in a helper process outside the sandbox (`agent netd`), so a
// sandbox that floods its resolver or proxy hurts only itself. Every refusal is written to an
// events file the runner reads into the task's results.
package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/agentrun/agent/sandbox/netpolicy"
)

// Config configures a Server. It is written as JSON by the network manager and read by the helper.
type Config struct {
	// ID is the sandbox's id (logs only).
	ID string `json:"id"`
	// Policy is the network policy (netpolicy.Parse form).
	Policy string `json:"policy"`
	// Listen is the address the resolver and the proxy listen on: the host side of the
	// sandbox's link.
	Listen netip.Addr `json:"listen"`
	// DNSPort is the resolver's port (UDP and TCP); default 53.
	DNSPort int `json:"dns_port"`
	// ProxyPort is the transparent proxy's port; 0 means no proxy (internet mode).
	ProxyPort int `json:"proxy_port"`
	// Upstreams are the resolvers queries are forwarded to (ip:port).
	Upstreams []netip.AddrPort `json:"upstreams"`
	// Refuse lists ranges the proxy never connects to and the resolver never answers with, beyond
	// netpolicy's: the host's addresses and the sandbox pool.
	Refuse []netip.Prefix `json:"refuse"`
	// Special lists ranges refused unless the allow-list names them: the host's networks.
	Special []netip.Prefix `json:"special"`
	// Interface is the host end of the sandbox's link; the helper exits when it disappears.
	Interface string `json:"interface"`
	// DropPrivileges makes the helper switch to an unprivileged user once its sockets are open.
	DropPrivileges bool `json:"drop_privileges"`
	// EventsPath is the file refusals are appended to (JSON lines).
	EventsPath string `json:"events_path"`
	// MaxEvents bounds the events written; later ones are only counted.
	MaxEvents int `json:"max_events"`
	// MaxConns bounds concurrent proxied connections; default 256.
	MaxConns int `json:"max_conns"`
	// QueriesPerSecond bounds the resolver's rate; default 200 (burst twice that).
	QueriesPerSecond int `json:"queries_per_second"`
}

// Event is one refusal (or a summary of many), as written to the events file.
type Event struct {
	Time time.Time `json:"time"`
	// Kind is "dns" (a refused name), "tcp" (a refused connection through the proxy) or
	// "packet" (refused by the kernel rules; filled in by the network manager).
	Kind string `json:"kind"`
	// Name is the DNS name, TLS server name or HTTP host involved.
	Name string `json:"name,omitempty"`
	// Addr is the destination (ip:port) when known.
	Addr string `json:"addr,omitempty"`
	// Proto is "tcp", "udp", "icmp" or a DNS record type.
	Proto string `json:"proto,omitempty"`
	// Reason says why it was refused.
	Reason string `json:"reason"`
	// Count, for kernel refusals, is how many were seen.
	Count int `json:"count,omitempty"`
}

// Server is one sandbox's resolver and proxy.
type Server struct {
	cfg    Config
	policy netpolicy.Policy
	log    *slog.Logger

	dnsUDP   net.PacketConn
	dnsTCP   net.Listener
	proxyLn  net.Listener
	events   *eventLog
	answers  *answerCache
	limiter  *limiter
	connSem  chan struct{}
	upstream *forwarder
}

// Listen opens the server's sockets (binding port 53 needs privileges; drop them afterwards).
func Listen(cfg Config, log *slog.Logger) (*Server, error) {
	pol, err := netpolicy.Parse(cfg.Policy)
	if err != nil {
		return nil, err
	}
	if !pol.Networked() {
		return nil, fmt.Errorf("network %s needs no egress server", pol)
	}
	if !cfg.Listen.Is4() {
		return nil, fmt.Errorf("egress listen address %v: want IPv4", cfg.Listen)
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("egress: no upstream DNS resolver")
	}
	if cfg.DNSPort == 0 {
		cfg.DNSPort = 53
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 1000
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	if cfg.QueriesPerSecond <= 0 {
		cfg.QueriesPerSecond = 200
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg: cfg, policy: pol, log: log.With("sandbox", cfg.ID),
		answers:  newAnswerCache(4096),
		limiter:  newLimiter(cfg.QueriesPerSecond, 2*cfg.QueriesPerSecond),
		connSem:  make(chan struct{}, cfg.MaxConns),
		upstream: &forwarder{servers: cfg.Upstreams},
	}
	if s.events, err = openEventLog(cfg.EventsPath, cfg.MaxEvents); err != nil {
		return nil, err
	}
	dnsAddr := netip.AddrPortFrom(cfg.Listen, uint16(cfg.DNSPort)).String()
	if s.dnsUDP, err = net.ListenPacket("udp4", dnsAddr); err != nil {
		s.Close()
		return nil, fmt.Errorf("egress: DNS on %s: %w", dnsAddr, err)
	}
	if s.dnsTCP, err = net.Listen("tcp4", dnsAddr); err != nil {
		s.Close()
		return nil, fmt.Errorf("egress: DNS on %s/tcp: %w", dnsAddr, err)
	}
	if pol.Mode == netpolicy.Allow {
		if cfg.ProxyPort == 0 {
			s.Close()
			return nil, errors.New("egress: an allow-list needs a proxy port")
		}
		pa := netip.AddrPortFrom(cfg.Listen, uint16(cfg.ProxyPort)).String()
		if s.proxyLn, err = net.Listen("tcp4", pa); err != nil {
			s.Close()
			return nil, fmt.Errorf("egress: proxy on %s: %w", pa, err)
		}
	}
	return s, nil
}

// Serve answers until ctx ends, then closes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	run(s.serveDNSUDP)
	run(s.serveDNSTCP)
	if s.proxyLn != nil {
		run(s.serveProxy)
	}
	<-ctx.Done()
	s.Close()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Close closes the sockets and the events file.
func (s *Server) Close() error {
	for _, c := range []interface{ Close() error }{s.dnsUDP, s.dnsTCP, s.proxyLn} {
		if c != nil {
			_ = c.Close()
		}
	}
	if s.events != nil {
		return s.events.close()
	}
	return nil
}

// refusable tells whether the proxy must never connect to a (and the resolver never answer with
// it): special ranges not explicitly allowed, and the configured host and pool ranges.
func (s *Server) refusable(a netip.Addr) (bool, string) {
	a = a.Unmap()
	if netpolicy.IsNever(a) {
		return true, "address in a range no sandbox may reach"
	}
	for _, p := range s.cfg.Refuse {
		if p.Contains(a) {
			return true, "address of the host, its networks or another sandbox"
		}
	}
	if netpolicy.IsSpecial(a) && !s.policy.AllowsAddr(a) {
		return true, "private or special-purpose address"
	}
	for _, p := range s.cfg.Special {
		if p.Contains(a) && !s.policy.AllowsAddr(a) {
			return true, "address on a network of the host"
		}
	}
	return false, ""
}

func (s *Server) refuse(ev Event) {
	ev.Time = time.Now().UTC()
	s.events.write(ev)
	s.log.Info("refused", "kind", ev.Kind, "name", ev.Name, "addr", ev.Addr, "reason", ev.Reason)
}

// eventLog appends events as JSON lines, at most max of them.
type eventLog struct {
	mu      sync.Mutex
	f       *os.File
	max     int
	n       int
	dropped int
}

func openEventLog(path string, max int) (*eventLog, error) {
	if path == "" {
		return &eventLog{max: max}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("egress: events file: %w", err)
	}
	return &eventLog{f: f, max: max}, nil
}

func (l *eventLog) write(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.max {
		l.dropped++
		return
	}
	l.n++
	if l.f == nil {
		return
	}
	b, _ := json.Marshal(ev)
	_, _ = l.f.Write(append(b, '\n'))
}

func (l *eventLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	if l.dropped > 0 {
		b, _ := json.Marshal(Event{Time: time.Now().UTC(), Kind: "summary", Count: l.dropped,
			Reason: fmt.Sprintf("%d more refusals not itemized", l.dropped)})
		_, _ = l.f.Write(append(b, '\n'))
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// answerCache remembers which addresses the resolver gave out for which allowed name, so the
// proxy can check that a connection's destination belongs to the name it claims.
type answerCache struct {
	mu    sync.Mutex
	max   int
	names map[string]map[netip.Addr]time.Time
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{max: max, names: map[string]map[netip.Addr]time.Time{}}
}

// minAnswerLife keeps answers long enough for clients that cache beyond the TTL.
const minAnswerLife = 10 * time.Minute

func (c *answerCache) add(name string, a netip.Addr, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.names[name]; !ok && len(c.names) >= c.max {
		c.evictLocked()
	}
	m := c.names[name]
	if m == nil {
		m = map[netip.Addr]time.Time{}
		c.names[name] = m
	}
	if len(m) >= 64 {
		return
	}
	m[a] = time.Now().Add(max(ttl, minAnswerLife))
}

func (c *answerCache) evictLocked() {
	now := time.Now()
	for n, m := range c.names {
		for a, exp := range m {
			if now.After(exp) {
				delete(m, a)
			}
		}
		if len(m) == 0 {
			delete(c.names, n)
		}
	}
	for n := range c.names { // still full: drop an arbitrary name
		if len(c.names) < c.max {
			break
		}
		delete(c.names, n)
	}
}

func (c *answerCache) has(name string, a netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.names[name][a.Unmap()]
	return ok && time.Now().Before(exp)
}

// limiter is a token bucket.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst int) *limiter {
	return &limiter{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

func (l *limiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
