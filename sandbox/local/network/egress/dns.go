package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/agentrun/agent/sandbox/netpolicy"
)

// dnsTimeout bounds one upstream exchange.
const dnsTimeout = 4 * time.Second

func (s *Server) serveDNSUDP(ctx context.Context) error {
	srv := &dns.Server{PacketConn: s.dnsUDP, Handler: dns.HandlerFunc(s.serveDNS), UDPSize: dns.MinMsgSize}
	return runDNS(ctx, srv)
}

func (s *Server) serveDNSTCP(ctx context.Context) error {
	srv := &dns.Server{Listener: s.dnsTCP, Handler: dns.HandlerFunc(s.serveDNS),
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second },
		MaxTCPQueries: 64}
	return runDNS(ctx, srv)
}

func runDNS(ctx context.Context, srv *dns.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.ShutdownContext(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

// serveDNS answers one query. In allow-list mode only A queries for allowed names are forwarded;
// AAAA and other types for allowed names get an empty answer (sandboxes have no IPv6, and record
// types that can carry data — TXT, NULL and the like — would make the resolver a tunnel); names
// not on the list get NXDOMAIN and an event. In internet mode every query is forwarded.
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	reply := func(m *dns.Msg) { _ = w.WriteMsg(m) }
	if !s.limiter.allow() {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
		reply(m)
		return
	}
	if req.Response || req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		reply(m)
		return
	}
	q := req.Question[0]
	name, valid := netpolicy.CanonicalName(q.Name)
	qtype := dns.TypeToString[q.Qtype]
	if q.Qclass != dns.ClassINET || !valid {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
		reply(m)
		return
	}
	if s.policy.Mode == netpolicy.Allow {
		if !s.policy.AllowsName(name) {
			s.refuse(Event{Kind: "dns", Name: name, Proto: qtype, Reason: "name not on the allow-list"})
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeNameError)
			reply(m)
			return
		}
		if q.Qtype != dns.TypeA && q.Qtype != dns.TypeCNAME {
			m := new(dns.Msg)
			m.SetReply(req)
			m.RecursionAvailable = true
			reply(m)
			return
		}
	}
	fwd := &dns.Msg{}
	fwd.SetQuestion(dns.Fqdn(name), q.Qtype)
	fwd.RecursionDesired = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*dnsTimeout)
	defer cancel()
	resp, err := s.upstream.exchange(ctx, fwd)
	if err != nil {
		s.log.Warn("upstream DNS", "name", name, "err", err)
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		reply(m)
		return
	}
	resp.Id = req.Id
	resp.Question = req.Question
	resp.Compress = true
	if s.policy.Mode == netpolicy.Allow {
		s.filterAnswer(name, resp)
	}
	// Answers over UDP must fit the client's buffer.
	size := dns.MinMsgSize
	if o := req.IsEdns0(); o != nil {
		size = int(o.UDPSize())
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		resp.Truncate(size)
	}
	reply(resp)
}

// filterAnswer keeps only CNAME and A records, drops addresses the sandbox may not reach (a name
// that resolves to a private or host address must not become a way in), records the rest for
// the proxy, and strips the authority and additional sections.
func (s *Server) filterAnswer(name string, resp *dns.Msg) {
	var keep []dns.RR
	for _, rr := range resp.Answer {
		switch r := rr.(type) {
		case *dns.CNAME:
			keep = append(keep, r)
		case *dns.A:
			a, ok := netip.AddrFromSlice(r.A.To4())
			if !ok {
				continue
			}
			if bad, why := s.refusable(a); bad {
				s.refuse(Event{Kind: "dns", Name: name, Addr: a.String(), Proto: "A", Reason: "answer dropped: " + why})
				continue
			}
			s.answers.add(name, a, time.Duration(r.Hdr.Ttl)*time.Second)
			keep = append(keep, r)
		}
	}
	resp.Answer = keep
	resp.Ns, resp.Extra = nil, nil
}

// lookupA resolves name's A records through the upstreams (for the proxy, when the sandbox
// connected without asking the resolver first).
func (s *Server) lookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	m := &dns.Msg{}
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.RecursionDesired = true
	resp, err := s.upstream.exchange(ctx, m)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, rr := range resp.Answer {
		if r, ok := rr.(*dns.A); ok {
			if a, ok := netip.AddrFromSlice(r.A.To4()); ok {
				out = append(out, a)
				s.answers.add(name, a, time.Duration(r.Hdr.Ttl)*time.Second)
			}
		}
	}
	return out, nil
}

// forwarder sends queries to the upstream resolvers in turn, over UDP and then TCP when the
// answer was truncated.
type forwarder struct {
	servers []netip.AddrPort
}

func (f *forwarder) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var errs []error
	for _, srv := range f.servers {
		addr := srv.String()
		c := &dns.Client{Net: "udp", Timeout: dnsTimeout, UDPSize: 4096}
		m.SetEdns0(4096, false)
		resp, _, err := c.ExchangeContext(ctx, m, addr)
		if err == nil && resp.Truncated {
			c = &dns.Client{Net: "tcp", Timeout: dnsTimeout}
			resp, _, err = c.ExchangeContext(ctx, m, addr)
		}
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}
