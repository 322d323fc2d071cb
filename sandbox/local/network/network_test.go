package network_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/sandbox/local/network"
	"github.com/agentrun/agent/sandbox/local/network/egress"
	"github.com/agentrun/agent/sandbox/netpolicy"
)

const helperEnv = "AGENT_TEST_NETD"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		// The egress helper, re-executed from the test binary: args end with --config FILE.
		var cfg string
		for i, a := range os.Args {
			if a == "--config" && i+1 < len(os.Args) {
				cfg = os.Args[i+1]
			}
		}
		if err := egress.Main(context.Background(), cfg, os.Stdout, slog.Default()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft")
	}
}

// fakeSandbox is a process in its own network namespace, standing in for a sandbox's init.
type fakeSandbox struct {
	id    string
	owner string
	cmd   *exec.Cmd
	ns    netns.NsHandle
}

func newManager(t *testing.T, in *fakenet.Internet) *network.Manager {
	t.Helper()
	m, err := network.New(network.Config{
		// The default run directory: leases and sweeps are host-wide, so tests running at the
		// same time never share an address or reclaim each other's tables.
		Upstreams: []netip.AddrPort{in.Upstream()},
		Helper:    []string{os.Args[0]},
		HelperEnv: []string{helperEnv + "=1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func startSandbox(t *testing.T, m *network.Manager, policy string) *fakeSandbox {
	t.Helper()
	pol, err := netpolicy.Parse(policy)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("t%015d", time.Now().UnixNano()%1e15)
	owner := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Setup(ctx, id, owner, pol); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &fakeSandbox{id: id, owner: owner, cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if s.ns.IsOpen() {
			s.ns.Close()
		}
		if err := m.Teardown(context.Background(), id); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	if err := m.Attach(ctx, id, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if s.ns, err = netns.GetFromPid(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *fakeSandbox) in(t *testing.T, f func() error) error {
	t.Helper()
	return network.InNetns(s.ns, f)
}

// dial connects from inside the sandbox.
func (s *fakeSandbox) dial(t *testing.T, addr string) (net.Conn, error) {
	var c net.Conn
	err := s.in(t, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	})
	return c, err
}

func (s *fakeSandbox) gateway(m *network.Manager) string { return m.Nameserver(s.id) }

func (s *fakeSandbox) resolve(t *testing.T, m *network.Manager, name string, qtype uint16) (*dns.Msg, error) {
	var resp *dns.Msg
	err := s.in(t, func() error {
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), qtype)
		var err error
		resp, _, err = c.Exchange(q, net.JoinHostPort(s.gateway(m), "53"))
		return err
	})
	return resp, err
}

// get fetches path over HTTP (or HTTPS with sni) from addr, with the Host header host.
func (s *fakeSandbox) get(t *testing.T, in *fakenet.Internet, addr, sni, host string) (string, error) {
	c, err := s.dial(t, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if sni != "" {
		tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: in.CertPool()})
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		c = tc
	}
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// hostListener listens on every host address at an ephemeral port and counts connections.
func hostListener(t *testing.T) (port int, hits func() int) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := make(chan struct{}, 1000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n <- struct{}{}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() int { return len(n) }
}

func hostAddrs(t *testing.T) []string {
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range ifs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// checkNoLeaks fails the test when, at cleanup, sandbox links, firewall tables or egress
// helpers remain that were not there before (scoped to what this package makes: the host is
// shared with other tests).
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := netState()
	t.Cleanup(func() {
		var after []string
		for i := 0; i < 50; i++ {
			after = netState()
			if len(diff(before, after)) == 0 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("leaked: %v", diff(before, after))
	})
}

func netState() []string {
	var out []string
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "ag") || strings.HasPrefix(i.Name, "ap") || strings.HasPrefix(i.Name, "fn") {
			out = append(out, "link "+i.Name)
		}
	}
	b, _ := exec.Command("nft", "list", "tables").Output()
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "agent_") {
			out = append(out, l)
		}
	}
	snap, _ := leakcheck.Take(leakcheck.Scope{MountPrefixes: []string{"/nonexistent"}, CgroupPrefixes: []string{"/nonexistent"},
		ProcessMarkers: []string{network.HelperMarker}, SkipNft: true})
	for _, p := range snap.Processes {
		if strings.Contains(p, network.HelperMarker) {
			out = append(out, "process "+p)
		}
	}
	return out
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, x)
		}
	}
	return out
}

