package filesapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd"
	"github.com/agentrun/agent/sandbox/envd/internal/envdtest"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
)

type env struct {
	world string
	base  string
	http  *http.Client
}

func newEnv(t *testing.T, cfg envd.Config) *env {
	t.Helper()
	cfg.Root = envdtest.NewWorld(t)
	_, hs := envdtest.Start(t, cfg)
	// A transport that leaves Content-Encoding alone, to see what the server sends.
	tr := hs.Client().Transport.(*http.Transport).Clone()
	tr.DisableCompression = true
	t.Cleanup(tr.CloseIdleConnections)
	return &env{world: cfg.Root, base: hs.URL, http: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

func (e *env) host(world string) string { return filepath.Join(e.world, world) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type part struct {
	disposition string // full Content-Disposition value
	data        string
}

func filePart(filename, data string) part {
	return part{fmt.Sprintf(`form-data; name="file"; filename="%s"`, filename), data}
}

func multipartBody(t *testing.T, parts ...part) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Disposition": {p.disposition},
			"Content-Type":        {"application/octet-stream"},
		})
		must(t, err)
		_, err = io.WriteString(w, p.data)
		must(t, err)
	}
	must(t, mw.Close())
	return &buf, mw.FormDataContentType()
}

type result struct {
	status int
	body   []byte
	header http.Header
}

