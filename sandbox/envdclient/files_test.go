package envdclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

func TestWriteFileAndOpen(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)

	if err := c.WriteFile(ctx, "/home/user/dir/sub/a.txt", strings.NewReader("hello\n")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(e.HostPath("home/user/dir/sub/a.txt"))
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("file on disk = %q, %v", got, err)
	}
	// Parents are created owned by the user.
	var st syscallStat
	if err := statOwner(e.HostPath("home/user/dir"), &st); err != nil || st.uid != 1000 {
		t.Fatalf("parent dir owner = %+v, %v; want uid 1000", st, err)
	}
	r, err := c.Open(ctx, "/home/user/dir/sub/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != "hello\n" {
		t.Fatalf("Open read %q, %v", b, err)
	}

	// Relative paths are relative to the user's home; truncation of an existing file.
	if err := c.WriteFile(ctx, "dir/sub/a.txt", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(e.HostPath("home/user/dir/sub/a.txt"))
	if string(got) != "x" {
		t.Fatalf("relative write: file = %q", got)
	}
	// Empty file.
	if err := c.WriteFile(ctx, "/home/user/empty", nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(e.HostPath("home/user/empty")); err != nil || fi.Size() != 0 {
		t.Fatalf("empty file: %v, %v", fi, err)
	}
	// Names that need escaping in a multipart header survive.
	odd := `/home/user/we"ird\name ü.txt`
	if err := c.WriteFile(ctx, odd, strings.NewReader("odd")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(e.HostPath(`home/user/we"ird\name ü.txt`)); err != nil || string(got) != "odd" {
		t.Fatalf("odd name: %q, %v", got, err)
	}
}

func TestOpenErrors(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)

	if _, err := c.Open(ctx, "/home/user/missing"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("missing file: %v, want ErrNotFound", err)
	}
	if _, err := c.Open(ctx, "/home/user"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("directory: %v, want ErrInvalid", err)
	}
	if _, err := c.Open(ctx, "/home/user/a\x00b"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("NUL in path: %v, want ErrInvalid", err)
	}
	if _, err := c.Open(ctx, ""); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("empty path: %v, want ErrInvalid", err)
	}
	// Writing below a regular file cannot create the parent.
	if err := c.WriteFile(ctx, "/etc/passwd/x", strings.NewReader("x")); err == nil {
		t.Fatal("write below a file succeeded")
	}
	// Paths cannot leave the world: "../.." stays inside the root.
	r, err := c.Open(ctx, "/../../../../etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if !strings.Contains(string(b), "user:x:1000") || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("read outside the world: %q", b)
	}
	// The error says what was being done.
	_, err = c.Open(ctx, "/nope")
	if err == nil || !strings.Contains(err.Error(), "read /nope") {
		t.Fatalf("error without context: %v", err)
	}
}

