package filesapi

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/filemeta"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
)

// uploaded is one element of POST /files' answer; the SDKs require a non-empty array of them.
type uploaded struct {
	Path     string            `json:"path"`
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// httpError is a failure with the status it answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// errTooLarge is returned when a gzip-encoded body decompresses beyond MaxUploadBytes.
var errTooLarge = errors.New("decompressed body too large")

// readError marks a failure reading the request (as opposed to writing the file).
type readError struct{ err error }

func (e *readError) Error() string { return "reading request body: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// capReader fails with errTooLarge once more than n bytes come out of r.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n < 0 {
		return n, errTooLarge
	}
	return n, err
}

// fail answers an upload error with its status; server-side failures are logged.
func (h *Handler) fail(w http.ResponseWriter, u users.User, err error) {
	status, msg := http.StatusInternalServerError, err.Error()
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		status = he.status
	case errors.As(err, &mbe), errors.Is(err, errTooLarge):
		status, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("upload larger than %d bytes", h.cfg.MaxUploadBytes)
	case errors.As(err, new(*readError)):
		status = http.StatusBadRequest
	default:
		status = statusOf(err)
		if status == http.StatusNotFound {
			status = http.StatusBadRequest // a missing parent on upload is a bad path, not a missing file
		}
	}
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelWarn
	}
	h.log.Log(context.Background(), level, "upload failed", "user", u.Name, "status", status, "err", err)
	jsonError(w, status, msg)
}

// upload serves POST /files: multipart/form-data (field "file", the part's filename the full
// destination path, several parts allowed, ?path= overriding the filename) or
// application/octet-stream with ?path=. Content-Encoding: gzip applies to the whole body.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request, u users.User) {
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxUploadBytes)
	defer r.Body.Close()

	md := filemeta.FromHeaders(r.Header)
	if err := filemeta.Validate(md); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := h.decoded(r)
	if err != nil {
		h.fail(w, u, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil && ct != "" {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("invalid Content-Type %q: %v", ct, err))
		return
	}
	var out []uploaded
	switch {
	case mediaType == "application/octet-stream":
		out, err = h.uploadRaw(r, u, body, md)
	case strings.HasPrefix(mediaType, "multipart/"):
		out, err = h.uploadMultipart(r, u, body, params["boundary"], md)
	default:
		err = badRequest("unsupported Content-Type %q: expected multipart/form-data or application/octet-stream", ct)
	}
	if err != nil {
		h.fail(w, u, err)
		return
	}
	if len(out) == 0 {
		jsonError(w, http.StatusBadRequest, `no file in the request: expected a multipart part named "file"`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(out)
}

// decoded returns the request body, gunzipped when Content-Encoding says gzip (bounded by
// MaxUploadBytes after decompression too).
func (h *Handler) decoded(r *http.Request) (io.Reader, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
		return r.Body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			return nil, badRequest("invalid gzip body: %v", err)
		}
		return &capReader{r: zr, n: h.cfg.MaxUploadBytes}, nil
	}
	return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("unsupported Content-Encoding %q; supported: gzip, identity", enc)}
}

func (h *Handler) uploadRaw(r *http.Request, u users.User, body io.Reader, md map[string]string) ([]uploaded, error) {
	q := r.URL.Query()
	if !q.Has("path") {
		return nil, badRequest("the path query parameter is required for an octet-stream upload")
	}
	world, err := abs(q.Get("path"), u)
	if err != nil {
		return nil, badRequest("invalid path: %v", err)
	}
	e, err := h.writeFile(world, u, body, md)
	if err != nil {
		return nil, err
	}
	return []uploaded{e}, nil
}

func (h *Handler) uploadMultipart(r *http.Request, u users.User, body io.Reader, boundary string, md map[string]string) ([]uploaded, error) {
	if boundary == "" {
		return nil, badRequest("multipart Content-Type without boundary")
	}
	q := r.URL.Query()
	override, hasOverride := q.Get("path"), q.Has("path")
	mr := multipart.NewReader(body, boundary)
	var out []uploaded
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, &readError{err}
		}
		e, ok, err := h.uploadPart(part, u, override, hasOverride, seen, md)
		part.Close()
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, e)
		}
	}
}