func (e *env) do(t *testing.T, method, query string, body io.Reader, header map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(method, e.base+"/files?"+query, body)
	must(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := e.http.Do(req)
	must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	must(t, err)
	return result{res.StatusCode, b, res.Header}
}

func (e *env) upload(t *testing.T, query string, parts ...part) result {
	t.Helper()
	body, ct := multipartBody(t, parts...)
	return e.do(t, http.MethodPost, query, body, map[string]string{"Content-Type": ct})
}

type entry struct {
	Path     string            `json:"path"`
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata"`
}

func entries(t *testing.T, r result) []entry {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out []entry
	must(t, json.Unmarshal(r.body, &out))
	return out
}

// wantError checks envd's error shape {"code": status, "message": ...}.
func wantError(t *testing.T, r result, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Code != status || e.Message == "" {
		t.Fatalf("error body %q: %+v %v", r.body, e, err)
	}
}

func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

func owner(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st.Uid
}

func TestUploadMultipartSingle(t *testing.T) {
	e := newEnv(t, envd.Config{})
	r := e.upload(t, q("path", "/home/user/dir/sub/a.txt"), filePart("/home/user/dir/sub/a.txt", "hello"))
	var raw []map[string]any
	must(t, json.Unmarshal(r.body, &raw))
	if r.status != 200 || len(raw) != 1 || raw[0]["path"] != "/home/user/dir/sub/a.txt" || raw[0]["name"] != "a.txt" || raw[0]["type"] != "file" || len(raw[0]) != 3 {
		t.Fatalf("response %d %s", r.status, r.body)
	}
	if got := readFile(t, e.host("/home/user/dir/sub/a.txt")); got != "hello" {
		t.Fatalf("content %q", got)
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{"dir", "dir/sub", "dir/sub/a.txt"} {
			if uid := owner(t, e.host("/home/user/"+p)); uid != envdtest.UserUID {
				t.Errorf("%s owned by %d, want %d", p, uid, envdtest.UserUID)
			}
		}
	}
}

func TestUploadMultipartMany(t *testing.T) {
	e := newEnv(t, envd.Config{})
	r := e.upload(t, "",
		filePart("/home/user/d/b.txt", "b"),
		part{`form-data; name="other"; filename="/home/user/ignored"`, "ignored"},
		filePart("c.txt", "c"),
		part{`form-data; name="file"; filename*=UTF-8''%7E/%C3%A9t%C3%A9/f.txt`, "f"},
		part{`form-data; name=file; filename=/tmp/bare.txt`, "bare"},
	)
	got := entries(t, r)
	want := []string{"/home/user/d/b.txt", "/home/user/c.txt", "/home/user/été/f.txt", "/tmp/bare.txt"}
	if len(got) != len(want) {
		t.Fatalf("entries %+v", got)
	}
	for i, w := range want {
		if got[i].Path != w || got[i].Type != "file" || got[i].Name != filepath.Base(w) {
			t.Errorf("entry %d = %+v, want %s", i, got[i], w)
		}
	}
	for i, data := range []string{"b", "c", "f", "bare"} {
		if c := readFile(t, e.host(want[i])); c != data {
			t.Errorf("%s = %q", want[i], c)
		}
	}
	if _, err := os.Stat(e.host("/home/user/ignored")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a non-file part was written")
	}
}

func TestUploadRules(t *testing.T) {
	e := newEnv(t, envd.Config{})
	// ?path= overrides the part filename.
	entries(t, e.upload(t, q("path", "real.txt"), filePart("/home/user/ignored.txt", "x")))
	if readFile(t, e.host("/home/user/real.txt")) != "x" {
		t.Error("override not honoured")
	}
	if _, err := os.Stat(e.host("/home/user/ignored.txt")); err == nil {
		t.Error("part filename used despite ?path=")
	}
	// The same path twice in one request.
	wantError(t, e.upload(t, "", filePart("/home/user/dup", "1"), filePart("~/dup", "2")), 400)
	// Existing files are truncated and keep their owner.
	must(t, os.WriteFile(e.host("/etc/motd"), []byte(strings.Repeat("long ", 100)), 0o644))
	entries(t, e.upload(t, "", filePart("/etc/motd", "short")))
	if readFile(t, e.host("/etc/motd")) != "short" {
		t.Error("existing file not truncated")
	}
	if os.Geteuid() == 0 && owner(t, e.host("/etc/motd")) != 0 {
		t.Error("existing file changed owner")
	}
	// As root: home is /root, files are root's.
	entries(t, e.upload(t, q("username", "root"), filePart("r.txt", "r")))
	if readFile(t, e.host("/root/r.txt")) != "r" || (os.Geteuid() == 0 && owner(t, e.host("/root/r.txt")) != 0) {
		t.Error("upload as root")
	}
	// Errors.
	wantError(t, e.upload(t, "", filePart("/home/user", "x")), 400)                                 // a directory
	wantError(t, e.upload(t, "", filePart("/etc/motd/x", "x")), 400)                                // below a file
	wantError(t, e.upload(t, "", part{`form-data; name="other"`, "x"}), 400)                        // no file part
	wantError(t, e.upload(t, "", part{`form-data; name="file"`, "x"}), 400)                         // no filename
	wantError(t, e.upload(t, "", part{`form-data; name="file"; filename="unterminated`, "x"}), 400) // malformed
	wantError(t, e.upload(t, "", part{`form-data; name="file"; filename="~bob/x"`, "x"}), 400)      // another home
	wantError(t, e.do(t, http.MethodPost, "", strings.NewReader("x"), map[string]string{"Content-Type": "text/plain"}), 400)
	wantError(t, e.do(t, http.MethodPost, "", strings.NewReader("x"), map[string]string{"Content-Type": "multipart/form-data"}), 400)
	wantError(t, e.do(t, http.MethodPut, "", strings.NewReader("x"), nil), 405)
	wantError(t, e.upload(t, q("username", "nobody"), filePart("x", "x")), 401)
	if err := unix.Mkfifo(e.host("/home/user/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.upload(t, "", filePart("fifo", "x")), 400)
}

func TestUploadOctetStream(t *testing.T) {
	e := newEnv(t, envd.Config{})
	hdr := map[string]string{"Content-Type": "application/octet-stream"}
	got := entries(t, e.do(t, http.MethodPost, q("path", "raw/file.bin"), strings.NewReader("raw data"), hdr))
	if len(got) != 1 || got[0].Path != "/home/user/raw/file.bin" || readFile(t, e.host("/home/user/raw/file.bin")) != "raw data" {
		t.Fatalf("raw upload: %+v", got)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("compressed data"))
	must(t, zw.Close())
	entries(t, e.do(t, http.MethodPost, q("path", "gz.txt"), &gz, map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}))
	if readFile(t, e.host("/home/user/gz.txt")) != "compressed data" {
		t.Error("gzip upload not decompressed")
	}
	// Multipart bodies may be gzip-encoded too.
	body, ct := multipartBody(t, filePart("mgz.txt", "m"))
	gz.Reset()
	zw = gzip.NewWriter(&gz)
	_, _ = zw.Write(body.Bytes())
	must(t, zw.Close())
	entries(t, e.do(t, http.MethodPost, "", &gz, map[string]string{"Content-Type": ct, "Content-Encoding": "gzip"}))
	if readFile(t, e.host("/home/user/mgz.txt")) != "m" {
		t.Error("gzip multipart upload")
	}
	wantError(t, e.do(t, http.MethodPost, "", strings.NewReader("x"), hdr), 400) // no path
	wantError(t, e.do(t, http.MethodPost, q("path", "bad.gz"), strings.NewReader("not gzip"), map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}), 400)
	wantError(t, e.do(t, http.MethodPost, q("path", "br"), strings.NewReader("x"), map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "br"}), 400)
}