func TestWriteFiles(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	rec := &recorder{next: newTransport(nil)}
	c := e.client(t, func(cfg *Config) { cfg.Transport = rec })
	ctx := ctxT(t, time.Minute)

	files := []sandbox.File{
		{Path: "/home/user/a.txt", Data: []byte("A")},
		{Path: "/home/user/d/e/b.txt", Data: []byte("BB")},
		{Path: "rel/c.txt", Data: []byte("CCC")},
		{Path: "/tmp/empty", Data: nil},
	}
	if err := c.WriteFiles(ctx, files); err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"home/user/a.txt": "A", "home/user/d/e/b.txt": "BB", "home/user/rel/c.txt": "CCC", "tmp/empty": "",
	} {
		got, err := os.ReadFile(e.HostPath(host))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", host, got, err, want)
		}
	}
	// One request, no path in the query, four parts.
	n := 0
	rec.mu.Lock()
	for _, r := range rec.reqs {
		if r.URL.Path == "/files" {
			n++
			if r.URL.Query().Has("path") {
				t.Errorf("multi-file write sent path=%q", r.URL.Query().Get("path"))
			}
		}
	}
	rec.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d POST /files requests, want 1", n)
	}
	if err := c.WriteFiles(ctx, []sandbox.File{{Path: "/x", Data: nil}, {Path: "/x"}}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("duplicate paths: %v, want ErrInvalid", err)
	}
	if err := c.WriteFiles(ctx, nil); err != nil {
		t.Fatalf("no files: %v", err)
	}
	// A single file goes with path= as the SDKs send it.
	if err := c.WriteFiles(ctx, []sandbox.File{{Path: "/home/user/one", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := rec.find("/files"); r == nil || r.URL.Query().Get("path") != "/home/user/one" {
		t.Fatalf("single-file write query: %v", r.URL.Query())
	}
}

func TestFilesystemRPCs(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)

	if err := c.MakeDir(ctx, "/home/user/p/q/r"); err != nil {
		t.Fatal(err)
	}
	if err := c.MakeDir(ctx, "/home/user/p/q/r"); !errors.Is(err, sandbox.ErrExists) {
		t.Fatalf("MakeDir twice: %v, want ErrExists", err)
	}
	if err := c.WriteFile(ctx, "/home/user/p/f.txt", strings.NewReader("12345")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f.txt", e.HostPath("home/user/p/link")); err != nil {
		t.Fatal(err)
	}

	st, err := c.Stat(ctx, "/home/user/p/f.txt")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "f.txt" || st.Path != "/home/user/p/f.txt" || st.Type != sandbox.TypeFile || st.Size != 5 ||
		st.Owner != "user" || st.Permissions == "" || st.ModTime.IsZero() || time.Since(st.ModTime) > time.Hour {
		t.Fatalf("Stat = %+v", st)
	}
	lst, err := c.Stat(ctx, "/home/user/p/link")
	if err != nil {
		t.Fatal(err)
	}
	if lst.Type != sandbox.TypeSymlink || !strings.HasSuffix(lst.SymlinkTarget, "f.txt") {
		t.Fatalf("Stat symlink = %+v", lst)
	}
	dst, err := c.Stat(ctx, "p")
	if err != nil || dst.Type != sandbox.TypeDir || dst.Path != "/home/user/p" {
		t.Fatalf("Stat relative dir = %+v, %v", dst, err)
	}
	if _, err := c.Stat(ctx, "/home/user/nope"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("Stat missing: %v, want ErrNotFound", err)
	}

	names := func(es []sandbox.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Path)
		}
		slices.Sort(out)
		return out
	}
	l1, err := c.List(ctx, "/home/user/p", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l1); !slices.Equal(got, []string{"/home/user/p/f.txt", "/home/user/p/link", "/home/user/p/q"}) {
		t.Fatalf("List depth 1 = %v", got)
	}
	l3, err := c.List(ctx, "/home/user/p", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l3); !slices.Equal(got, []string{"/home/user/p/f.txt", "/home/user/p/link", "/home/user/p/q", "/home/user/p/q/r"}) {
		t.Fatalf("List depth 3 = %v", got)
	}
	if _, err := c.List(ctx, "/home/user/p/f.txt", 1); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("List of a file: %v, want ErrInvalid", err)
	}
	if _, err := c.List(ctx, "/home/user/none", 1); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("List of a missing dir: %v, want ErrNotFound", err)
	}

	if err := c.Move(ctx, "/home/user/p/f.txt", "/home/user/p/q/g.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.HostPath("home/user/p/q/g.txt")); err != nil {
		t.Fatalf("moved file: %v", err)
	}
	if err := c.Move(ctx, "/home/user/p/none", "/home/user/p/x"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("Move missing: %v, want ErrNotFound", err)
	}
	if err := c.Remove(ctx, "/home/user/p"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "/home/user/p"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("Stat after Remove: %v", err)
	}
	if _, err := os.Lstat(e.HostPath("home/user/p")); !os.IsNotExist(err) {
		t.Fatalf("removed tree still on disk: %v", err)
	}
	// As in envd, removing what is not there is not an error.
	if err := c.Remove(ctx, "/home/user/p"); err != nil {
		t.Fatalf("Remove missing: %v", err)
	}
}

