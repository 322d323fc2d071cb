package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Proxy bounds.
const (
	// helloTimeout bounds the wait for the client's first bytes (ClientHello or request head).
	helloTimeout = 15 * time.Second
	// maxHello bounds the bytes read to find the server name.
	maxHello    = 64 << 10
	dialTimeout = 10 * time.Second
)

func (s *Server) serveProxy(ctx context.Context) error {
	for {
		c, err := s.proxyLn.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("egress proxy: %w", err)
		}
		select {
		case s.connSem <- struct{}{}:
		default:
			s.refuse(Event{Kind: "tcp", Reason: fmt.Sprintf("more than %d concurrent connections", s.cfg.MaxConns)})
			c.Close()
			continue
		}
		go func() {
			defer func() { <-s.connSem }()
			s.handle(ctx, c.(*net.TCPConn))
		}()
	}
}

// handle decides one redirected connection.
func (s *Server) handle(ctx context.Context, c *net.TCPConn) {
	defer c.Close()
	dst, err := originalDst(c)
	if err != nil {
		s.log.Warn("proxy: no original destination", "err", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(helloTimeout))
	br := bufio.NewReaderSize(c, 4096)
	first, err := br.Peek(1)
	if err != nil {
		s.refuse(Event{Kind: "tcp", Addr: dst.String(), Proto: "tcp", Reason: "no TLS or HTTP request (the allow-list admits only named destinations)"})
		return
	}
	if first[0] == 0x16 { // TLS handshake record
		s.handleTLS(ctx, c, br, dst)
		return
	}
	if looksLikeHTTP(br) {
		s.handleHTTP(ctx, c, br, dst)
		return
	}
	s.refuse(Event{Kind: "tcp", Addr: dst.String(), Proto: "tcp", Reason: "neither TLS nor HTTP (the allow-list admits only named destinations)"})
}

func looksLikeHTTP(br *bufio.Reader) bool {
	head, _ := br.Peek(8)
	for _, m := range []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "TRACE ", "CONNECT "} {
		n := min(len(m), len(head))
		if n > 3 && string(head[:n]) == m[:n] {
			return true
		}
	}
	return false
}

// checkDest decides whether the sandbox may reach dst under the name it presented.
func (s *Server) checkDest(ctx context.Context, name string, dst netip.AddrPort) (string, bool) {
	if name == "" {
		return "no server name (the allow-list admits only named destinations)", false
	}
	if !s.policy.AllowsName(name) {
		return "name not on the allow-list", false
	}
	if bad, why := s.refusable(dst.Addr()); bad {
		return why, false
	}
	if s.answers.has(name, dst.Addr()) {
		return "", true
	}
	lctx, cancel := context.WithTimeout(ctx, 2*dnsTimeout)
	defer cancel()
	addrs, err := s.lookupA(lctx, name)
	if err != nil {
		return "resolving the name failed: " + err.Error(), false
	}
	for _, a := range addrs {
		if a == dst.Addr().Unmap() {
			return "", true
		}
	}
	return "destination address is not one the name resolves to", false
}

// handleTLS reads the ClientHello, checks its server name, and splices the connection to its
// original destination, replaying the bytes read.
func (s *Server) handleTLS(ctx context.Context, c *net.TCPConn, br *bufio.Reader, dst netip.AddrPort) {
	rec := &recordingConn{r: io.LimitReader(br, maxHello), Conn: c}
	var sni string
	errHello := errors.New("hello read")
	srv := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errHello
	}})
	err := srv.HandshakeContext(ctx)
	if !errors.Is(err, errHello) {
		s.refuse(Event{Kind: "tcp", Addr: dst.String(), Proto: "tls", Reason: "unreadable TLS ClientHello"})
		return
	}
	name := strings.ToLower(strings.TrimSuffix(sni, "."))
	if why, ok := s.checkDest(ctx, name, dst); !ok {
		s.refuse(Event{Kind: "tcp", Name: name, Addr: dst.String(), Proto: "tls", Reason: why})
		return
	}
	up, err := s.dial(ctx, dst)
	if err != nil {
		s.refuse(Event{Kind: "tcp", Name: name, Addr: dst.String(), Proto: "tls", Reason: "connect failed: " + err.Error()})
		return
	}
	defer up.Close()
	_ = c.SetReadDeadline(time.Time{})
	if _, err := up.Write(rec.buf.Bytes()); err != nil {
		return
	}
	splice(c, br, up)
}