func TestUploadBounds(t *testing.T) {
	e := newEnv(t, envd.Config{MaxUploadBytes: 1 << 20})
	big := strings.Repeat("x", 2<<20)
	hdr := map[string]string{"Content-Type": "application/octet-stream"}
	wantError(t, e.do(t, http.MethodPost, q("path", "big"), strings.NewReader(big), hdr), 413)
	wantError(t, e.upload(t, "", filePart("bigm", big)), 413)
	// A gzip bomb: a small body that decompresses far beyond the bound.
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, _ = zw.Write(zeros)
	}
	must(t, zw.Close())
	if gz.Len() >= 1<<20 {
		t.Fatalf("bomb is %d bytes compressed", gz.Len())
	}
	wantError(t, e.do(t, http.MethodPost, q("path", "bomb"), &gz, map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}), 413)
	for _, p := range []string{"big", "bigm", "bomb"} {
		if _, err := os.Stat(e.host("/home/user/" + p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("partial upload %s left behind", p)
		}
	}
	entries(t, e.do(t, http.MethodPost, q("path", "small"), strings.NewReader("ok"), hdr))
}

func TestUploadSymlinkEscape(t *testing.T) {
	e := newEnv(t, envd.Config{})
	outside := t.TempDir()
	must(t, os.Symlink(outside, e.host("/home/user/out")))
	must(t, os.Symlink("../../../../../../../../.."+outside, e.host("/home/user/climb")))
	for _, p := range []string{"out/x", "climb/x", "../../../../../" + outside + "/x", outside + "/y"} {
		r := e.upload(t, "", filePart(p, "evil"))
		if r.status == 200 {
			for _, en := range entries(t, r) {
				if b, err := os.ReadFile(e.host(en.Path)); err != nil || string(b) != "evil" {
					t.Errorf("reported %s but the world has %q, %v", en.Path, b, err)
				}
			}
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("files written outside the world: %v", ents)
	}
}

func TestDownload(t *testing.T) {
	e := newEnv(t, envd.Config{})
	must(t, os.WriteFile(e.host("/home/user/a.txt"), []byte("hello world"), 0o644))
	r := e.do(t, http.MethodGet, q("path", "a.txt"), nil, nil)
	if r.status != 200 || string(r.body) != "hello world" {
		t.Fatalf("download %d %q", r.status, r.body)
	}
	if cd := r.header.Get("Content-Disposition"); cd != "inline; filename=a.txt" {
		t.Errorf("Content-Disposition %q", cd)
	}
	if r.header.Get("Content-Encoding") != "" {
		t.Error("encoded without Accept-Encoding")
	}
	r = e.do(t, http.MethodGet, q("path", "/home/user/a.txt"), nil, map[string]string{"Range": "bytes=6-10"})
	if r.status != http.StatusPartialContent || string(r.body) != "world" {
		t.Errorf("range: %d %q", r.status, r.body)
	}
	wantError(t, e.do(t, http.MethodGet, q("path", "missing.txt"), nil, nil), 404)
	wantError(t, e.do(t, http.MethodGet, q("path", "a.txt/below"), nil, nil), 404)
	wantError(t, e.do(t, http.MethodGet, q("path", "/home"), nil, nil), 400)
	wantError(t, e.do(t, http.MethodGet, "", nil, nil), 400) // no path: the home directory
	wantError(t, e.do(t, http.MethodGet, q("path", "a.txt", "username", "nobody"), nil, nil), 401)
	must(t, unix.Mkfifo(e.host("/home/user/fifo"), 0o644))
	wantError(t, e.do(t, http.MethodGet, q("path", "fifo"), nil, nil), 400)
	// As root, relative to /root.
	must(t, os.WriteFile(e.host("/root/r"), []byte("r"), 0o600))
	if r := e.do(t, http.MethodGet, q("path", "r", "username", "root"), nil, nil); r.status != 200 || string(r.body) != "r" {
		t.Errorf("download as root: %d %q", r.status, r.body)
	}
	// Through symlinks inside the world only.
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o644))
	must(t, os.Symlink(filepath.Join(outside, "secret"), e.host("/home/user/leak")))
	wantError(t, e.do(t, http.MethodGet, q("path", "leak"), nil, nil), 404)
	wantError(t, e.do(t, http.MethodGet, q("path", "../../../../.."+outside+"/secret"), nil, nil), 404)
}