func TestGzipDownload(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	rec := &recorder{next: newTransport(nil)}
	c := e.client(t, func(cfg *Config) { cfg.Transport = rec; cfg.CompressDownloads = true })
	ctx := ctxT(t, time.Minute)
	data := bytes.Repeat([]byte("compressible line of text\n"), 10000)
	if err := os.WriteFile(e.HostPath("home/user/big.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := c.Open(ctx, "/home/user/big.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("gzip download: %d bytes, %v", len(got), err)
	}
	req, hdr := rec.find("/files")
	if req.Header.Get("Accept-Encoding") != "gzip" || hdr.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip not negotiated: asked %q, got %q", req.Header.Get("Accept-Encoding"), hdr.Get("Content-Encoding"))
	}
	// Without the option the transfer is identity.
	plain := e.client(t, func(cfg *Config) { cfg.Transport = rec })
	r, err = plain.Open(ctx, "/home/user/big.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(r)
	r.Close()
	if _, hdr := rec.find("/files"); hdr.Get("Content-Encoding") != "" || !bytes.Equal(got, data) {
		t.Fatalf("identity download: encoding %q, %d bytes", hdr.Get("Content-Encoding"), len(got))
	}
}

// patternReader yields n pseudo-random bytes without holding them.
type patternReader struct {
	rng *rand.ChaCha8
	n   int64
}

func newPatternReader(seed byte, n int64) *patternReader {
	var s [32]byte
	s[0] = seed
	return &patternReader{rng: rand.NewChaCha8(s), n: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	n, _ := p.rng.Read(b)
	p.n -= int64(n)
	return n, nil
}

// heapPeak samples the heap until stop is called and returns the peak in use above the start.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

func TestLargeFileRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB transfer")
	}
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, 5*time.Minute)
	const size = 100 << 20
	const bound = 48 << 20 // far below the file: nothing may hold it whole

	want := sha256.New()
	stop := heapPeak()
	if err := c.WriteFile(ctx, "/home/user/big.bin", io.TeeReader(newPatternReader(7, size), want)); err != nil {
		t.Fatal(err)
	}
	upPeak := stop()
	fi, err := os.Stat(e.HostPath("home/user/big.bin"))
	if err != nil || fi.Size() != size {
		t.Fatalf("uploaded file: %v, %v", fi, err)
	}

	stop = heapPeak()
	r, err := c.Open(ctx, "/home/user/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, r)
	r.Close()
	downPeak := stop()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("downloaded content differs from uploaded content")
	}
	t.Logf("heap peak: upload %d KiB, download %d KiB", upPeak>>10, downPeak>>10)
	if upPeak > bound || downPeak > bound {
		t.Fatalf("client heap grew by %d / %d bytes for a %d-byte file", upPeak, downPeak, size)
	}
}

// failingReader fails after some bytes, as a broken source would.
type failingReader struct{ n int }

var errSource = errors.New("source broke")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errSource
	}
	n := min(len(p), f.n)
	clear(p[:n])
	f.n -= n
	return n, nil
}

func TestWriteFileSourceError(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	err := c.WriteFile(ctx, "/home/user/broken", &failingReader{n: 1 << 20})
	if !errors.Is(err, errSource) {
		t.Fatalf("WriteFile with a failing source: %v, want the source's error", err)
	}
	// The client still works afterwards.
	if err := c.WriteFile(ctx, "/home/user/ok", strings.NewReader("ok")); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	if err := c.MakeDir(ctx, "/home/user/w/sub"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, "/home/user/w", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(ctx, "/home/user/w/a.txt", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, "a.txt", sandbox.EventCreate, sandbox.EventWrite)
	if err := c.Remove(ctx, "/home/user/w/a.txt"); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, "a.txt", sandbox.EventRemove)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for range w.Events() {
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}

	// Recursive: events below subdirectories, named relative to the watched directory.
	wctx, cancel := context.WithCancel(ctx)
	rw, err := c.Watch(wctx, "/home/user/w", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(ctx, "/home/user/w/sub/b.txt", strings.NewReader("b")); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, rw, "sub/b.txt", sandbox.EventCreate, sandbox.EventWrite)
	// Ending the context ends the watch and says why.
	cancel()
	for range rw.Events() {
	}
	if err := rw.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err after cancel = %v, want context.Canceled", err)
	}

	if _, err := c.Watch(ctx, "/home/user/nowhere", false); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("watch missing dir: %v, want ErrNotFound", err)
	}
	if err := c.WriteFile(ctx, "/home/user/file", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch(ctx, "/home/user/file", false); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("watch a file: %v, want ErrInvalid", err)
	}
}