func TestInternetMode(t *testing.T) {
	requireRoot(t)
	checkNoLeaks(t)
	in := fakenet.New(t)
	m := newManager(t, in)
	a := startSandbox(t, m, "internet")
	b := startSandbox(t, m, "internet")

	t.Run("public address reachable, masqueraded", func(t *testing.T) {
		body, err := a.get(t, in, fakenet.Allowed.String()+":80", "", "allowed.test")
		if err != nil {
			t.Fatalf("GET public host: %v", err)
		}
		if !strings.Contains(body, "hello from 203.0.113.10") {
			t.Fatalf("body %q", body)
		}
		hits := in.HitsTo(fakenet.Allowed)
		if len(hits) == 0 || hits[len(hits)-1].Peer.Addr() != fakenet.HostSide {
			t.Fatalf("fake host saw %+v; want a connection from the host's address (masquerade)", hits)
		}
	})
	t.Run("dns through the gateway", func(t *testing.T) {
		resp, err := a.resolve(t, m, "other.test", dns.TypeA)
		if err != nil || len(resp.Answer) != 1 {
			t.Fatalf("resolve: %v %v", resp, err)
		}
	})
	t.Run("traps and metadata refused", func(t *testing.T) {
		for _, tr := range fakenet.Traps {
			for _, port := range []string{"80", "443"} {
				if c, err := a.dial(t, net.JoinHostPort(tr.String(), port)); err == nil {
					c.Close()
					t.Errorf("connected to %s:%s", tr, port)
				}
			}
			_ = a.in(t, func() error {
				c, err := net.Dial("udp4", net.JoinHostPort(tr.String(), "53"))
				if err == nil {
					c.Write([]byte("probe"))
					c.Close()
				}
				return nil
			})
		}
		time.Sleep(200 * time.Millisecond)
		if h := in.TrapHits(); len(h) > 0 {
			t.Fatalf("traps were reached: %+v", h)
		}
	})
	t.Run("host refused", func(t *testing.T) {
		port, hits := hostListener(t)
		targets := append(hostAddrs(t), a.gateway(m), b.gateway(m))
		for _, h := range targets {
			if c, err := a.dial(t, net.JoinHostPort(h, fmt.Sprint(port))); err == nil {
				c.Close()
				t.Errorf("reached the host at %s:%d", h, port)
			}
		}
		if n := hits(); n != 0 {
			t.Fatalf("host listener saw %d connections", n)
		}
	})
	t.Run("other sandbox refused", func(t *testing.T) {
		var ln net.Listener
		if err := b.in(t, func() error {
			var err error
			ln, err = net.Listen("tcp4", "0.0.0.0:8080")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rep, _ := m.Report(context.Background(), b.id)
		if c, err := a.dial(t, net.JoinHostPort(rep.Address, "8080")); err == nil {
			c.Close()
			t.Fatalf("sandbox a reached sandbox b at %s", rep.Address)
		}
	})
	t.Run("no ipv6", func(t *testing.T) {
		if c, err := a.dial(t, "[fd00::2]:80"); err == nil {
			c.Close()
			t.Fatal("IPv6 connect succeeded")
		}
	})
	t.Run("report", func(t *testing.T) {
		rep, err := m.Report(context.Background(), a.id)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Policy != "internet" || rep.RefusedPackets == 0 {
			t.Fatalf("report %+v", rep)
		}
		found := slices.ContainsFunc(rep.Refused, func(e egress.Event) bool {
			return e.Kind == "packet" && strings.HasPrefix(e.Addr, "169.254.169.254:")
		})
		if !found {
			t.Fatalf("metadata refusal not reported: %+v", rep.Refused)
		}
	})
}

func TestAllowList(t *testing.T) {
	requireRoot(t)
	checkNoLeaks(t)
	in := fakenet.New(t)
	m := newManager(t, in)
	s := startSandbox(t, m, "allow:allowed.test,*.allowed.test,*.wild.test")
	ctx := context.Background()

	t.Run("allowed name resolves and connects over TLS and HTTP", func(t *testing.T) {
		resp, err := s.resolve(t, m, "allowed.test", dns.TypeA)
		if err != nil || len(resp.Answer) != 1 {
			t.Fatalf("resolve: %v %v", resp, err)
		}
		if _, err := s.get(t, in, "203.0.113.10:443", "allowed.test", "allowed.test"); err != nil {
			t.Fatalf("https: %v", err)
		}
		if _, err := s.get(t, in, "203.0.113.10:80", "", "allowed.test"); err != nil {
			t.Fatalf("http: %v", err)
		}
	})
	t.Run("other names refused by the resolver, upstream never asked", func(t *testing.T) {
		for _, n := range []string{"other.test", "abc.def.tunnel.other.test", "allowed.test.evil.test"} {
			resp, err := s.resolve(t, m, n, dns.TypeA)
			if err != nil || resp.Rcode != dns.RcodeNameError {
				t.Errorf("%s: %v %v", n, resp, err)
			}
		}
		if q := in.DNSQueries(); slices.ContainsFunc(q, func(n string) bool { return strings.Contains(n, "other.test") }) {
			t.Fatalf("upstream saw %v", q)
		}
	})
	t.Run("data-carrying record types answered empty", func(t *testing.T) {
		resp, err := s.resolve(t, m, "allowed.test", dns.TypeTXT)
		if err != nil || len(resp.Answer) != 0 {
			t.Fatalf("TXT: %v %v", resp, err)
		}
	})
	t.Run("rebinding to a private address dropped", func(t *testing.T) {
		resp, err := s.resolve(t, m, "rebind.allowed.test", dns.TypeA)
		if err != nil || len(resp.Answer) != 0 {
			t.Fatalf("rebind answer kept: %v %v", resp, err)
		}
		if _, err := s.get(t, in, "10.1.2.3:80", "", "rebind.allowed.test"); err == nil {
			t.Fatal("reached a private address under an allowed name")
		}
	})
	t.Run("SNI not allowed", func(t *testing.T) {
		if _, err := s.get(t, in, "203.0.113.20:443", "evil.test", "evil.test"); err == nil {
			t.Fatal("evil.test reached")
		}
	})
	t.Run("allowed SNI to an address not its own", func(t *testing.T) {
		if _, err := s.get(t, in, "203.0.113.20:443", "allowed.test", "allowed.test"); err == nil {
			t.Fatal("allowed SNI to another host's address went through")
		}
	})
	t.Run("HTTP Host switched on a kept-alive connection", func(t *testing.T) {
		c, err := s.dial(t, "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		codes := []int{}
		for _, h := range []string{"allowed.test", "evil.test"} {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", h)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
		}
		if codes[0] != 200 || codes[1] != 403 {
			t.Fatalf("status codes %v; want [200 403]", codes)
		}
	})
	t.Run("non-TLS non-HTTP refused", func(t *testing.T) {
		c, err := s.dial(t, "203.0.113.10:22")
		if err != nil {
			return // refused at connect: fine too
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "SSH-2.0-client\r\n")
		b, _ := io.ReadAll(c)
		if strings.Contains(string(b), "SSH-2.0-fake") {
			t.Fatal("reached the banner service")
		}
	})
	t.Run("UDP and private ranges refused", func(t *testing.T) {
		for _, tr := range fakenet.Traps {
			if _, err := s.get(t, in, tr.String()+":80", "", "allowed.test"); err == nil {
				t.Errorf("reached trap %s", tr)
			}
		}
		if h := in.TrapHits(); len(h) > 0 {
			t.Fatalf("traps reached: %+v", h)
		}
		if h := in.HitsTo(fakenet.Other); slices.ContainsFunc(h, func(h fakenet.Hit) bool { return h.Name == "evil.test" }) {
			t.Fatalf("evil.test reached: %+v", h)
		}
	})
	t.Run("report lists refusals", func(t *testing.T) {
		rep, err := m.Report(ctx, s.id)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"dns other.test": false, "tcp evil.test": false}
		for _, e := range rep.Refused {
			k := e.Kind + " " + e.Name
			if _, ok := want[k]; ok {
				want[k] = true
			}
		}
		for k, ok := range want {
			if !ok {
				t.Errorf("report lacks %q: %+v", k, rep.Refused)
			}
		}
	})
}

func TestAllowCIDR(t *testing.T) {
	requireRoot(t)
	in := fakenet.New(t)
	m := newManager(t, in)
	s := startSandbox(t, m, "allow:203.0.113.20/32")
	c, err := s.dial(t, "203.0.113.20:22")
	if err != nil {
		t.Fatalf("allowed CIDR: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(b), "SSH-2.0-fake") {
		t.Fatalf("read %q", b)
	}
	if _, err := s.get(t, in, "203.0.113.10:80", "", "allowed.test"); err == nil {
		t.Fatal("address outside the CIDR reached")
	}
}

func TestSweepReclaimsCrashedSandbox(t *testing.T) {
	requireRoot(t)
	checkNoLeaks(t)
	in := fakenet.New(t)
	m := newManager(t, in)
	pol, _ := netpolicy.Parse("allow:allowed.test")
	owner := t.TempDir()
	id := "sweeptest0000001"
	ctx := context.Background()
	if err := m.Setup(ctx, id, owner, pol); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName("ag" + id[:13]); err != nil {
		t.Fatalf("host link missing: %v", err)
	}
	// A second manager (another process) sweeps after the owner is gone.
	os.RemoveAll(owner)
	m2, _ := network.New(network.Config{RunDir: filepathRunDir(m)})
	ids, err := m2.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids, id) {
		t.Fatalf("sweep reclaimed %v", ids)
	}
	if _, err := net.InterfaceByName("ag" + id[:13]); err == nil {
		t.Fatal("host link survived the sweep")
	}
	out, _ := exec.Command("nft", "list", "tables").Output()
	if strings.Contains(string(out), id) {
		t.Fatal("table survived the sweep")
	}
}

func filepathRunDir(m *network.Manager) string { return m.RunDir() }

var _ = errors.New

// TestSetupNetns: the pre-made namespace (runsc's path) holds the sandbox's link configured as
// Attach would, works like an attached one (DNS through the gateway, the fake internet through
// the same rules), and is gone, with its pinning mount, after Teardown.
func TestSetupNetns(t *testing.T) {
	requireRoot(t)
	checkNoLeaks(t)
	in := fakenet.New(t)
	m := newManager(t, in)
	pol, err := netpolicy.Parse("internet")
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("n%015d", time.Now().UnixNano()%1e15)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, err := m.SetupNetns(ctx, id, t.TempDir(), pol)
	if err != nil {
		t.Fatal(err)
	}
	torn := false
	t.Cleanup(func() {
		if !torn {
			_ = m.Teardown(context.Background(), id)
		}
	})
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeSandbox{id: id, ns: ns}
	if resp, err := s.resolve(t, m, "other.test", dns.TypeA); err != nil || len(resp.Answer) != 1 {
		t.Fatalf("resolve: %v %v", resp, err)
	}
	body, err := s.get(t, in, fakenet.Allowed.String()+":80", "", "allowed.test")
	if err != nil || !strings.Contains(body, "hello from 203.0.113.10") {
		t.Fatalf("GET public host: %q %v", body, err)
	}
	ns.Close()
	if err := m.Teardown(ctx, id); err != nil {
		t.Fatal(err)
	}
	torn = true
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("namespace file after teardown: %v", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), path) {
		t.Fatalf("namespace mount %s survived teardown", path)
	}
}