func TestDownloadGzip(t *testing.T) {
	e := newEnv(t, envd.Config{})
	content := strings.Repeat("compressible ", 1000)
	must(t, os.WriteFile(e.host("/home/user/c.txt"), []byte(content), 0o644))
	r := e.do(t, http.MethodGet, q("path", "c.txt"), nil, map[string]string{"Accept-Encoding": "gzip"})
	if r.status != 200 || r.header.Get("Content-Encoding") != "gzip" || len(r.body) >= len(content) {
		t.Fatalf("gzip download: %d %v %d bytes", r.status, r.header, len(r.body))
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	must(t, err)
	plain, err := io.ReadAll(zr)
	must(t, err)
	if string(plain) != content {
		t.Error("gzip content differs")
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	for ae, want := range map[string]string{
		"identity":                  "",
		"gzip;q=0":                  "",
		"br, gzip;q=0.5":            "gzip",
		"*":                         "",
		"*, identity;q=0":           "gzip",
		"gzip, identity":            "gzip",
		"identity;q=1, gzip;q=0.5":  "",
		"deflate":                   "",
		"GZIP":                      "gzip",
		"gzip;q=0, *;q=0, identity": "",
	} {
		r := e.do(t, http.MethodGet, q("path", "c.txt"), nil, map[string]string{"Accept-Encoding": ae})
		if r.status != 200 || r.header.Get("Content-Encoding") != want {
			t.Errorf("Accept-Encoding %q: %d, Content-Encoding %q, want %q", ae, r.status, r.header.Get("Content-Encoding"), want)
		}
	}
	wantError(t, e.do(t, http.MethodGet, q("path", "c.txt"), nil, map[string]string{"Accept-Encoding": "identity;q=0, br"}), 406)
}

func TestMetadata(t *testing.T) {
	e := newEnv(t, envd.Config{})
	body, ct := multipartBody(t, filePart("m.txt", "x"))
	r := e.do(t, http.MethodPost, "", body, map[string]string{"Content-Type": ct, "X-Metadata-Author": "alice", "X-Metadata-Run-Id": "42"})
	got := entries(t, r)
	if len(got) != 1 || got[0].Metadata["author"] != "alice" || got[0].Metadata["run-id"] != "42" || len(got[0].Metadata) != 2 {
		t.Fatalf("upload metadata: %s", r.body)
	}
	client := filesystemconnect.NewFilesystemClient(http.DefaultClient, e.base, connect.WithProtoJSON())
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := client.Stat(c, connect.NewRequest(&filesystem.StatRequest{Path: "m.txt"}))
	must(t, err)
	if md := st.Msg.GetEntry().GetMetadata(); md["author"] != "alice" || md["run-id"] != "42" {
		t.Errorf("Stat metadata %v", md)
	}
	ls, err := client.ListDir(c, connect.NewRequest(&filesystem.ListDirRequest{Path: "/home/user"}))
	must(t, err)
	if md := ls.Msg.GetEntries()[0].GetMetadata(); md["author"] != "alice" {
		t.Errorf("ListDir metadata %v", md)
	}
	// Re-uploading replaces the metadata set.
	body, ct = multipartBody(t, filePart("m.txt", "y"))
	got = entries(t, e.do(t, http.MethodPost, "", body, map[string]string{"Content-Type": ct, "X-Metadata-Other": "v"}))
	if len(got[0].Metadata) != 1 || got[0].Metadata["other"] != "v" {
		t.Errorf("replaced metadata %v", got[0].Metadata)
	}
	entries(t, e.do(t, http.MethodPost, q("path", "m.txt"), strings.NewReader("z"), map[string]string{"Content-Type": "application/octet-stream"}))
	st, err = client.Stat(c, connect.NewRequest(&filesystem.StatRequest{Path: "m.txt"}))
	must(t, err)
	if len(st.Msg.GetEntry().GetMetadata()) != 0 {
		t.Errorf("metadata not cleared: %v", st.Msg.GetEntry().GetMetadata())
	}
	body, ct = multipartBody(t, filePart("bad.txt", "x"))
	wantError(t, e.do(t, http.MethodPost, "", body, map[string]string{"Content-Type": ct, "X-Metadata-K": "caf\xc3\xa9"}), 400)
}

// prng is a deterministic, allocation-free stream of pseudo-random bytes.
type prng struct{ r *rand.ChaCha8 }

func (p prng) Read(b []byte) (int, error) { return p.r.Read(b) }

func newPRNG(seed byte) io.Reader { return prng{rand.NewChaCha8([32]byte{seed})} }

// TestRoundTrip100MB uploads 100 MB (multipart, streamed from a pipe) and downloads it (plain and
// gzip), comparing hashes. The server runs in this process: the bytes it allocates during the round
// trips must stay far below the file size, i.e. it streams and never holds a body.
func TestRoundTrip100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB round trip")
	}
	const size = 100 << 20
	e := newEnv(t, envd.Config{})
	want := sha256.New()
	_, err := io.Copy(want, io.LimitReader(newPRNG(7), size))
	must(t, err)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Disposition": {`form-data; name="file"; filename="/home/user/big/file.bin"`}})
		if err == nil {
			_, err = io.Copy(w, io.LimitReader(newPRNG(7), size))
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	got := entries(t, e.do(t, http.MethodPost, "", pr, map[string]string{"Content-Type": mw.FormDataContentType()}))
	if len(got) != 1 || got[0].Path != "/home/user/big/file.bin" {
		t.Fatalf("upload: %+v", got)
	}
	// Octet-stream too.
	entries(t, e.do(t, http.MethodPost, q("path", "big/raw.bin"), io.LimitReader(newPRNG(7), size), map[string]string{"Content-Type": "application/octet-stream"}))

	for _, ae := range []string{"", "gzip"} {
		for _, p := range []string{"big/file.bin", "big/raw.bin"} {
			req, _ := http.NewRequest(http.MethodGet, e.base+"/files?"+q("path", p), nil)
			if ae != "" {
				req.Header.Set("Accept-Encoding", ae)
			}
			res, err := e.http.Do(req)
			must(t, err)
			var body io.Reader = res.Body
			if res.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(res.Body)
				must(t, err)
				body = zr
			} else if ae == "gzip" {
				t.Error("gzip not used")
			}
			h := sha256.New()
			n, err := io.Copy(h, body)
			res.Body.Close()
			must(t, err)
			if n != size || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
				t.Fatalf("download %s (%q): %d bytes, hash mismatch", p, ae, n)
			}
		}
	}

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// Two uploads and four downloads moved 600 MB; gzip state and copy buffers are a few MB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("allocated %d MB during the round trips: bodies are being buffered", alloc>>20)
	}
	t.Logf("allocated %d KB for 600 MB transferred", (after.TotalAlloc-before.TotalAlloc)>>10)
}

