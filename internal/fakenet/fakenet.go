// Package fakenet builds, for tests, a stand-in for the internet that lives entirely on this
// machine: a network namespace reached from the host through a veth pair, holding "public" hosts
// on documentation addresses (TEST-NET-3, 203.0.113.0/24) with HTTP, TLS and DNS servers (the web
// servers also answer /bytes/N and /sink, for throughput measurements), and
// "trap" hosts on the addresses a sandbox must never reach (private ranges, CGNAT, the cloud
// metadata address). Host routes send those addresses into the namespace, so a policy that fails
// sends its packets to a trap that counts them, never to a real network.
//
// Only one fake internet exists on a host at a time (its routes are host-wide): New waits for a
// host-wide lock.
package fakenet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/local/network"
)

// Addresses of the fake internet.
var (
	// HostSide is the host's address on the link to the fake internet; Router is the namespace's.
	HostSide = netip.MustParseAddr("198.51.100.1")
	Router   = netip.MustParseAddr("198.51.100.2")
	// Allowed and Other are public web hosts (HTTP on 80, TLS on 443, a banner service on 22).
	Allowed = netip.MustParseAddr("203.0.113.10")
	Other   = netip.MustParseAddr("203.0.113.20")
	// DNS is the upstream resolver.
	DNS = netip.MustParseAddr("203.0.113.53")
	// Metadata is the cloud metadata address.
	Metadata = netip.MustParseAddr("169.254.169.254")
	// Traps are addresses in ranges sandboxes must never reach, each listening on TCP 80 and 443
	// and UDP 53 and counting whatever arrives.
	Traps = []netip.Addr{
		netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("172.16.5.4"),
		netip.MustParseAddr("192.168.7.8"),
		netip.MustParseAddr("100.64.1.1"),
		Metadata,
	}
)

// Zone is the fake DNS zone: name → A record. Names under "tunnel.other.test" answer anything
// (a DNS tunnel's endpoint); every query is recorded.
var Zone = map[string]netip.Addr{
	"allowed.test":        Allowed,
	"www.allowed.test":    Allowed,
	"api.wild.test":       Allowed,
	"other.test":          Other,
	"evil.test":           Other,
	"rebind.allowed.test": netip.MustParseAddr("10.1.2.3"),
	"meta.allowed.test":   Metadata,
	"cdn.allowed.test":    Other, // an allowed name on a shared address (CDN)
}

// Hit is one connection or query a fake host saw.
type Hit struct {
	Local netip.AddrPort
	Peer  netip.AddrPort
	// Name is the TLS server name, HTTP host or DNS name, when there was one.
	Name string
	Kind string // "tcp", "http", "tls", "udp", "dns"
}

// Internet is a running fake internet.
type Internet struct {
	ns     netns.NsHandle
	hostIf string
	cert   *x509.Certificate

	mu    sync.Mutex
	hits  []Hit
	close []func()
}

// lockPath serializes fake internets host-wide.
const lockPath = "/run/agent-fakenet.lock"

// New builds a fake internet and removes it at the test's cleanup.
func New(t testing.TB) *Internet {
	t.Helper()
	in, err := Start()
	if err != nil {
		t.Fatalf("fake internet: %v", err)
	}
	t.Cleanup(in.Close)
	return in
}