func expectEvent(t *testing.T, w sandbox.Watcher, name string, types ...sandbox.EventType) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended before %s %v: %v", name, types, w.Err())
			}
			if ev.Name == name && slices.Contains(types, ev.Type) {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event for %s", types, name)
		}
	}
}

func TestAccessToken(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{Token: "s3cret-token"})
	ctx := ctxT(t, time.Minute)
	good := e.client(t, func(cfg *Config) { cfg.AccessToken = "s3cret-token" })
	if err := good.WriteFile(ctx, "/home/user/t", strings.NewReader("t")); err != nil {
		t.Fatal(err)
	}
	if _, err := good.Run(ctx, sandbox.Cmd{Shell: "true"}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Client{
		"no token":    e.client(t, nil),
		"wrong token": e.client(t, func(cfg *Config) { cfg.AccessToken = "s3cret-tokeN" }),
	} {
		if _, err := c.Stat(ctx, "/home/user/t"); !errors.Is(err, sandbox.ErrUnauthorized) {
			t.Errorf("%s: Stat = %v, want ErrUnauthorized", name, err)
		}
		if _, err := c.Open(ctx, "/home/user/t"); !errors.Is(err, sandbox.ErrUnauthorized) {
			t.Errorf("%s: Open = %v, want ErrUnauthorized", name, err)
		}
		if err := c.WriteFile(ctx, "/home/user/t", strings.NewReader("x")); !errors.Is(err, sandbox.ErrUnauthorized) {
			t.Errorf("%s: WriteFile = %v, want ErrUnauthorized", name, err)
		}
		if _, err := c.Run(ctx, sandbox.Cmd{Shell: "true"}); !errors.Is(err, sandbox.ErrUnauthorized) {
			t.Errorf("%s: Run = %v, want ErrUnauthorized", name, err)
		}
		if _, err := c.Watch(ctx, "/home/user", false); !errors.Is(err, sandbox.ErrUnauthorized) {
			t.Errorf("%s: Watch = %v, want ErrUnauthorized", name, err)
		}
		// /health stays open: it tells a live sandbox from a dead one.
		if err := c.Health(ctx); err != nil {
			t.Errorf("%s: Health = %v", name, err)
		}
	}
	if got, _ := os.ReadFile(e.HostPath("home/user/t")); string(got) != "t" {
		t.Fatalf("unauthorized write changed the file: %q", got)
	}
}

func TestHeaders(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	ctx := ctxT(t, time.Minute)
	for _, prefix := range []string{DefaultHeaderPrefix, NovitaHeaderPrefix} {
		rec := &recorder{next: newTransport(nil)}
		c := e.client(t, func(cfg *Config) {
			cfg.Transport = rec
			cfg.SandboxID = "sbx1abc"
			cfg.HeaderPrefix = prefix
			cfg.AccessToken = "tok"
			cfg.DefaultUser = "root"
		})
		if err := c.WriteFile(ctx, "/root/h", strings.NewReader("h")); err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(ctx, sandbox.Cmd{Shell: "id -un", Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(res.Stdout)) != "root" {
			t.Fatalf("DefaultUser root ran as %q", res.Stdout)
		}
		if _, err := c.Stat(ctx, "/root/h"); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/files", "/process.Process/Start", "/filesystem.Filesystem/Stat"} {
			req, _ := rec.find(path)
			if req == nil {
				t.Fatalf("no request to %s", path)
			}
			h := req.Header
			if h.Get(prefix+"-Sandbox-Id") != "sbx1abc" || h.Get(prefix+"-Sandbox-Port") != "49983" || h.Get("X-Access-Token") != "tok" {
				t.Errorf("%s %s: routing/token headers missing: %v", prefix, path, h)
			}
			if path == "/files" {
				if req.URL.Query().Get("username") != "root" {
					t.Errorf("/files without username=root: %v", req.URL.Query())
				}
			} else if h.Get("Authorization") != "Basic cm9vdDo=" {
				t.Errorf("%s: Authorization = %q", path, h.Get("Authorization"))
			}
		}
		start, _ := rec.find("/process.Process/Start")
		if start.Header.Get("Connect-Timeout-Ms") != "10000" || start.Header.Get("Keepalive-Ping-Interval") == "" {
			t.Errorf("Start headers: %v", start.Header)
		}
	}
	// No default user: no Authorization, no username.
	rec := &recorder{next: newTransport(nil)}
	c := e.client(t, func(cfg *Config) { cfg.Transport = rec })
	if err := c.WriteFile(ctx, "/home/user/h", strings.NewReader("h")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, sandbox.Cmd{Shell: "true"}); err != nil {
		t.Fatal(err)
	}
	if req, _ := rec.find("/files"); req.URL.Query().Has("username") {
		t.Errorf("username sent without a default user")
	}
	if req, _ := rec.find("/process.Process/Start"); req.Header.Get("Authorization") != "" || req.Header.Get("Connect-Timeout-Ms") != "" {
		t.Errorf("Start sent Authorization %q / Connect-Timeout-Ms %q", req.Header.Get("Authorization"), req.Header.Get("Connect-Timeout-Ms"))
	}
	// Unknown user: refused.
	if _, err := c.WithUser("nosuchuser").Stat(ctx, "/"); !errors.Is(err, sandbox.ErrUnauthorized) {
		t.Fatalf("unknown user: %v, want ErrUnauthorized", err)
	}
}