// mountSmall mounts a tiny tmpfs at world path p for the test.
func mountSmall(t *testing.T, e *env, p, opts string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root")
	}
	dir := e.host(p)
	must(t, os.MkdirAll(dir, 0o755))
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

func TestUploadNoSpace(t *testing.T) {
	e := newEnv(t, envd.Config{})
	mountSmall(t, e, "/small", "size=64k,mode=0777")
	big := strings.Repeat("x", 1<<20)
	wantError(t, e.do(t, http.MethodPost, q("path", "/small/big"), strings.NewReader(big), map[string]string{"Content-Type": "application/octet-stream"}), 507)
	wantError(t, e.upload(t, "", filePart("/small/bigm", big)), 507)
	if ents, _ := os.ReadDir(e.host("/small")); len(ents) != 0 {
		t.Errorf("partial files left: %v", ents)
	}
	entries(t, e.upload(t, "", filePart("/small/fits", "ok")))
}

// sdkSignature computes a signed-URL signature exactly as the Python SDK's get_signature does.
func sdkSignature(path, op, user, token string, exp int64) string {
	raw := path + ":" + op + ":" + user + ":" + token
	if exp != 0 {
		raw += ":" + fmt.Sprint(exp)
	}
	sum := sha256.Sum256([]byte(raw))
	return "v1_" + strings.TrimRight(base64.StdEncoding.EncodeToString(sum[:]), "=")
}