// Start builds a fake internet; Close removes it.
func Start() (_ *Internet, err error) {
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			break
		}
		if time.Now().After(deadline) {
			lock.Close()
			return nil, errors.New("waiting for another fake internet to end")
		}
		time.Sleep(100 * time.Millisecond)
	}
	in := &Internet{}
	in.close = append(in.close, func() { lock.Close() })
	defer func() {
		if err != nil {
			in.Close()
		}
	}()
	if err := in.build(); err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Internet) build() error {
	var b [3]byte
	_, _ = rand.Read(b[:])
	in.hostIf = fmt.Sprintf("fn%x", b)
	peer := fmt.Sprintf("fp%x", b)
	ns, err := newNetns()
	if err != nil {
		return err
	}
	in.ns = ns
	in.close = append(in.close, func() { ns.Close() })
	la := netlink.NewLinkAttrs()
	la.Name = in.hostIf
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	in.close = append(in.close, func() {
		if l, err := netlink.LinkByName(in.hostIf); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	host, err := netlink.LinkByName(in.hostIf)
	if err != nil {
		return err
	}
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+in.hostIf+"/disable_ipv6", []byte("1"), 0o644)
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: ipnet(HostSide, 32), Peer: ipnet(Router, 32)}); err != nil {
		return fmt.Errorf("host address: %w", err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	p, err := netlink.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(p, int(ns)); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	p, err = h.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(p, &netlink.Addr{IPNet: ipnet(Router, 32), Peer: ipnet(HostSide, 32)}); err != nil {
		return err
	}
	lo, _ := h.LinkByName("lo")
	for _, a := range append([]netip.Addr{Allowed, Other, DNS}, Traps...) {
		if err := h.AddrAdd(lo, &netlink.Addr{IPNet: ipnet(a, 32)}); err != nil {
			return fmt.Errorf("address %s: %w", a, err)
		}
	}
	for _, l := range []netlink.Link{p, lo} {
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: p.Attrs().Index, Gw: HostSide.AsSlice()}); err != nil {
		return fmt.Errorf("fake internet default route: %w", err)
	}
	// Host routes into the fake internet: the public range and every trap.
	dsts := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	for _, a := range Traps {
		dsts = append(dsts, netip.PrefixFrom(a, 32))
	}
	for _, d := range dsts {
		r := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: ipnet(d.Addr(), d.Bits()), Gw: Router.AsSlice()}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("host route to %s: %w (is another fake internet or a real route there?)", d, err)
		}
		in.close = append(in.close, func() { _ = netlink.RouteDel(r) })
	}
	return in.serve()
}

// Close stops the servers and removes the namespace, link and routes.
func (in *Internet) Close() {
	in.mu.Lock()
	fs := in.close
	in.close = nil
	in.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Hits returns what the fake hosts saw so far.
func (in *Internet) Hits() []Hit {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Hit(nil), in.hits...)
}

// HitsTo returns the hits on one address.
func (in *Internet) HitsTo(a netip.Addr) []Hit {
	var out []Hit
	for _, h := range in.Hits() {
		if h.Local.Addr() == a {
			out = append(out, h)
		}
	}
	return out
}

// TrapHits returns every hit on a trap address.
func (in *Internet) TrapHits() []Hit {
	var out []Hit
	for _, t := range Traps {
		out = append(out, in.HitsTo(t)...)
	}
	return out
}

// DNSQueries returns the names the upstream resolver was asked for.
func (in *Internet) DNSQueries() []string {
	var out []string
	for _, h := range in.Hits() {
		if h.Kind == "dns" {
			out = append(out, h.Name)
		}
	}
	return out
}

// Upstream is the fake resolver's address.
func (in *Internet) Upstream() netip.AddrPort { return netip.AddrPortFrom(DNS, 53) }

// CertPool trusts the fake hosts' TLS certificate.
func (in *Internet) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(in.cert)
	return p
}

// CertPEM is the fake hosts' certificate, for clients in a sandbox.
func (in *Internet) CertPEM() []byte {
	return pemEncode("CERTIFICATE", in.cert.Raw)
}

func (in *Internet) record(h Hit) {
	in.mu.Lock()
	in.hits = append(in.hits, h)
	in.mu.Unlock()
}

func (in *Internet) serve() error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	in.cert = cert.Leaf
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	web := func(local netip.AddrPort, kind string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, _ := netip.ParseAddrPort(r.RemoteAddr)
			in.record(Hit{Local: local, Peer: peer, Name: r.Host, Kind: kind})
			if bulk(w, r) {
				return
			}
			fmt.Fprintf(w, "hello from %s (%s, host %s)\n", local.Addr(), kind, r.Host)
		})
	}
	for _, a := range append([]netip.Addr{Allowed, Other}, Traps...) {
		a := a
		ln80, err := in.listen("tcp4", netip.AddrPortFrom(a, 80))
		if err != nil {
			return err
		}
		ln443, err := in.listen("tcp4", netip.AddrPortFrom(a, 443))
		if err != nil {
			return err
		}
		s80 := &http.Server{Handler: web(netip.AddrPortFrom(a, 80), "http"), ReadHeaderTimeout: 10 * time.Second}
		s443 := &http.Server{Handler: web(netip.AddrPortFrom(a, 443), "tls"), ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: tlsCfg.Clone()}
		s443.TLSConfig.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			peer, _ := netip.ParseAddrPort(hi.Conn.RemoteAddr().String())
			in.record(Hit{Local: netip.AddrPortFrom(a, 443), Peer: peer, Name: hi.ServerName, Kind: "hello"})
			return nil, nil
		}
		go s80.Serve(ln80)
		go s443.ServeTLS(ln443, "", "")
		in.close = append(in.close, func() { s80.Close(); s443.Close() })
		// A server-speaks-first service (like SSH).
		ln22, err := in.listen("tcp4", netip.AddrPortFrom(a, 22))
		if err != nil {
			return err
		}
		go in.banner(ln22, netip.AddrPortFrom(a, 22))
		pc, err := in.listenPacket(netip.AddrPortFrom(a, 53))
		if err != nil {
			return err
		}
		go in.udpSink(pc, netip.AddrPortFrom(a, 53))
	}
	// The upstream resolver.
	mux := dns.HandlerFunc(in.serveDNS)
	pc, err := in.listenPacket(netip.AddrPortFrom(DNS, 53))
	if err != nil {
		return err
	}
	tl, err := in.listen("tcp4", netip.AddrPortFrom(DNS, 53))
	if err != nil {
		return err
	}
	ud := &dns.Server{PacketConn: pc, Handler: mux}
	td := &dns.Server{Listener: tl, Handler: mux}
	go ud.ActivateAndServe()
	go td.ActivateAndServe()
	in.close = append(in.close, func() { _ = ud.Shutdown(); _ = td.Shutdown() })
	return nil
}