// uploadPart writes one part when it is a "file" part; ok is false for parts that are ignored.
func (h *Handler) uploadPart(part *multipart.Part, u users.User, override string, hasOverride bool, seen map[string]bool, md map[string]string) (uploaded, bool, error) {
	d, err := parseDisposition(part.Header.Get("Content-Disposition"))
	if err != nil {
		return uploaded{}, false, badRequest("%v", err)
	}
	if !strings.EqualFold(d.typ, "form-data") || d.name != "file" {
		return uploaded{}, false, nil
	}
	target := d.filename
	if hasOverride {
		target = override
	} else if !d.hasFilename {
		return uploaded{}, false, badRequest(`a "file" part has no filename and no path query parameter was given`)
	}
	world, err := abs(target, u)
	if err != nil {
		return uploaded{}, false, badRequest("invalid path %q: %v", target, err)
	}
	if seen[world] {
		return uploaded{}, false, badRequest("cannot upload several files to the same path '%s' in one request; the files before it were written", world)
	}
	seen[world] = true
	e, err := h.writeFile(world, u, part, md)
	return e, err == nil, err
}

// writeFile streams src into world for user u: missing parents are created (owned by u), an
// existing file is truncated, a new file is owned by u. Only regular files are written.
func (h *Handler) writeFile(world string, u users.User, src io.Reader, md map[string]string) (uploaded, error) {
	uid, gid := -1, -1
	if h.chown {
		uid, gid = u.UID, u.GID
	}
	if world == "/" {
		return uploaded{}, badRequest("path '/' is a directory")
	}
	if _, err := h.cfg.Root.MkdirAll(path.Dir(world), 0o755, uid, gid); err != nil {
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, fs.ErrExist) {
			return uploaded{}, badRequest("cannot create the parent directories of '%s': %v", world, err)
		}
		return uploaded{}, fmt.Errorf("creating parents of %s: %w", world, err)
	}
	f, created, err := h.create(world)
	if err != nil {
		if errors.Is(err, unix.EISDIR) {
			return uploaded{}, badRequest("path '%s' is a directory", world)
		}
		return uploaded{}, err
	}
	e, err := h.fill(f, world, created, uid, gid, src, md)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing %s: %w", world, cerr)
	}
	if err != nil {
		if created {
			// A file we created and could not fill is not left behind half-written.
			_ = h.cfg.Root.Remove(world)
		}
		return uploaded{}, err
	}
	return e, nil
}

// create opens world for writing: created tells whether this call created it.
func (h *Handler) create(world string) (*os.File, bool, error) {
	f, err := h.cfg.Root.OpenFile(world, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o666)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return nil, false, err
	}
	f, err = h.cfg.Root.OpenFile(world, unix.O_WRONLY|unix.O_TRUNC, 0)
	if err == nil {
		return f, false, nil
	}
	if errors.Is(err, unix.ENOENT) {
		// A dangling symlink: create its (in-root) target, as open(O_CREAT) does.
		f, err = h.cfg.Root.OpenFile(world, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o666)
		return f, err == nil, err
	}
	return nil, false, err
}

func (h *Handler) fill(f *os.File, world string, created bool, uid, gid int, src io.Reader, md map[string]string) (uploaded, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return uploaded{}, fmt.Errorf("stat %s: %w", world, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return uploaded{}, badRequest("path '%s' is not a regular file", world)
	}
	if created && uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return uploaded{}, fmt.Errorf("chown %s: %w", world, err)
		}
	}
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	// The struct hides *os.File's ReaderFrom so the pooled buffer is used.
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, sourceReader{src}, *bp); err != nil {
		return uploaded{}, err
	}
	if err := filemeta.Write(f, md); err != nil {
		switch {
		case filemeta.Unsupported(err):
			h.log.Warn("filesystem keeps no extended attributes; metadata not stored", "path", world)
		case errors.Is(err, filemeta.ErrInvalid):
			return uploaded{}, badRequest("%v", err)
		default:
			return uploaded{}, fmt.Errorf("writing metadata of %s: %w", world, err)
		}
	}
	persisted, err := filemeta.Read(f)
	if err != nil {
		h.log.Warn("reading back file metadata", "path", world, "err", err)
	}
	return uploaded{Path: world, Name: path.Base(world), Type: "file", Metadata: persisted}, nil
}