func TestSignedURLs(t *testing.T) {
	e := newEnv(t, envd.Config{AccessToken: "tok"})
	must(t, os.WriteFile(e.host("/home/user/s.txt"), []byte("signed"), 0o644))
	future := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Hour).Unix()

	ok := []string{
		q("path", "s.txt", "signature", sdkSignature("s.txt", "read", "", "tok", 0)),
		q("path", "s.txt", "username", "user", "signature", sdkSignature("s.txt", "read", "user", "tok", 0)),
		q("path", "s.txt", "signature", sdkSignature("s.txt", "read", "", "tok", future), "signature_expiration", fmt.Sprint(future)),
	}
	for _, query := range ok {
		if r := e.do(t, http.MethodGet, query, nil, nil); r.status != 200 || string(r.body) != "signed" {
			t.Errorf("GET %s: %d %s", query, r.status, r.body)
		}
	}
	bad := []string{
		q("path", "s.txt"), // neither token nor signature
		q("path", "s.txt", "signature", sdkSignature("s.txt", "write", "", "tok", 0)),                                                   // wrong operation
		q("path", "s.txt", "signature", sdkSignature("other", "read", "", "tok", 0)),                                                    // other path
		q("path", "s.txt", "signature", sdkSignature("s.txt", "read", "", "wrong", 0)),                                                  // other token
		q("path", "s.txt", "username", "root", "signature", sdkSignature("s.txt", "read", "", "tok", 0)),                                // other user
		q("path", "s.txt", "signature", sdkSignature("s.txt", "read", "", "tok", past), "signature_expiration", fmt.Sprint(past)),       // expired
		q("path", "s.txt", "signature", sdkSignature("s.txt", "read", "", "tok", future), "signature_expiration", fmt.Sprint(future+1)), // tampered expiry
		q("path", "s.txt", "signature", sdkSignature("s.txt", "read", "", "tok", 0), "signature_expiration", "soon"),
	}
	for _, query := range bad {
		wantError(t, e.do(t, http.MethodGet, query, nil, nil), 401)
	}
	// A wrong token in the header is refused even with a valid signature.
	wantError(t, e.do(t, http.MethodGet, ok[0], nil, map[string]string{"X-Access-Token": "nope"}), 401)
	// Signed upload.
	body, ct := multipartBody(t, filePart("up.txt", "u"))
	r := e.do(t, http.MethodPost, q("path", "up.txt", "signature", sdkSignature("up.txt", "write", "", "tok", 0)), body, map[string]string{"Content-Type": ct})
	if got := entries(t, r); len(got) != 1 || readFile(t, e.host("/home/user/up.txt")) != "u" {
		t.Errorf("signed upload: %s", r.body)
	}
	body, ct = multipartBody(t, filePart("up2.txt", "u"))
	wantError(t, e.do(t, http.MethodPost, q("path", "up2.txt", "signature", sdkSignature("up2.txt", "read", "", "tok", 0)), body, map[string]string{"Content-Type": ct}), 401)
	// Signatures open nothing but /files.
	req, _ := http.NewRequest(http.MethodPost, e.base+"/filesystem.Filesystem/Stat?signature=x", strings.NewReader(`{"path":"/"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := e.http.Do(req)
	must(t, err)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("RPC with a signature and no token: %d", res.StatusCode)
	}
}