func TestUnixSocket(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{Unix: true})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	if err := c.WriteFile(ctx, "/home/user/u.txt", strings.NewReader("over a socket")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(ctx, sandbox.Cmd{Shell: "cat u.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "over a socket" {
		t.Fatalf("stdout %q", res.Stdout)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	e.Kill()
	if err := c.Health(ctx); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Health after kill = %v, want ErrGone", err)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	// Malformed JSON to an RPC: invalid_argument, and envd keeps serving.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/filesystem.Filesystem/Stat", strings.NewReader(`{"path": [}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_argument") {
		t.Fatalf("malformed JSON: %d %s", resp.StatusCode, body)
	}
	// A multipart body cut in the middle: an error, not a partial success.
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/files?path=/home/user/cut", strings.NewReader("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/home/user/cut\"\r\n\r\npartial"))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		t.Fatalf("truncated multipart accepted: %d", resp.StatusCode)
	}
	if _, err := c.List(ctx, "/home/user", -1); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("negative depth: %v", err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("envd unhealthy after malformed input: %v", err)
	}
	var root string
	if entries, err := c.List(ctx, "/", 1); err != nil {
		t.Fatal(err)
	} else {
		for _, en := range entries {
			root += filepath.Base(en.Path) + " "
		}
	}
	if !strings.Contains(root, "home") || !strings.Contains(root, "etc") {
		t.Fatalf("List / = %s", root)
	}
}

// syscallStat is the owner of a host path.
type syscallStat struct{ uid, gid uint32 }

func TestPollWatch(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	if err := c.MakeDir(ctx, "/home/user/pw/sub"); err != nil {
		t.Fatal(err)
	}
	w, err := c.PollWatch(ctx, "/home/user/pw", true, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(ctx, "/home/user/pw/sub/a.txt", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, "sub/a.txt", sandbox.EventCreate, sandbox.EventWrite)
	if err := c.Move(ctx, "/home/user/pw/sub/a.txt", "/home/user/pw/b.txt"); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, "sub/a.txt", sandbox.EventRename, sandbox.EventRemove)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for range w.Events() {
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}
	// Close removed the watcher from envd.
	_, err = c.fs.GetWatcherEvents(ctx, connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: w.(*pollWatcher).id}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("watcher still known to envd after Close: %v", err)
	}
	if _, err := c.PollWatch(ctx, "/home/user/nowhere", false, 0); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("poll-watch a missing dir: %v, want ErrNotFound", err)
	}
	// Ending the context ends the watch and says why.
	wctx, cancel := context.WithCancel(ctx)
	w2, err := c.PollWatch(wctx, "/home/user/pw", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range w2.Events() {
	}
	if err := w2.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err after cancel = %v", err)
	}
}
