package filesapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
)

// quote renders s as a quoted-string the way Go's multipart.Writer does.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// FuzzMultipart exercises the Content-Disposition parser and the multipart upload path:
//   - parseDisposition never panics, bounds its output, and agrees with Go's mime parser wherever
//     both accept a header;
//   - a filename quoted as Go's multipart.Writer quotes it comes back unchanged, directories kept;
//   - an arbitrary body posted as multipart/form-data never crashes or hangs the handler, gets a
//     JSON answer, and every file it reports is inside the world.
func FuzzMultipart(f *testing.F) {
	f.Add(`form-data; name="file"; filename="/home/user/a.txt"`, "/home/user/d/b.txt", []byte("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/x/y\"\r\n\r\ndata\r\n--B--\r\n"))
	f.Add(`form-data; name=file; filename*=UTF-8''%C3%A9.txt`, `C:\dir\f`, []byte("--B\r\n\r\n--B--"))
	f.Add(`attachment; FILENAME="a\"b"; name="x"`, `quote"in`, []byte("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../../etc/x\"\r\n\r\nz\r\n--B--\r\n"))
	f.Add(`form-data; name="file"; filename="a"; filename="b"`, "~/x", []byte("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dup\"\r\n\r\n1\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dup\"\r\n\r\n2\r\n--B--\r\n"))

	world := filepath.Join(f.TempDir(), "world")
	for _, d := range []string{"etc", "home/user"} {
		if err := os.MkdirAll(filepath.Join(world, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(world, "etc/passwd"), []byte("user:x:1000:1000::/home/user:/bin/sh\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	root, err := fsroot.Open(world)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { root.Close() })
	db := users.NewDB(root)
	u, err := db.Lookup("user")
	if err != nil {
		f.Fatal(err)
	}
	h := New(Config{Root: root, Users: db, MaxUploadBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	f.Fuzz(func(t *testing.T, header, filename string, body []byte) {
		// 1. The parser on its own.
		d, err := parseDisposition(header)
		if err == nil {
			if len(d.filename) > maxFilenameLen {
				t.Fatalf("filename of %d bytes accepted", len(d.filename))
			}
			if typ, params, gerr := mime.ParseMediaType(header); gerr == nil && d.hasFilename {
				if !strings.EqualFold(typ, d.typ) {
					t.Fatalf("type %q, Go says %q", d.typ, typ)
				}
				if gf, ok := params["filename"]; ok && gf != d.filename && !strings.Contains(strings.ToLower(header), "filename*") {
					t.Fatalf("filename %q, Go says %q (header %q)", d.filename, gf, header)
				}
			}
		}

		// 2. Round trip of a filename through a real multipart body.
		ctl := strings.IndexFunc(filename, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) >= 0
		if len(filename) <= maxFilenameLen && !ctl { // header lines cannot carry control characters
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Disposition": {`form-data; name="file"; filename=` + quote(filename)}})
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write([]byte("x"))
			_ = mw.Close()
			part, err := multipart.NewReader(&buf, mw.Boundary()).NextPart()
			if err != nil {
				t.Fatal(err)
			}
			d, err := parseDisposition(part.Header.Get("Content-Disposition"))
			switch {
			case err != nil:
				t.Fatalf("filename %q: %v", filename, err)
			case d.filename != filename || d.name != "file" || !d.hasFilename:
				t.Fatalf("filename %q came back as %q (name %q)", filename, d.filename, d.name)
			}
		}

		// 3. The whole handler on an arbitrary body.
		if len(body) > 64<<10 {
			return
		}
		req := httptest.NewRequest(http.MethodPost, "/files", bytes.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=B")
		req = req.WithContext(users.WithUser(context.Background(), u))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var out []uploaded
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out) == 0 {
				t.Fatalf("200 with body %q: %v", rec.Body.Bytes(), err)
			}
			for _, e := range out {
				if _, err := root.Lstat(e.Path); err != nil {
					t.Fatalf("reported %s, which the world does not have: %v", e.Path, err)
				}
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusForbidden:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}