func (s *Server) dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return d.DialContext(ctx, "tcp4", dst.String())
}

// splice copies both ways until both directions end. rd is the client's buffered reader (it may
// hold bytes already read from the client).
func splice(client *net.TCPConn, rd io.Reader, up net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, rd)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, up)
		_ = client.CloseWrite()
	}()
	wg.Wait()
}

// recordingConn feeds crypto/tls the client's bytes and keeps a copy; writes fail, so nothing is
// ever sent to the client on the proxy's behalf.
type recordingConn struct {
	net.Conn
	r   io.Reader
	buf bytes.Buffer
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf.Write(p[:n])
	return n, err
}

func (r *recordingConn) Write(p []byte) (int, error) { return 0, errors.New("write refused") }

// handleHTTP serves plain HTTP: every request on the connection is checked (its Host must be
// allowed and resolve to the connection's destination) and forwarded to that destination.
func (s *Server) handleHTTP(ctx context.Context, c *net.TCPConn, br *bufio.Reader, dst netip.AddrPort) {
	_ = c.SetReadDeadline(time.Time{})
	tr := &http.Transport{
		DialContext:           func(ctx context.Context, _, _ string) (net.Conn, error) { return s.dial(ctx, dst) },
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
		DisableCompression:    true,
	}
	defer tr.CloseIdleConnections()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "sandbox egress proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		name := strings.ToLower(strings.TrimSuffix(host, "."))
		if r.Method == http.MethodConnect {
			s.refuse(Event{Kind: "tcp", Name: name, Addr: dst.String(), Proto: "http", Reason: "CONNECT refused"})
			http.Error(w, "blocked by the sandbox's network policy", http.StatusForbidden)
			return
		}
		if why, ok := s.checkDest(r.Context(), name, dst); !ok {
			s.refuse(Event{Kind: "tcp", Name: name, Addr: dst.String(), Proto: "http", Reason: why})
			http.Error(w, "blocked by the sandbox's network policy: "+why, http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: helloTimeout, MaxHeaderBytes: maxHello,
		IdleTimeout: 2 * time.Minute, ErrorLog: nil}
	ln := newOneConnListener(&bufConn{TCPConn: c, r: br})
	go func() {
		select {
		case <-ctx.Done():
			_ = srv.Close()
		case <-ln.done:
		}
	}()
	_ = srv.Serve(ln)
	<-ln.done
	_ = srv.Close()
}

// bufConn reads through the buffered reader that holds the peeked bytes.
type bufConn struct {
	*net.TCPConn
	r io.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// oneConnListener hands out one connection and then blocks until it is closed.
type oneConnListener struct {
	mu   sync.Mutex
	c    net.Conn
	done chan struct{}
	once sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{done: make(chan struct{})}
	l.c = &notifyConn{Conn: c, onClose: func() { l.once.Do(func() { close(l.done) }) }}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error { return nil }
func (l *oneConnListener) Addr() net.Addr {
	return &net.TCPAddr{}
}

type notifyConn struct {
	net.Conn
	onClose func()
}

func (n *notifyConn) Close() error {
	err := n.Conn.Close()
	n.onClose()
	return err
}

// originalDst returns the destination the sandbox connected to before nftables redirected it.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var sa unix.RawSockaddrInet4
	var serr error
	err = rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(sa))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, 80 /* SO_ORIGINAL_DST */, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			serr = e
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", serr)
	}
	if sa.Family != syscall.AF_INET {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: family %d", sa.Family)
	}
	port := uint16(sa.Port>>8) | uint16(sa.Port&0xff)<<8
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), nil
}