// maxBulk bounds what /bytes/N sends.
const maxBulk = 4 << 30

// bulk serves the throughput endpoints of the web hosts: GET /bytes/N sends N zero bytes (at most
// maxBulk); /sink reads and discards the request body and answers its size.
func bulk(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == "/sink" {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return true
		}
		fmt.Fprintf(w, "%d\n", n)
		return true
	}
	v, ok := strings.CutPrefix(r.URL.Path, "/bytes/")
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > maxBulk {
		http.Error(w, "want /bytes/N with N at most 4 GiB", http.StatusBadRequest)
		return true
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	buf := make([]byte, 64<<10)
	for n > 0 {
		k, err := w.Write(buf[:min(int64(len(buf)), n)])
		if err != nil {
			return true
		}
		n -= int64(k)
	}
	return true
}

func (in *Internet) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	peer, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	in.record(Hit{Local: netip.AddrPortFrom(DNS, 53), Peer: peer, Name: name, Kind: "dns"})
	if strings.HasSuffix(name, ".tunnel.other.test") {
		switch q.Qtype {
		case dns.TypeTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}, Txt: []string{"exfil-ack"}})
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: Other.AsSlice()})
		}
		_ = w.WriteMsg(m)
		return
	}
	a, ok := Zone[name]
	if !ok {
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	if q.Qtype == dns.TypeA {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: a.AsSlice()})
	}
	if q.Qtype == dns.TypeTXT {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"some text"}})
	}
	_ = w.WriteMsg(m)
}

func (in *Internet) banner(ln net.Listener, local netip.AddrPort) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		peer, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		in.record(Hit{Local: local, Peer: peer, Kind: "tcp"})
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "SSH-2.0-fake\r\n")
		c.Close()
	}
}

func (in *Internet) udpSink(pc net.PacketConn, local netip.AddrPort) {
	buf := make([]byte, 2048)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		peer, _ := netip.ParseAddrPort(from.String())
		in.record(Hit{Local: local, Peer: peer, Kind: "udp"})
	}
}

// listen opens a listener inside the fake internet's namespace.
func (in *Internet) listen(network string, a netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	err := in.inNS(func() error {
		var err error
		ln, err = net.Listen(network, a.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", a, err)
	}
	in.close = append(in.close, func() { ln.Close() })
	return ln, nil
}

func (in *Internet) listenPacket(a netip.AddrPort) (net.PacketConn, error) {
	var pc net.PacketConn
	err := in.inNS(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", a.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s/udp: %w", a, err)
	}
	in.close = append(in.close, func() { pc.Close() })
	return pc, nil
}

func (in *Internet) inNS(f func() error) error { return network.InNetns(in.ns, f) }

// newNetns makes an anonymous network namespace and returns a handle on it.
func newNetns() (netns.NsHandle, error) {
	type res struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- res{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.New()
		if err != nil {
			c <- res{err: err}
			return
		}
		if err := netns.Set(orig); err != nil {
			c <- res{err: err}
			return
		}
		runtime.UnlockOSThread()
		c <- res{h: h}
	}()
	r := <-c
	return r.h, r.err
}

// Dial connects from the host to a in the fake internet (for checks from the host side).
func Dial(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp4", a.String())
}

func ipnet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	var names []string
	for n := range Zone {
		names = append(names, n)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake internet"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: names, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
